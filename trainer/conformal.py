"""The exam's model-error statements, fitted on a run's out-of-fold predictions (edge_runtime.model.uncertainty applies
them).

- Class sets: split conformal on the calibrated p_fatty; the threshold at the declared coverage.
- PDFF intervals: normalised split conformal in log(1 + PDFF) on the ensemble's estimate (linearly recalibrated)
  and spread.
Each is also cross-fitted: fitted on the other folds and judged on the fold held out, so the coverage it reports
is the coverage a new patient meets. Coverage is given overall, per vendor and per true PDFF band.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge_runtime.contracts import ClassSets, CrossFittedCoverage, NormalisedPdffInterval
from edge_runtime.model.uncertainty import (
    class_score,
    class_set,
    conformal_quantile,
    interval_score,
    log1p_bounds,
    pdff_band,
)

CLASS_SET_METHOD = "split conformal on the calibrated p_fatty; nonconformity 1 - p(true class)"
MIN_SPREAD_FLOOR = 0.02  # log(1 + PDFF): the floor when the ensemble hardly disagrees anywhere


def coverage_by(covered: np.ndarray, vendors: list[str], pdff: np.ndarray) -> CrossFittedCoverage:
    """How often a statement covered the truth: overall, per vendor, per true PDFF band."""
    bands = np.array([pdff_band(v) for v in pdff])
    groups = np.array(vendors)

    def within(labels: np.ndarray) -> dict[str, float]:
        return {str(k): float(covered[labels == k].mean()) for k in dict.fromkeys(labels)}

    return CrossFittedCoverage(
        overall=float(covered.mean()), by_vendor=within(groups), by_band=within(bands), subjects=len(covered)
    )


def fit_class_sets(p_fatty: np.ndarray, fatty: np.ndarray, coverage: float) -> ClassSets:
    """The conformal threshold at the declared coverage, from calibrated p_fatty and the truth."""
    scores = np.sort(class_score(p_fatty, fatty))
    threshold = conformal_quantile(scores, coverage)
    return ClassSets(
        coverage=coverage,
        threshold=min(threshold, 1.0),
        scores=[round(float(v), 6) for v in scores],
        method=CLASS_SET_METHOD,
    )


def cross_fit_class_sets(
    calibrated: Callable[[np.ndarray, np.ndarray], np.ndarray],
    folds: np.ndarray,
    fatty: np.ndarray,
    coverage: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per subject: whether its class set covered the truth, whether it was a single class, and its calibrated
    p_fatty, with the calibrator and the threshold fitted on the other folds only.

    Args:
        calibrated: (fit rows, apply rows) -> calibrated p_fatty of the apply rows, fitted on the fit rows.
        folds: each subject's fold.
        fatty: each subject's truth.
        coverage: the declared coverage.
    """
    covered, single, crossed = np.zeros(len(fatty), bool), np.zeros(len(fatty), bool), np.zeros(len(fatty))
    for fold in np.unique(folds):
        test, train = folds == fold, folds != fold
        threshold = conformal_quantile(class_score(calibrated(train, train), fatty[train]), coverage)
        crossed[test] = calibrated(train, test)
        for i in np.flatnonzero(test):
            chosen = class_set(float(crossed[i]), threshold)
            covered[i] = ("fatty" if fatty[i] else "normal") in chosen
            single[i] = len(chosen) == 1
    return covered, single, crossed


def _recalibration(estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Least squares of the truth on the estimate, both in log(1 + PDFF): undoes a head's shrinkage to the mean."""
    slope, intercept = np.polyfit(estimate, truth, 1)
    return float(intercept), float(slope)


def fit_pdff_interval(
    log_truth: np.ndarray, log_estimate: np.ndarray, spread: np.ndarray, coverage: float
) -> NormalisedPdffInterval:
    """Recalibration, spread floor and the conformal multiplier of the normalised errors.

    Args:
        log_truth: log(1 + true PDFF) per subject.
        log_estimate: the ensemble's out-of-fold log(1 + PDFF).
        spread: the ensemble's spread per subject.
        coverage: the interval's coverage.
    """
    intercept, slope = _recalibration(log_estimate, log_truth)
    floor = max(float(np.median(spread)), MIN_SPREAD_FLOOR)
    scores = np.sort(interval_score(log_truth, intercept + slope * log_estimate, spread, floor))
    return NormalisedPdffInterval(
        coverage=coverage,
        multiplier=conformal_quantile(scores, coverage),
        spread_floor=floor,
        scores=[round(float(v), 6) for v in scores],
        recalibration=(intercept, slope),
    )


def normalised_bounds(spec: NormalisedPdffInterval, log_estimate: float, spread: float) -> tuple[float, float]:
    """The interval (PDFF %) the bedside states for an estimate and its spread (edge_runtime.pipeline.exam does the
    same)."""
    intercept, slope = spec.recalibration
    return log1p_bounds(intercept + slope * log_estimate, spec.multiplier * (spread + spec.spread_floor))


def cross_fit_pdff_interval(
    log_truth: np.ndarray, log_estimate: np.ndarray, spread: np.ndarray, folds: np.ndarray, coverage: float
) -> np.ndarray:
    """Per subject, the (low, high) PDFF interval fitted on the other folds only.

    Args:
        log_truth: log(1 + true PDFF) per subject.
        log_estimate: the ensemble's out-of-fold log(1 + PDFF).
        spread: the ensemble's spread per subject.
        folds: each subject's fold.
        coverage: the interval's coverage.
    """
    bounds = np.zeros((len(log_truth), 2))
    for fold in np.unique(folds):
        test, train = folds == fold, folds != fold
        spec = fit_pdff_interval(log_truth[train], log_estimate[train], spread[train], coverage)
        for i in np.flatnonzero(test):
            bounds[i] = normalised_bounds(spec, float(log_estimate[i]), float(spread[i]))
    return bounds


def risk_coverage(p_fatty: np.ndarray, fatty: np.ndarray) -> list[tuple[float, float]]:
    """(share called, accuracy of those calls) when the most confident subjects are called first."""
    order = np.argsort(-np.abs(p_fatty - 0.5))
    right = np.cumsum((p_fatty[order] >= 0.5) == fatty[order])
    return [(k / len(order), float(right[k - 1] / k)) for k in range(1, len(order) + 1)]
