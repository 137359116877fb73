"""`trainer evaluate`: apply a trained run to another cohort (another vendor, another site, unlabelled exams).

The prediction for each subject is the mean over the run's fold heads (an ensemble of the cross-validated
models). Where MRI-PDFF exists the usual metrics are reported; where only a radiologist's call exists,
agreement with the reader (confusion matrix and Cohen's kappa).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from trainer.augment import IDENTITY
from trainer.dataset import read_cohort
from trainer.features import FeatureCache
from trainer.report import score_rows, write_predictions
from trainer.runs import load_frozen_encoder, load_heads, open_run


def evaluate_run(run_dir: str | Path, manifest_path: str | Path, out_dir: Path | None = None) -> dict[str, Any]:
    run = open_run(run_dir)
    cohort = read_cohort(manifest_path, labelled_only=False)
    encoder, weights_id = load_frozen_encoder(run)
    cache = FeatureCache(run.config.cache_dir, encoder, weights_id, run.config.pooling)
    x = {
        f"features_{v}": cache.features([cohort.image(s, v) for s in cohort.ids], [IDENTITY], desc=f"features {v}")[
            :, 0
        ]
        for v in run.config.view_names
    }
    outputs = run.config.outputs
    per_head = []
    for head in load_heads(run):
        raw = head.predict(x, verbose=0)
        raw = raw if isinstance(raw, list) else [raw]
        per_head.append({o: np.asarray(r).reshape(-1) for o, r in zip(outputs, raw, strict=True)})
    mean = {o: np.mean([p[o] for p in per_head], axis=0) for o in outputs}

    rows: list[dict[str, Any]] = []
    for i, s in enumerate(cohort.subjects):
        row: dict[str, Any] = {
            "subject_id": s.subject_id,
            "vendor": s.vendor,
            "pdff": s.pdff,
            "reader_label": s.reader_label,
        }
        for o in outputs:
            row[o if o == "p_fatty" else "pdff_pred"] = float(mean[o][i])
        rows.append(row)

    result: dict[str, Any] = {"run": str(run.path), "manifest": str(manifest_path), "n_subjects": len(rows)}
    labelled = [r for r in rows if r["pdff"] is not None]
    if labelled:
        result["metrics"] = score_rows(labelled, run.config.fatty_threshold)
        result["n_labelled"] = len(labelled)
    with_reader = [r for r in rows if r["reader_label"] is not None]
    if with_reader:
        model_call = [
            int((r["p_fatty"] >= 0.5) if "p_fatty" in r else (r["pdff_pred"] >= run.config.fatty_threshold))
            for r in with_reader
        ]
        reader = [r["reader_label"] for r in with_reader]
        result["reader_agreement"] = {
            "n": len(with_reader),
            "confusion_rows_reader_cols_model": confusion_matrix(reader, model_call, labels=[0, 1]).tolist(),
            "agreement": float(np.mean(np.array(reader) == np.array(model_call))),
            "cohen_kappa": float(cohen_kappa_score(reader, model_call, labels=[0, 1]))
            if len(set(reader) | set(model_call)) > 1
            else None,
        }
    out_dir = out_dir or run.path / "evaluations" / Path(manifest_path).parent.name
    out_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(out_dir / "predictions.csv", rows)
    (out_dir / "evaluation.json").write_text(json.dumps(result, indent=2))
    result["out_dir"] = str(out_dir)
    return result
