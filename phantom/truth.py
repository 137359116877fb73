"""What the phantom knows and a bedside measurement is judged against: a view's model input with its truth labels
at the same scale, and the hepatorenal index the truth masks give."""

from __future__ import annotations

import cv2
import numpy as np

from edge_runtime.contracts import MODEL_SIZE
from edge_runtime.pipeline.preprocess import crop_bmode, preprocess_frame
from phantom.anatomy import CORTEX, LIVER
from phantom.render import profile_for, render_view
from phantom.subject import Subject


def input_and_labels(subject: Subject, view: str, seed: int, frame: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The view's model input (as the bedside prepares it) and its truth labels resized to match.

    Args:
        subject: the subject.
        view: 'liver' or 'kidney_liver'.
        seed: the cohort seed.
        frame: the speckle realisation.
    """
    rendered = render_view(subject, view, seed, frame)
    profile = profile_for(subject)
    tensor = preprocess_frame(rendered.screen, profile, harmonisation="sector_median")
    labels = crop_bmode(rendered.mask[:, :, None], profile)[:, :, 0]
    return tensor, cv2.resize(labels, (MODEL_SIZE, MODEL_SIZE), interpolation=cv2.INTER_NEAREST)


def truth_hri(image: np.ndarray, labels: np.ndarray) -> float:
    """Mean liver grey in the depth band of the renal cortex over mean cortex grey, on the truth masks (any grey or
    RGB image with labels of its size)."""
    grey = (image[:, :, 0] if image.ndim == 3 else image).astype(np.float64)
    rows = np.flatnonzero((labels == CORTEX).any(axis=1))
    return float(grey[rows][labels[rows] == LIVER].mean() / grey[rows][labels[rows] == CORTEX].mean())
