"""Telling a repeat of the same image (a frozen screen, resent) from a new live frame: a frozen screen sent for a minute
is one image, not 1800 votes in the exam."""

from __future__ import annotations

import cv2
import numpy as np

FINGERPRINT_SIZE = 56  # the model input averaged over 4 x 4 pixels: capture noise averages out, speckle does not
CHANNEL_MEAN = np.full((1, 3), 1 / 3, np.float32)  # cv2.transform's matrix: RGB -> their mean


def frame_fingerprint(tensor: np.ndarray) -> np.ndarray:
    """A small grey picture of a model input, to tell a repeat of the same image (a frozen screen, resent)
    from a new live frame: live speckle decorrelates between frames, a frozen screen differs by noise only."""
    small = cv2.resize(tensor, (FINGERPRINT_SIZE, FINGERPRINT_SIZE), interpolation=cv2.INTER_AREA)
    return cv2.transform(small.astype(np.float32), CHANNEL_MEAN).ravel()  # numpy's mean over axis 2: 20x slower


def same_image(a: np.ndarray, b: np.ndarray, min_correlation: float) -> bool:
    """Whether two fingerprints show one image: correlation at or above ``min_correlation``. Correlation, not a
    grey-level difference, because harmonisation rescales a frozen frame when grabber noise moves its median."""
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return norm > 0 and float(np.dot(a, b)) / norm >= min_correlation
