"""The hepatorenal index's rows of `trainer ablate`: what the index earns alone and beside CLKL, on CLKL's folds.

- **HRI alone**: in each fold, a logistic regression of PDFF >= 5 % on log(HRI) and a line of log(1 + PDFF) on
  log(HRI), fitted on the fold's training subjects, applied to its held-out ones.
- **CLKL + HRI**: in each fold, the same fits on CLKL's out-of-fold answer (logit p_fatty, log(1 + PDFF): the
  outputs CLKL has) and log(HRI): a second-level combination of the run's held-out answers, not a head retrained
  on features.
- **Across vendors**: HRI alone fitted on every other vendor and judged on the one left out.
A subject whose kidney-liver image gives no HRI (edge_runtime.measure.hri says why) gets its training fold's
median log(HRI), so every row scores every subject; how many had none is stated.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression

from trainer.config import TrainConfig
from trainer.dataset import Cohort
from trainer.hri_input import subject_hri
from trainer.report import score_rows, summarise

HRI_ROWS = ("hri", "clkl_hri")
OUTPUTS = ("p_fatty", "pdff_pred")
TASKS = {("p_fatty",): "classify", ("pdff_pred",): "regress", OUTPUTS: "both"}


def _filled(log_hri: np.ndarray, train: np.ndarray) -> np.ndarray:
    known = train & np.isfinite(log_hri)
    fill = float(np.median(log_hri[known])) if known.any() else 0.0
    return np.where(np.isfinite(log_hri), log_hri, fill)


def _fit_apply(x: np.ndarray, fatty: np.ndarray, log_pdff: np.ndarray, train: np.ndarray, test: np.ndarray):
    """p_fatty and PDFF (%) of the test rows from fits on the train rows."""
    if len(set(fatty[train])) < 2:
        p = np.full(test.sum(), float(fatty[train].mean()))
    else:
        p = LogisticRegression(C=1.0).fit(x[train], fatty[train]).predict_proba(x[test])[:, 1]
    pdff = np.expm1(LinearRegression().fit(x[train], log_pdff[train]).predict(x[test]))
    return p, np.maximum(pdff, 0.0)


def _columns(clkl_rows: list[dict[str, Any]], hri: dict[str, float | None]) -> dict[str, np.ndarray]:
    ids = [r["subject_id"] for r in clkl_rows]
    p = np.clip(np.array([r.get("p_fatty", 0.5) for r in clkl_rows], dtype=np.float64), 1e-6, 1 - 1e-6)
    return {
        "log_hri": np.array([np.log(hri[s]) if hri.get(s) else np.nan for s in ids]),
        "clkl_logit": np.log(p / (1 - p)),
        "clkl_log_pdff": np.log1p(np.maximum([r.get("pdff_pred", 0.0) for r in clkl_rows], 0.0)),
        "pdff": np.array([r["pdff"] for r in clkl_rows], dtype=np.float64),
        "fold": np.array([r["fold"] for r in clkl_rows]),
    }


def _rows_for(kind: str, clkl_rows: list[dict[str, Any]], c: dict[str, np.ndarray], fatty_pdff: float) -> list[dict]:
    fatty, log_pdff = c["pdff"] >= fatty_pdff, np.log1p(c["pdff"])
    p_out, pdff_out = np.zeros(len(fatty)), np.zeros(len(fatty))
    for fold in np.unique(c["fold"]):
        test, train = c["fold"] == fold, c["fold"] != fold
        log_hri = _filled(c["log_hri"], train)
        if kind == "hri":
            p_out[test], pdff_out[test] = _fit_apply(log_hri[:, None], fatty, log_pdff, train, test)
            continue
        p_x = np.column_stack([c["clkl_logit"], log_hri])
        pdff_x = np.column_stack([c["clkl_log_pdff"], log_hri])
        p_out[test] = _fit_apply(p_x, fatty, log_pdff, train, test)[0]
        pdff_out[test] = _fit_apply(pdff_x, fatty, log_pdff, train, test)[1]
    keep = ("subject_id", "fold", "vendor", "pdff")
    outputs = OUTPUTS if kind == "hri" else tuple(k for k in OUTPUTS if k in clkl_rows[0])  # CLKL's own outputs
    answers = {"p_fatty": p_out, "pdff_pred": pdff_out}
    return [{k: r[k] for k in keep} | {k: float(answers[k][i]) for k in outputs} for i, r in enumerate(clkl_rows)]


def across_vendors(clkl_rows: list[dict[str, Any]], hri: dict[str, float | None], fatty_pdff: float) -> dict:
    """HRI alone, fitted on every other vendor and scored on the one left out."""
    c = _columns(clkl_rows, hri)
    vendors = np.array([r["vendor"] for r in clkl_rows])
    fatty, log_pdff = c["pdff"] >= fatty_pdff, np.log1p(c["pdff"])
    out = {}
    for vendor in sorted(set(vendors)):
        test, train = vendors == vendor, vendors != vendor
        p, pdff = _fit_apply(_filled(c["log_hri"], train)[:, None], fatty, log_pdff, train, test)
        rows = [{"pdff": t, "p_fatty": a, "pdff_pred": b} for t, a, b in zip(c["pdff"][test], p, pdff, strict=True)]
        out[vendor] = score_rows(rows, fatty_pdff)
    return out


def hri_ablation_rows(
    cohort: Cohort, clkl_rows: list[dict[str, Any]], clkl: TrainConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The HRI-alone and CLKL+HRI rows, as ablation rows (a config and a summary each), and what they rest on.

    Args:
        cohort: the cohort (its kidney-liver images).
        clkl_rows: the CLKL row's out-of-fold predictions (trainer.report.collect_predictions), with its folds.
        clkl: the CLKL row's configuration (the HRI rows report under its task and thresholds).
    """
    hri = subject_hri(cohort)
    c = _columns(clkl_rows, hri)
    rows = {}
    for kind in HRI_ROWS:
        scored = _rows_for(kind, clkl_rows, c, clkl.fatty_threshold)
        task = TASKS[tuple(k for k in OUTPUTS if k in scored[0])]
        rows[kind] = {"config": clkl.with_changes(task=task).model_dump(), **summarise(scored, clkl)}
    measured = sum(v is not None for v in hri.values())
    basis = {
        "measured": measured,
        "subjects": len(hri),
        "across_vendors": across_vendors(clkl_rows, hri, clkl.fatty_threshold),
    }
    return rows, basis
