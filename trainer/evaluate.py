"""`trainer evaluate`: apply a trained run to another cohort (another vendor, another site, unlabelled exams).

A subject the run never saw is scored by the mean over the run's fold heads (an ensemble of the
cross-validated models). A subject the run *did* see (the same subject id, or the same image under another
id) is scored only by the fold head that held it out, so its score is still an out-of-sample one and the
evaluation is not flattered by training subjects; ``scored_by`` says which was used, per subject and in total.
Where MRI-PDFF exists the usual metrics are reported; where only a radiologist's call exists, agreement with
the reader (confusion matrix and Cohen's kappa).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from clkl.augment import IDENTITY
from edge_runtime.contracts import P_FATTY_THRESHOLD
from edge_runtime.scanners.profiles import read_profiles_file
from trainer.crossval import predict_outputs
from trainer.dataset import Cohort, read_cohort
from trainer.extraction import run_encoders
from trainer.features import FeatureCache
from trainer.guard_report import guard_report
from trainer.report import score_rows, write_predictions
from trainer.runs import Run, load_heads, open_run

ENSEMBLE = -1  # "fold" of a subject the run never saw


def held_out_fold(run: Run, cohort: Cohort) -> list[int]:
    """Per cohort subject: the fold that held it out when the run saw it (by id or by image), else ENSEMBLE."""
    fold_of_subject = {s: k for k, test in enumerate(run.folds) for s in test}
    fold_of_image = {d: fold_of_subject[s] for (s, _), d in run.digests.items() if s in fold_of_subject}
    folds = []
    for subject in cohort.ids:
        fold = fold_of_subject.get(subject, ENSEMBLE)
        for key in ((subject, v) for v in run.config.view_names):
            if fold == ENSEMBLE and cohort.digests.get(key) in fold_of_image:
                fold = fold_of_image[cohort.digests[key]]
        folds.append(fold)
    return folds


def ids_without_images(run: Run, cohort: Cohort) -> list[str]:
    """Cohort subjects whose id the run trained on but none of whose images it saw: most likely other patients
    under reused ids (a phantom cohort of another seed, a site's own numbering). They are still scored by the
    fold that held the id out, so that the same patient re-exported can never leak into its own score."""
    trained = {s for test in run.folds for s in test}
    views = run.config.view_names
    return [
        s
        for s in cohort.ids
        if s in trained
        and all((s, v) in run.digests and (s, v) in cohort.digests for v in views)
        and not any(run.digests[(s, v)] == cohort.digests[(s, v)] for v in views)
    ]


def _fold_predictions(run: Run, cohort: Cohort) -> list[dict[str, np.ndarray]]:
    """Every fold head's outputs for every cohort subject (un-augmented images)."""
    cache = FeatureCache(run.config.cache_dir, run_encoders(run).features)
    x = {
        f"features_{v}": cache.features([cohort.image(s, v) for s in cohort.ids], [IDENTITY], desc=f"features {v}")[
            :, 0
        ]
        for v in run.config.view_names
    }
    return [predict_outputs(head, x, run.config.outputs) for head in load_heads(run)]


def _reader_agreement(rows: list[dict[str, Any]], fatty_threshold: float) -> dict[str, Any]:
    model_call = [
        int((r["p_fatty"] >= P_FATTY_THRESHOLD) if "p_fatty" in r else (r["pdff_pred"] >= fatty_threshold))
        for r in rows
    ]
    reader = [r["reader_label"] for r in rows]
    return {
        "n": len(rows),
        "confusion_rows_reader_cols_model": confusion_matrix(reader, model_call, labels=[0, 1]).tolist(),
        "agreement": float(np.mean(np.array(reader) == np.array(model_call))),
        "cohen_kappa": float(cohen_kappa_score(reader, model_call, labels=[0, 1]))
        if len(set(reader) | set(model_call)) > 1
        else None,
    }


def _rows(run: Run, cohort: Cohort) -> list[dict[str, Any]]:
    per_head = _fold_predictions(run, cohort)
    folds = held_out_fold(run, cohort)
    rows = []
    for i, (s, fold) in enumerate(zip(cohort.subjects, folds, strict=True)):
        row: dict[str, Any] = {"subject_id": s.subject_id, "vendor": s.vendor, "pdff": s.pdff}
        row["reader_label"] = s.reader_label
        for o in run.config.outputs:
            value = np.mean([p[o][i] for p in per_head]) if fold == ENSEMBLE else per_head[fold][o][i]
            row[o if o == "p_fatty" else "pdff_pred"] = float(value)
        row["scored_by"] = f"ensemble of {len(per_head)} folds" if fold == ENSEMBLE else f"fold {fold} (held out)"
        rows.append(row)
    return rows


def evaluate_run(
    run_dir: str | Path,
    manifest_path: str | Path,
    out_dir: Path | None = None,
    profiles: str | None = None,
    bundle: str | Path | None = None,
) -> dict[str, Any]:
    """Score a run on another cohort, read with the run's scanner profiles plus an optional profiles file.

    Args:
        run_dir: the trained run.
        manifest_path: the cohort to score.
        out_dir: where the predictions and report go (default: <run>/evaluations/...).
        profiles: a profiles file for that cohort's scanners.
        bundle: a bundle exported from the run: its guard reports how much of the cohort it flags.
    """
    run = open_run(run_dir)
    known = run.profiles | (read_profiles_file(profiles) if profiles else {})
    cohort = read_cohort(manifest_path, known, labelled_only=False, harmonisation=run.config.harmonisation)
    rows = _rows(run, cohort)
    held_out = sum(r["scored_by"].endswith("(held out)") for r in rows)
    result: dict[str, Any] = {
        "run": str(run.path),
        "manifest": str(manifest_path),
        "n_subjects": len(rows),
        "scored_by": {"held_out_fold": held_out, "fold_ensemble": len(rows) - held_out},
    }
    reused = ids_without_images(run, cohort)
    if reused:
        result["scored_by"]["held_out_by_id_only"] = reused  # the run saw these ids, not these images
    labelled = [r for r in rows if r["pdff"] is not None]
    if labelled:
        result["metrics"] = score_rows(labelled, run.config.fatty_threshold)
        result["n_labelled"] = len(labelled)
    if bundle is not None:
        result["guard"] = guard_report(bundle, cohort)
    with_reader = [r for r in rows if r["reader_label"] is not None]
    if with_reader:
        result["reader_agreement"] = _reader_agreement(with_reader, run.config.fatty_threshold)
    out_dir = out_dir or run.path / "evaluations" / Path(manifest_path).parent.name
    out_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(out_dir / "predictions.csv", rows)
    (out_dir / "evaluation.json").write_text(json.dumps(result, indent=2))
    result["out_dir"] = str(out_dir)
    return result
