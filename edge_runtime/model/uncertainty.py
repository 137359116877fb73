"""What the model knows about its own error, in one place for the trainer (which fits it on out-of-fold predictions)
and the bedside (which applies it): the ensemble's summary of a pair, conformal class sets and PDFF intervals.

- **Ensemble.** A bundle's head is a small ensemble: the head trained on the training group and heads bagged on
  subsamples of it. A pair's answer is their mean (logits for p_fatty, log(1 + PDFF) for PDFF); their spread says
  how much the training data pin this patient down, which frame noise does not.
- **Class sets** (split conformal). On the run's out-of-fold predictions the nonconformity of a subject is
  1 - p(its true class), with p calibrated. At coverage c the threshold q is the ceil((n + 1) c)-th smallest
  score; a patient's set holds every class whose 1 - p is at most q. One class: a definite call, earned at that
  coverage. Both, or none (the model is more accurate than c demands but not for this patient): indeterminate.
- **PDFF intervals** (normalised split conformal, in log(1 + PDFF)). The score is |truth - estimate| / (spread +
  floor): the interval is wider where the ensemble disagrees, and its scale is fitted so that c of out-of-fold
  subjects are covered.
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
    """The PDFF grade a value falls in (contracts.PDFF_BANDS)."""
    return next(name for name, lo, hi in PDFF_BANDS if lo <= pdff < hi)


def log1p_bounds(log_centre: float, halfwidth: float) -> tuple[float, float]:
    """An interval in log(1 + PDFF) back in PDFF %, never below 0."""
    return max(math.expm1(log_centre - halfwidth), 0.0), math.expm1(log_centre + halfwidth)


def ensemble_mean(p_fatty: np.ndarray, pdff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble's answer for many rows at once: members on axis 0 (the bedside's combine_members, vectorised)."""
    p = sigmoid(logit(np.asarray(p_fatty, dtype=np.float64)).mean(axis=0))
    return p, np.expm1(np.log1p(np.maximum(np.asarray(pdff, dtype=np.float64), 0.0)).mean(axis=0))
