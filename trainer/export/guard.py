"""Export step: the out-of-distribution guard's two fitted parts, per view.

- Features: a PCA summary of the training frames' encoder features, each PDFF band weighing alike (a run has few
  severe livers; a summary of mostly mild ones flags the sickest patients, who then get no answer).
- Speckle: the mean and shrunk covariance of the training frames' speckle texture (two autocorrelations).

Each threshold is the (1 - target) quantile of out-of-fold scores: every subject is scored by a summary fitted
without it, which is how a new patient meets the shipped summary. In-sample scores would be smaller (a summary
fits its own data best) and the threshold too strict. The speckle part's threshold is at least Hotelling's
prediction bound, which widens as the cohort shrinks; under SPECKLE_MIN_SUBJECTS it is not fitted at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from scipy import stats
from sklearn.covariance import LedoitWolf
from sklearn.model_selection import GroupKFold

from edge_runtime.model.gate import SpeckleGuard, ViewGuard
from edge_runtime.model.uncertainty import pdff_band

MAX_COMPONENTS = 32
SPECKLE_MIN_SUBJECTS = 20  # fewer: the speckle part's false alarms on new subjects reach 10-30 % (DESIGN.md)


def summarise(features: np.ndarray, weights: np.ndarray | None = None) -> ViewGuard:
    """A PCA summary of (N, F) features: standardisation, principal axes and the residual they leave, each frame
    counting by its weight (None: alike)."""
    w = np.ones(len(features)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mean = w @ features
    std = np.sqrt(w @ (features - mean) ** 2)
    scale = np.sqrt(std**2 + float(np.median(std)) ** 2 + 1e-12)  # near-constant features do not dominate
    z = (features - mean) / scale
    k = max(1, min(MAX_COMPONENTS, len(features) // 4))
    centred = (z - w @ z) * np.sqrt(w * len(z))[:, None]
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    variances = np.maximum(singular[:k] ** 2 / max(len(z) - 1, 1), 1e-6)
    components = axes[:k]
    t = z @ components.T
    residual = float(w @ np.maximum(np.sum(z * z, axis=1) - np.sum(t * t, axis=1), 0.0)) + 1e-6
    as32 = [np.asarray(a, np.float32) for a in (mean, scale, components, variances)]
    return ViewGuard(*as32, residual)


def summarise_speckle(textures: np.ndarray) -> SpeckleGuard:
    """Where (N, S) training speckle statistics lie: standardised, with a Ledoit-Wolf shrunk covariance (a few
    dozen frames estimate two variances and a correlation, not more)."""
    mean = textures.mean(axis=0)
    scale = textures.std(axis=0) + 1e-6
    covariance = LedoitWolf().fit((textures - mean) / scale).covariance_
    as32 = [np.asarray(a, np.float32) for a in (mean, scale, np.linalg.inv(covariance))]
    return SpeckleGuard(*as32)


def out_of_fold_scores(
    values: np.ndarray,
    groups: list[str],
    fit: Callable[..., ViewGuard | SpeckleGuard] = summarise,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Each frame's score under a summary fitted without its subject's frames (5 folds by subject).

    Args:
        values: (N, ...) what the summary is fitted on (features, or speckle statistics).
        groups: each frame's subject.
        fit: the summary (summarise or summarise_speckle).
        weights: each frame's weight in the summary (summarise only), or None.
    """
    scores = np.zeros(len(values))
    for kept, held in GroupKFold(n_splits=min(5, len(set(groups)))).split(values, groups=groups):
        summary = fit(values[kept]) if weights is None else fit(values[kept], weights[kept])
        scores[held] = summary.scores(values[held])
    return scores


def threshold(scores: np.ndarray, false_alarms: float) -> float:
    """The conformal (1 - false_alarms) quantile: at most that share of new training-like frames lie above."""
    rank = min(len(scores), int(np.ceil((len(scores) + 1) * (1 - false_alarms))))
    return float(np.sort(scores)[rank - 1])


def gaussian_bound(frames: int, dims: int, false_alarms: float) -> float:
    """Hotelling's prediction bound: the Mahalanobis distance a new frame from the same Gaussian exceeds with
    probability false_alarms, when mean and covariance come from only `frames` frames (wide for few)."""
    f = stats.f.ppf(1 - false_alarms, dims, frames - dims)
    return float(np.sqrt((frames - 1) * (frames + 1) * dims / (frames * (frames - dims)) * f))


SEVERITY_WEIGHT_MAX = 4.0  # the most one frame of a sparse PDFF band may count for in the guard's summary


def severity_weights(pdff: np.ndarray) -> np.ndarray:
    """Each frame's weight in the features part: every PDFF band counts as much as the most populated one (a run
    has few severe livers, and a summary of mostly mild ones flags the sickest), at most SEVERITY_WEIGHT_MAX."""
    bands = [pdff_band(float(value)) for value in pdff]
    counts = Counter(bands)
    most = max(counts.values())
    return np.array([min(most / counts[band], SEVERITY_WEIGHT_MAX) for band in bands])


def fit_features(
    features: np.ndarray, subjects: list[str], false_alarms: float, pdff: np.ndarray | None = None
) -> ViewGuard:
    """The features part of one view: the PCA summary (severity-weighted when each frame's PDFF is given) and its
    out-of-fold threshold, every frame counting once in the quantile.

    Args:
        features: (N, F) the training frames' encoder features.
        subjects: each frame's subject (the folds keep a subject's frames together).
        false_alarms: the share of new training-like frames the threshold may flag.
        pdff: each frame's subject's MRI-PDFF, or None to count every frame alike.
    """
    weights = None if pdff is None else severity_weights(pdff)
    scores = out_of_fold_scores(features, subjects, summarise, weights)
    return replace(summarise(features, weights), threshold=threshold(scores, false_alarms))


def fit_speckle(textures: np.ndarray, subjects: list[str], false_alarms: float) -> SpeckleGuard:
    """The speckle part of one view: the summary, its threshold the larger of the out-of-fold quantile and the
    Gaussian prediction bound (the quantile of a few dozen frames is itself noisy)."""
    quantile = threshold(out_of_fold_scores(textures, subjects, summarise_speckle), false_alarms)
    bound = gaussian_bound(len(textures), textures.shape[1], false_alarms)
    return replace(summarise_speckle(textures), threshold=max(quantile, bound))
