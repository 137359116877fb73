"""Metrics a clinician and a reviewer expect, with 95 % bootstrap intervals over subjects.

Classification: accuracy, precision, recall (sensitivity), specificity, F1, ROC AUC, and AUC against the
PDFF >= 10 % reference. Regression: R^2, MAE, Pearson, Spearman. Undefined values (e.g. AUC of a fold with
one class) are None, never a made-up number.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import pearsonr, spearmanr

from edge_runtime.contracts import FATTY_PDFF, P_FATTY_THRESHOLD
from edge_runtime.validation.statistics import bootstrap_ci, r2, roc_auc  # noqa: F401 - the box shares these

CLASSIFICATION = ("accuracy", "precision", "recall", "specificity", "f1", "auc", "auc_pdff10")
REGRESSION = ("r2", "mae", "pearson", "spearman")


def _safe(fn: Callable[[], float]) -> float | None:
    try:
        value = float(fn())
    except ValueError:
        return None
    return None if np.isnan(value) else value


def _ratio(num: int, den: int) -> float:
    return float(num / den) if den else 0.0


def classification_metrics(
    pdff: np.ndarray, score: np.ndarray, threshold: float = P_FATTY_THRESHOLD, fatty_pdff: float = FATTY_PDFF
) -> dict[str, float | None]:
    """score: p_fatty (or any score where higher means fattier); decision at `threshold`.

    Args:
        pdff: MRI-PDFF per subject (the reference standard).
        score: the model's score per subject (higher means fattier).
        threshold: score at or above which the call is fatty.
        fatty_pdff: PDFF at or above which a subject is fatty.
    """
    truth, decision = np.asarray(pdff) >= fatty_pdff, np.asarray(score) >= threshold
    tp, fp = int(np.sum(truth & decision)), int(np.sum(~truth & decision))
    fn, tn = int(np.sum(truth & ~decision)), int(np.sum(~truth & ~decision))
    return {
        "accuracy": _ratio(tp + tn, len(truth)),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "specificity": float(tn / (tn + fp)) if (tn + fp) else None,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "auc": roc_auc(truth, np.asarray(score)),
        "auc_pdff10": roc_auc(np.asarray(pdff) >= 10.0, np.asarray(score)),
    }


def regression_metrics(pdff: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    pdff, predicted = np.asarray(pdff, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    varied = len(pdff) > 2 and np.std(predicted) > 0 and np.std(pdff) > 0
    return {
        "r2": r2(pdff, predicted) if len(pdff) > 1 else None,
        "mae": float(np.mean(np.abs(pdff - predicted))),
        "pearson": _safe(lambda: pearsonr(pdff, predicted).statistic) if varied else None,
        "spearman": _safe(lambda: spearmanr(pdff, predicted).statistic) if varied else None,
    }


def confusion(
    pdff: np.ndarray, score: np.ndarray, threshold: float = P_FATTY_THRESHOLD, fatty_pdff: float = FATTY_PDFF
) -> list[list[int]]:
    """[[TN, FP], [FN, TP]] with rows = truth (normal, fatty).

    Args:
        pdff: MRI-PDFF per subject.
        score: the model's score per subject.
        threshold: score at or above which the call is fatty.
        fatty_pdff: PDFF at or above which a subject is fatty.
    """
    truth, decision = np.asarray(pdff) >= fatty_pdff, np.asarray(score) >= threshold
    normal = [int(np.sum(~truth & ~decision)), int(np.sum(~truth & decision))]
    return [normal, [int(np.sum(truth & ~decision)), int(np.sum(truth & decision))]]


def mean_sd(per_fold: list[dict[str, float | None]]) -> dict[str, list[float] | None]:
    keys = {k for fold in per_fold for k in fold}
    out: dict[str, list[float] | None] = {}
    for key in sorted(keys):
        values = [f[key] for f in per_fold if f.get(key) is not None]
        out[key] = (
            [float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0] if values else None
        )
    return out
