"""The PDFF interval at a site: the parent's calibration carried over, corrected by the site's own residuals.

Twelve subjects cannot state a 90 % interval by conformal counting alone (the 90 % quantile of eleven errors is
their largest, and the largest of a dozen swings widely between draws). The parent's out-of-fold normalised errors
(ninety subjects, per band of the estimate) give the interval's shape; the site's subjects give what a dozen can
estimate: the line from its estimates to its MRI-PDFF in log(1 + PDFF) (a console's grey map moves and compresses
every estimate alike) and the scale of its held-out errors against the parent's. A scale read off a dozen errors
is itself uncertain, and an interval built on a noisy scale covers less than stated on average; it is widened by
that uncertainty, as a t interval widens a normal one. The guarantee is therefore conditional, and the bundle says
so: 90 % if the site's errors are the parent's up to this line and scale; `trainer site-check` on subjects the
adaptation never saw is what confirms it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm, t

from edge_runtime.contracts import NormalisedPdffInterval
from edge_runtime.model.uncertainty import interval_score

SCALE_LIMITS = (0.75, 3.0)  # a dozen residuals may widen the parent's interval threefold, narrow it by a quarter
MEDIAN_EFFICIENCY = 2.0 / math.pi  # a median of n normal errors estimates their scale as well as a mean of 0.64 n


def scale_uncertainty(subjects: int, coverage: float) -> float:
    """How much wider an interval is drawn when its scale is the median of ``subjects`` errors: the t quantile over
    the normal one, at the median's effective number of errors (1.16 for a dozen subjects at 90 %)."""
    tail = (1.0 + coverage) / 2.0
    freedom = max(subjects * MEDIAN_EFFICIENCY - 1.0, 1.0)
    return float(t.ppf(tail, freedom) / norm.ppf(tail))


def site_interval(parent: NormalisedPdffInterval, rows: list[dict]) -> tuple[NormalisedPdffInterval, float]:
    """The parent's interval with the site's own line and error scale; returns (interval, scale).

    The line (log truth on log estimate) is the site's least squares; the scale compares each subject's error from a
    line fitted without it (leave one out: an error the line has not seen) with the parent's out-of-fold errors,
    widened by its own uncertainty (scale_uncertainty).

    Args:
        parent: the parent bundle's normalised PDFF interval.
        rows: the local labelled subjects (pdff, pdff_ensemble, log_pdff_spread), as trainer.model_error reads them.
    """
    log_truth = np.log1p(np.maximum([r["pdff"] for r in rows], 0.0))
    log_estimate = np.log1p(np.maximum([r["pdff_ensemble"] for r in rows], 0.0))
    spread = np.array([r["log_pdff_spread"] for r in rows])
    slope, intercept = np.polyfit(log_estimate, log_truth, 1)
    held_out = np.empty(len(rows))
    for i in range(len(rows)):
        others = np.arange(len(rows)) != i
        b, a = np.polyfit(log_estimate[others], log_truth[others], 1)
        held_out[i] = a + b * log_estimate[i]
    errors = interval_score(log_truth, held_out, spread, parent.spread_floor)
    measured = np.median(errors) / max(float(np.median(parent.scores)), 1e-6)
    scale = float(np.clip(measured * scale_uncertainty(len(rows), parent.coverage), *SCALE_LIMITS))

    def scaled(scores: list[float]) -> list[float]:
        return [round(float(v) * scale, 6) for v in scores]

    bands = {band: scaled(scores) for band, scores in (parent.band_scores or {}).items()} or None
    interval = parent.model_copy(
        update={
            "scores": scaled(parent.scores),
            "multiplier": parent.multiplier * scale,
            "band_scores": bands,
            "recalibration": (float(intercept), float(slope)),
            "cv": None,
            "cv_median_width": None,
        }
    )
    return interval, scale
