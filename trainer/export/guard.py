"""Export step: the out-of-distribution guard, a per-view PCA summary of the training features.

The threshold is the (1 - target) quantile of out-of-fold scores: every subject is scored by a summary fitted
without it, which is how a new patient meets the shipped summary. In-sample scores would be smaller (a PCA fits
its own data best) and the threshold too strict.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import GroupKFold

from edge_runtime.gate import ViewGuard

MAX_COMPONENTS = 32


def summarise(features: np.ndarray) -> ViewGuard:
    """A PCA summary of (N, F) features: standardisation, principal axes and the residual they leave."""
    mean = features.mean(axis=0)
    std = features.std(axis=0)
    scale = np.sqrt(std**2 + float(np.median(std)) ** 2 + 1e-12)  # near-constant features do not dominate
    z = (features - mean) / scale
    k = max(1, min(MAX_COMPONENTS, len(features) // 4))
    _, singular, axes = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
    variances = np.maximum(singular[:k] ** 2 / max(len(z) - 1, 1), 1e-6)
    components = axes[:k]
    t = z @ components.T
    residual = float(np.mean(np.maximum(np.sum(z * z, axis=1) - np.sum(t * t, axis=1), 0.0))) + 1e-6
    as32 = [np.asarray(a, np.float32) for a in (mean, scale, components, variances)]
    return ViewGuard(*as32, residual)


def out_of_fold_scores(features: np.ndarray, groups: list[str]) -> np.ndarray:
    """Each frame's score under a summary fitted without its subject's frames (5 folds by subject)."""
    scores = np.zeros(len(features))
    for fit, held in GroupKFold(n_splits=min(5, len(set(groups)))).split(features, groups=groups):
        scores[held] = summarise(features[fit]).scores(features[held])
    return scores


def threshold(scores: np.ndarray, false_alarms: float) -> float:
    """The conformal (1 - false_alarms) quantile: at most that share of new training-like frames lie above."""
    rank = min(len(scores), int(np.ceil((len(scores) + 1) * (1 - false_alarms))))
    return float(np.sort(scores)[rank - 1])
