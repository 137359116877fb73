"""What the model knows about its own error, in one place for the trainer (which fits it on out-of-fold predictions)
and the bedside (which applies it): the ensemble's summary of a pair, conformal class sets and PDFF intervals.

- **Ensemble.** A bundle's head is a small ensemble: the head trained on the training group and heads bagged on
  subsamples of it. A pair's answer is their mean (logits for p_fatty, log(1 + PDFF) for PDFF); their spread says
  how much the training data pin this patient down, which frame noise does not.
- **Class sets** (split conformal). On the run's out-of-fold predictions the nonconformity of a subject is
  1 - p(its true class), with p calibrated. At coverage c the threshold q is the ceil((n + 1) c)-th smallest
  score; a patient's set holds every class whose 1 - p is at most q. One class: a definite call, earned at that
  coverage. Both, or none (the model is more accurate than c demands but not for this patient): indeterminate.
- **Definite calls** (conformal risk control, per class). A fatty call is definite only at a calibrated p_fatty where
  the run's own cross-fitted subjects at or beyond it give (wrong + 1) / (calls + 1) <= ``error``; likewise a normal
  call. A run too small to certify a threshold certifies none of that class.
- **PDFF intervals** (normalised split conformal, in log(1 + PDFF), Mondrian by the estimate's band). The score is
  |truth - estimate| / (spread + floor): the interval is wider where the ensemble disagrees, and its scale is
  fitted per band of the estimate so that c of the out-of-fold subjects in each band are covered.
Numpy only: this runs at the bedside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_runtime.contracts import PDFF_BANDS

P_CLIP = 1e-6  # probabilities are clipped this far from 0 and 1 before taking logits
CLASSES = ("fatty", "normal")


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), P_CLIP, 1 - P_CLIP)
    return np.log(p) - np.log1p(-p)


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def conformal_quantile(scores: np.ndarray | list[float], coverage: float) -> float:
    """The ceil((n + 1) coverage)-th smallest score: at most 1 - coverage of new scores exceed it (inf when there are
    too few scores to promise that coverage)."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    rank = math.ceil((len(ordered) + 1) * coverage)
    return float(ordered[rank - 1]) if rank <= len(ordered) else math.inf


@dataclass(frozen=True)
class Members:
    """One pair (or one subject) through every head of the ensemble."""

    logit: float  # mean of the members' logits of p_fatty
    log_pdff: float  # mean of the members' log(1 + PDFF)
    logit_spread: float  # their standard deviations (0 for a single head)
    log_pdff_spread: float

    @property
    def p_fatty(self) -> float:
        return float(sigmoid(self.logit))

    @property
    def pdff(self) -> float:
        return math.expm1(self.log_pdff)


def combine_members(p_fatty: np.ndarray | list[float], pdff: np.ndarray | list[float]) -> Members:
    """The ensemble's answer and spread from each member's p_fatty and PDFF (%)."""
    logits = logit(np.asarray(p_fatty, dtype=np.float64))
    logs = np.log1p(np.maximum(np.asarray(pdff, dtype=np.float64), 0.0))
    return Members(float(logits.mean()), float(logs.mean()), _spread(logits), _spread(logs))


def _spread(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def class_set(p_fatty: float, threshold: float) -> list[str]:
    """The classes whose nonconformity 1 - p(class) is at most the conformal threshold, fatty first."""
    chosen = []
    if 1.0 - p_fatty <= threshold:
        chosen.append("fatty")
    if p_fatty <= threshold:
        chosen.append("normal")
    return chosen


def definite_bounds(threshold: float) -> tuple[float, float]:
    """(p_fatty at or below which the set is {normal}, p_fatty at or above which it is {fatty}) for a threshold."""
    return min(threshold, 1.0 - threshold), max(threshold, 1.0 - threshold)


def class_score(p_fatty: np.ndarray, fatty: np.ndarray) -> np.ndarray:
    """Nonconformity of each subject's true class: 1 - p(true class)."""
    return np.where(fatty, 1.0 - p_fatty, p_fatty)


def interval_score(log_truth: np.ndarray, log_estimate: np.ndarray, spread: np.ndarray, floor: float) -> np.ndarray:
    """Normalised PDFF nonconformity: the error in log(1 + PDFF) over the ensemble's spread plus a floor.

    Args:
        log_truth: log(1 + true PDFF).
        log_estimate: the (recalibrated) estimate, same units.
        spread: the ensemble's spread, same units.
        floor: added to the spread.
    """
    return np.abs(log_truth - log_estimate) / (spread + floor)


def pdff_band(pdff: float) -> str:
    """The PDFF grade a value falls in (contracts.PDFF_BANDS). A recalibrated estimate may fall below 0 % or above
    100 %: it is graded with the nearest band, since a grade is asked of every estimate."""
    if math.isnan(pdff):
        raise ValueError("a PDFF of NaN has no grade")
    clamped = min(max(pdff, PDFF_BANDS[0][1]), PDFF_BANDS[-1][2] - 1e-9)
    return next(name for name, lo, hi in PDFF_BANDS if lo <= clamped < hi)


def log1p_bounds(log_centre: float, halfwidth: float) -> tuple[float, float]:
    """An interval in log(1 + PDFF) back in PDFF %, never below 0."""
    return max(math.expm1(log_centre - halfwidth), 0.0), math.expm1(log_centre + halfwidth)


def ensemble_mean(p_fatty: np.ndarray, pdff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble's answer for many rows at once: members on axis 0 (the bedside's combine_members, vectorised)."""
    p = sigmoid(logit(np.asarray(p_fatty, dtype=np.float64)).mean(axis=0))
    return p, np.expm1(np.log1p(np.maximum(np.asarray(pdff, dtype=np.float64), 0.0)).mean(axis=0))


@dataclass(frozen=True)
class Certified:
    """One class's definite calls as the calibration certifies them: the score at or beyond which a call is made
    (None: no threshold could be certified), and how many calibration subjects it calls and how many wrongly."""

    threshold: float | None
    calls: int = 0
    wrong: int = 0


def fewest_calls(error: float) -> int:
    """The fewest calls, all right, that can certify ``error``: (0 + 1) / (n + 1) <= error."""
    return math.ceil(1 / error - 1 - 1e-9)


def certify(scores: np.ndarray, wrong: np.ndarray, error: float, least: float = 0.5) -> Certified:
    """Conformal risk control of one class's wrong definite calls: the lowest score threshold at which the calibration
    subjects at or above it give (wrong + 1) / (calls + 1) <= ``error``. The +1 counts the next patient as a possible
    wrong call, as split conformal counts the test point; thresholds sit between distinct scores.

    Args:
        scores: each calibration subject's score for this class (higher: more confident in it).
        wrong: whether the class would be a wrong call for that subject.
        error: the largest share of wrong definite calls to certify.
        least: the lowest score a call may be made at (0.5: the class's own side of the line).
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ranked, misses = np.asarray(scores, dtype=np.float64)[order], np.asarray(wrong, dtype=bool)[order]
    errors, best = np.cumsum(misses), Certified(None)
    for k in range(max(fewest_calls(error), 1), len(ranked) + 1):
        if k < len(ranked) and ranked[k] == ranked[k - 1]:
            continue  # a threshold cannot split tied scores
        if ranked[k - 1] < least:
            break  # a call against the class's own side of the line is never definite
        if (errors[k - 1] + 1) / (k + 1) <= error:
            best = Certified(float(ranked[k - 1]), k, int(errors[k - 1]))
    return best


def certified_thresholds(p_fatty: np.ndarray, fatty: np.ndarray, error: float) -> tuple[Certified, Certified]:
    """Each class's certified calls on calibrated p_fatty: fatty at p >= its threshold, normal at p <= its threshold
    (the normal class is certified on 1 - p and its threshold returned on the p_fatty scale).

    Args:
        p_fatty: each calibration subject's calibrated p_fatty (cross-fitted).
        fatty: its truth.
        error: the largest share of wrong definite calls to certify, per class.
    """
    p, fatty = np.asarray(p_fatty, dtype=np.float64), np.asarray(fatty, dtype=bool)
    up = certify(p, ~fatty, error)
    down = certify(1.0 - p, fatty, error)
    normal = Certified(None if down.threshold is None else 1.0 - down.threshold, down.calls, down.wrong)
    return up, normal


def definite_call(p_fatty: float, fatty_threshold: float | None, normal_threshold: float | None) -> str | None:
    """The certified call at this calibrated p_fatty: fatty, normal, or None (not definite)."""
    is_fatty = fatty_threshold is not None and p_fatty >= fatty_threshold
    is_normal = normal_threshold is not None and p_fatty <= normal_threshold
    if is_fatty == is_normal:
        return None
    return "fatty" if is_fatty else "normal"


def fewest_for_coverage(coverage: float) -> int:
    """The fewest scores whose conformal quantile at ``coverage`` is finite: the smallest n with ceil((n+1)c) <= n."""
    n = 1
    while math.ceil((n + 1) * coverage - 1e-9) > n:
        n += 1
    return n


def band_multiplier(band_scores: dict[str, list[float]] | None, band: str, coverage: float, pooled: float) -> float:
    """The interval's scale for an estimate in ``band``: the conformal quantile of that band's errors, or ``pooled``
    when the band states none or too few for this coverage.

    Args:
        band_scores: band -> its sorted normalised errors (None: the bundle states one scale).
        band: the estimate's band.
        coverage: the interval's coverage.
        pooled: the scale of all subjects together.
    """
    scores = (band_scores or {}).get(band)
    if not scores:
        return pooled
    multiplier = conformal_quantile(scores, coverage)
    return multiplier if math.isfinite(multiplier) else pooled
