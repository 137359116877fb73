"""The hepatorenal index as a head input (`trainer train --hri`): each subject's log HRI on its kidney-liver image,
beside the two views' features, so the ablation can say whether a head retrained with it beats one without.

Every augmented variant of a subject carries the subject's own index: rotations and flips move the regions, not the
ratio of their echoes. A subject whose image gives no index gets the median of the cohort's measured ones: an image
measurement, no label, so no fold learns anything of its test subjects' truth.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.measure.hri import measure_frame
from trainer.config import HRI_SCALAR, TrainConfig
from trainer.dataset import Cohort


def subject_hri(cohort: Cohort) -> dict[str, float | None]:
    """Each subject's HRI on its kidney-liver image (None: not measurable)."""
    return {sid: measure_frame(cohort.image(sid, "kidney_liver")).value for sid in cohort.ids}


def log_hri_column(cohort: Cohort) -> tuple[np.ndarray, int]:
    """Each subject's log(HRI), missing ones filled with the measured median; and how many were measured."""
    values = subject_hri(cohort).values()
    logs = np.array([np.log(v) if v else np.nan for v in values], dtype=np.float32)
    measured = np.isfinite(logs)
    fill = float(np.median(logs[measured])) if measured.any() else 0.0
    return np.where(measured, logs, fill).astype(np.float32), int(measured.sum())


def with_hri_input(features: dict[str, np.ndarray], cohort: Cohort, config: TrainConfig) -> dict[str, np.ndarray]:
    """``features`` plus, when the configuration asks for it, the log HRI as one more (subjects, variants, 1) block."""
    if not config.hri or HRI_SCALAR in features:
        return features
    variants = next(iter(features.values())).shape[1]
    column, _ = log_hri_column(cohort)
    return {**features, HRI_SCALAR: np.repeat(column[:, None, None], variants, axis=1)}
