"""The exam's model-error statements, fitted on a run's out-of-fold predictions (edge_runtime.model.uncertainty applies
them).

- Class sets: split conformal on the calibrated p_fatty; the threshold at the declared coverage.
- PDFF intervals: normalised split conformal in log(1 + PDFF) on the ensemble's estimate (linearly recalibrated)
  and spread.
Each is also cross-fitted: fitted on the other folds and judged on the fold held out, so the coverage it reports
is the coverage a new patient meets. Coverage is given overall, per vendor and per true PDFF band.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from edge_runtime.contracts import (
    PDFF_BAND_NAMES,
    CertifiedCalls,
    ClassSets,
    CrossFittedCoverage,
    NormalisedPdffInterval,
)
from edge_runtime.model.uncertainty import (
    band_multiplier,
    certified_thresholds,
    class_score,
    class_set,
    conformal_quantile,
    definite_call,
    fewest_for_coverage,
    interval_score,
    log1p_bounds,
    pdff_band,
)

CLASS_SET_METHOD = "split conformal on the calibrated p_fatty; nonconformity 1 - p(true class)"
CERTIFIED_METHOD = (
    "conformal risk control per class on the cross-fitted calibrated p_fatty: the widest threshold with "
    "(wrong + 1) / (calls + 1) <= error"
)
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
    estimate = intercept + slope * log_estimate
    errors = interval_score(log_truth, estimate, spread, floor)
    return NormalisedPdffInterval(
        coverage=coverage,
        multiplier=conformal_quantile(errors, coverage),
        spread_floor=floor,
        scores=[round(float(v), 6) for v in np.sort(errors)],
        recalibration=(intercept, slope),
        band_scores=band_scores(np.expm1(estimate), errors, coverage),
        cv_estimates=[round(float(v), 3) for v in np.sort(np.expm1(estimate))],
    )


def band_scores(estimate_pdff: np.ndarray, errors: np.ndarray, coverage: float) -> dict[str, list[float]]:
    """Each band's sorted normalised errors, by the band of the estimate (what the bedside knows, not the truth). A band
    holding too few subjects to state the coverage (a finite conformal quantile) is merged with its neighbour towards
    the middle of the scale, until every group can; every band keeps its group's scores."""
    bands = np.array([pdff_band(float(v)) for v in estimate_pdff])
    groups = [[name] for name in PDFF_BAND_NAMES]
    needed = fewest_for_coverage(coverage)
    while len(groups) > 1:
        sizes = [int(np.isin(bands, group).sum()) for group in groups]
        small = [i for i, n in enumerate(sizes) if n < needed]
        if not small:
            break
        i = small[0]
        j = i + 1 if i == 0 else i - 1  # the lowest band joins the next; any other joins the one below it
        groups[min(i, j)] = groups[min(i, j)] + groups[max(i, j)]
        del groups[max(i, j)]
    out = {}
    for group in groups:
        scores = [round(float(v), 6) for v in np.sort(errors[np.isin(bands, group)])]
        out.update({name: scores for name in group})
    return out


def normalised_bounds(spec: NormalisedPdffInterval, log_estimate: float, spread: float) -> tuple[float, float]:
    """The interval (PDFF %) the bedside states for an estimate and its spread (edge_runtime.pipeline.exam does the
    same): the multiplier of the estimate's band."""
    intercept, slope = spec.recalibration
    centre = intercept + slope * log_estimate
    multiplier = band_multiplier(spec.band_scores, pdff_band(math.expm1(centre)), spec.coverage, spec.multiplier)
    return log1p_bounds(centre, multiplier * (spread + spec.spread_floor))


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


def fit_certified_calls(p_fatty: np.ndarray, fatty: np.ndarray, folds: np.ndarray, error: float) -> CertifiedCalls:
    """The definite calls the run certifies on every subject's cross-fitted calibrated p_fatty, and their own
    cross-fitted figures: each fold judged by thresholds certified on the other folds.

    Args:
        p_fatty: each subject's calibrated p_fatty from a calibrator fitted without its fold.
        fatty: each subject's truth.
        folds: each subject's fold.
        error: the largest share of wrong definite calls to certify, per class.
    """
    up, down = certified_thresholds(p_fatty, fatty, error)
    called = np.array([None] * len(fatty), dtype=object)
    for fold in np.unique(folds):
        test, train = folds == fold, folds != fold
        f, n = certified_thresholds(p_fatty[train], fatty[train], error)
        for i in np.flatnonzero(test):
            called[i] = definite_call(float(p_fatty[i]), f.threshold, n.threshold)
    definite = np.array([c is not None for c in called])
    said = np.array([c == "fatty" for c in called])
    cv_error = {"all": float(np.mean(said[definite] != fatty[definite])) if definite.any() else None}
    for name, truth in (("fatty", True), ("normal", False)):
        mine = np.array([c == name for c in called])
        cv_error[name] = float(np.mean(fatty[mine] != truth)) if mine.any() else None
    evidence = sorted((round(float(p), 6), bool(y)) for p, y in zip(p_fatty, fatty, strict=True))
    return CertifiedCalls(
        method=CERTIFIED_METHOD,
        error=error,
        subjects=len(fatty),
        fatty_threshold=up.threshold,
        normal_threshold=down.threshold,
        evidence=evidence,
        cv_definite_share=float(definite.mean()),
        cv_error=cv_error,
    )
