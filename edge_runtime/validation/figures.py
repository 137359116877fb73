"""The site's real-world figures from reconciled exams: definite calls (their share and their error), AUC and
balanced accuracy of p_fatty, PDFF bias, MAE and R^2, the interval's coverage and the guard's share of frames;
overall and per scanner and per PDFF band of the MRI, each with a percentile bootstrap 95 % CI over exams."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.contracts import FATTY_PDFF, P_FATTY_THRESHOLD
from edge_runtime.model.uncertainty import pdff_band
from edge_runtime.validation.reconcile import MatchedExam
from edge_runtime.validation.statistics import bootstrap_ci, r2, roc_auc

N_BOOT = 1000
DEFINITE = ("fatty", "normal")


@dataclass(frozen=True)
class Columns:
    """The matched exams as arrays (NaN where the exam gave no such answer)."""

    pdff: np.ndarray  # MRI-PDFF, the reference
    call: np.ndarray  # 'fatty', 'normal', 'indeterminate' or '' (no call)
    p_fatty: np.ndarray
    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    filed: np.ndarray
    flagged: np.ndarray
    scanner: np.ndarray

    @classmethod
    def of(cls, matched: list[MatchedExam]) -> Columns:
        def number(value: float | None) -> float:
            return float("nan") if value is None else float(value)

        exams = [m.exam for m in matched]
        intervals = [e.exam.pdff_interval or (None, None) for e in exams]
        return cls(
            pdff=np.array([m.result.pdff for m in matched], dtype=np.float64),
            call=np.array([e.exam.call or "" for e in exams], dtype=object),
            p_fatty=np.array([number(e.exam.p_fatty) for e in exams]),
            estimate=np.array([number(e.exam.pdff) for e in exams]),
            low=np.array([number(lo) for lo, _ in intervals]),
            high=np.array([number(hi) for _, hi in intervals]),
            filed=np.array([e.frames.filed if e.frames else 0 for e in exams]),
            flagged=np.array([e.frames.flagged if e.frames else 0 for e in exams]),
            scanner=np.array([e.scanner or "unknown" for e in exams], dtype=object),
        )

    def take(self, index: np.ndarray) -> Columns:
        return Columns(**{k: v[index] for k, v in self.__dict__.items()})

    def __len__(self) -> int:
        return len(self.pdff)


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def field_metrics(c: Columns) -> dict[str, float | None]:
    """Every figure of a set of matched exams (None where these exams cannot give it)."""
    truth = c.pdff >= FATTY_PDFF
    definite = np.isin(c.call, DEFINITE)
    wrong = (c.call == "fatty") != truth
    scored = ~np.isnan(c.p_fatty)
    said = (c.p_fatty >= P_FATTY_THRESHOLD)[scored]
    recall = _mean(said[truth[scored]])
    specificity = _mean(~said[~truth[scored]])
    estimated = ~np.isnan(c.estimate)
    bounded = ~np.isnan(c.low) & ~np.isnan(c.high)
    error = (c.estimate - c.pdff)[estimated]
    return {
        "exams": float(len(c)),
        "definite_share": _mean(definite),
        "definite_error": _mean(wrong[definite]),
        "auc": roc_auc(truth[scored], c.p_fatty[scored]),
        "balanced_accuracy": (recall + specificity) / 2 if recall is not None and specificity is not None else None,
        "bias": _mean(error),
        "abs_bias": abs(float(np.mean(error))) if len(error) else None,
        "mae": _mean(np.abs(error)),
        "r2": r2(c.pdff[estimated], c.estimate[estimated]) if estimated.sum() > 1 else None,
        "interval_coverage": _mean(((c.low <= c.pdff) & (c.pdff <= c.high))[bounded]),
        "guard_share": float(c.flagged.sum() / c.filed.sum()) if c.filed.sum() else None,
    }


def with_intervals(c: Columns, seed: int = 0) -> dict[str, Any]:
    """The figures and their 95 % CIs (resampling exams)."""
    point = field_metrics(c)
    ci = bootstrap_ci(lambda idx: field_metrics(c.take(idx)), len(c), N_BOOT, seed) if len(c) > 1 else {}
    return {"value": point, "ci95": {k: ci.get(k) for k in point if k != "exams"}}


def grouped(c: Columns, key: Callable[[int], str]) -> dict[str, dict[str, Any]]:
    """The figures with CIs per group (scanner, PDFF band)."""
    labels = np.array([key(i) for i in range(len(c))], dtype=object)
    return {label: with_intervals(c.take(np.flatnonzero(labels == label))) for label in sorted(set(labels))}


def all_figures(c: Columns) -> dict[str, Any]:
    """Overall, per scanner and per PDFF band of the MRI."""
    return {
        "overall": with_intervals(c),
        "per_scanner": grouped(c, lambda i: str(c.scanner[i])),
        "per_band": grouped(c, lambda i: pdff_band(float(c.pdff[i]))),
    }
