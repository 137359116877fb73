"""The paper's MinMax step, applied per feature: fitted on the training fold, the head's first layer.

Plain numpy (no TensorFlow), so configuration and validation code can read the default floor cheaply.
"""

from __future__ import annotations

import numpy as np

SPAN_FLOOR = 0.1  # default floor, as a share of the median range of the features that vary (TrainConfig.minmax_floor)


def fit_minmax(features: np.ndarray, span_floor: float = SPAN_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """(min, range) per feature, fitted on the training fold.

    Constant features get range 1 (they map to 0, not NaN). Features that barely vary are scaled by at least
    ``span_floor`` x the median range: otherwise a feature that moved by a hair in training would be blown
    up hundreds of times, and with it the int8 encoder's rounding noise at the bedside (it flipped 2 of 11
    held-out calls before this floor). A departure from the paper, which has no floor: ``span_floor=0`` is
    the paper's plain MinMax. See docs/DESIGN.md, "Feature MinMax and its range floor".
    """
    lo = features.min(axis=0)
    span = features.max(axis=0) - lo
    varying = span > 1e-12
    floor = span_floor * float(np.median(span[varying])) if varying.any() else 0.0
    span = np.where(varying, np.maximum(span, floor), 1.0)
    return lo.astype(np.float32), span.astype(np.float32)
