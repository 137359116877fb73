"""The statistics a validation reports, in numpy alone (the box has no SciPy): ROC AUC as the Mann-Whitney
statistic, R^2, and percentile bootstrap intervals over subjects. The trainer's metrics use these same functions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank (SciPy's rankdata 'average')."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2
    return ranks


def roc_auc(truth: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC as the Mann-Whitney statistic (ties count half), None with one class: scikit-learn's value, at a
    cost small enough for a thousand bootstrap resamples."""
    truth = np.asarray(truth, dtype=bool)
    positives = int(truth.sum())
    negatives = len(truth) - positives
    if not positives or not negatives:
        return None
    ranks = average_ranks(np.asarray(score))
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def r2(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination; a constant truth gives 1 when predicted exactly, else 0 (scikit-learn's)."""
    residual = float(np.sum((truth - predicted) ** 2))
    total = float(np.sum((truth - np.mean(truth)) ** 2))
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return 1.0 - residual / total


def bootstrap_ci(
    metric: Callable[[np.ndarray], dict[str, float | None]], n_subjects: int, n_boot: int, seed: int
) -> dict[str, list[float] | None]:
    """Percentile 95 % intervals from resampling subjects with replacement; metric(indices) -> dict.

    Args:
        metric: resampled subject indices -> metrics.
        n_subjects: how many subjects to resample from.
        n_boot: number of resamples.
        seed: resampling seed.
    """
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(n_boot):
        for key, value in metric(rng.integers(0, n_subjects, n_subjects)).items():
            if value is not None:
                samples.setdefault(key, []).append(value)
    return {
        key: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if len(v) >= n_boot // 2 else None
        for key, v in samples.items()
    }
