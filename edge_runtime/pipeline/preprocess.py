"""The one preprocessing function: scanner screen -> 224x224x3 uint8 B-mode tensor.

The trainer, the calibration set and the bedside runtime all call :func:`preprocess_frame`, so a model
never sees pixels prepared differently from the ones it was trained on. The output is plain uint8 RGB: the
ImageNet mean subtraction lives inside the exported encoder, and the paper's MinMax scaling is applied to the
encoder's features, per feature, in the head's first layer (see docs/DESIGN.md, "Feature MinMax").
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_runtime.contracts import HARMONISATIONS, MODEL_SIZE
from edge_runtime.errors import FattyLiverError
from edge_runtime.scanners.profiles import ScannerProfile


class PreprocessError(FattyLiverError):
    """A frame cannot be turned into a model input (wrong size for its profile, wrong dtype, blank)."""


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Any grey/RGB/RGBA uint8 array -> HxWx3 RGB uint8 (grey is replicated, alpha dropped)."""
    if image.dtype != np.uint8:
        raise PreprocessError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise PreprocessError(f"expected a grey, RGB or RGBA image, got shape {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    return image


def crop_bmode(frame: np.ndarray, profile: ScannerProfile) -> np.ndarray:
    """Cut the B-mode region out of a full scanner screen, after checking the screen is the profile's."""
    height, width = frame.shape[:2]
    if not profile.fits(width, height):
        raise PreprocessError(
            f"frame is {width}x{height} but scanner profile {profile.name!r} expects {profile.expected_size()}"
        )
    x, y, w, h = profile.box_for(width, height)
    return frame[y : y + h, x : x + w]


def preprocess_frame(
    frame: np.ndarray, profile: ScannerProfile, *, harmonisation: str, size: int = MODEL_SIZE
) -> np.ndarray:
    """Crop with the profile's box, convert to 3-channel uint8 RGB, resize to size x size with INTER_AREA, then
    apply the model's scanner harmonisation (see :func:`harmonise`).

    Args:
        frame: the scanner screen (or a cropped image for a full-frame profile), grey, RGB or RGBA uint8.
        profile: the scanner profile whose box is cropped.
        harmonisation: the model's (TrainConfig.harmonisation; at the bedside the bundle's input.harmonisation),
            always stated: a model and its bedside must never disagree about it by a default.
        size: the model input's side.
    """
    rgb = to_rgb_uint8(np.asarray(frame))
    bmode = crop_bmode(rgb, profile)
    resized = cv2.resize(bmode, (size, size), interpolation=cv2.INTER_AREA)
    return harmonise(np.ascontiguousarray(resized, dtype=np.uint8), harmonisation)


SECTOR_MEDIAN_GREY = 96.0  # where "sector_median" puts the median echo of every image
SECTOR_FLOOR = 24  # grey levels up to this are background (grabber noise, video black at 16) or anechoic:
# not echoes, so they stay out of the sector median


def channel_max(image: np.ndarray) -> np.ndarray:
    """Per-pixel max over RGB of a uint8 image: its grey level (B-mode is grey) or its brightest channel. OpenCV
    on contiguous planes, about twenty times numpy's reduction over the 3-long last axis (1.2 ms at 224x224)."""
    r, g, b = cv2.split(np.ascontiguousarray(image))
    return cv2.max(cv2.max(r, g), b)


def display_level(bmode: np.ndarray) -> float | None:
    """The median echo of a B-mode crop as the console displays it (grey levels above SECTOR_FLOOR, every fourth
    pixel each way): what sector-median harmonisation divides away, so drift reads it before harmonisation. None:
    no echoes."""
    sample = np.ascontiguousarray(bmode[::4, ::4])
    grey = channel_max(sample) if sample.ndim == 3 and sample.shape[2] == 3 else sample.reshape(sample.shape[:2])
    echoes = grey[grey > SECTOR_FLOOR]
    return float(np.median(echoes)) if echoes.size else None


def harmonise(image: np.ndarray, method: str) -> np.ndarray:
    """Scanner harmonisation of a preprocessed tensor, keeping relative contrast.

    'sector_median' scales every grey level inside the sector by one factor, so the sector's median echo lands on
    SECTOR_MEDIAN_GREY: overall gain and display brightness go, while ratios of grey levels (the hepatorenal index
    is one) stay. Pixels outside the sector (exactly black) stay black. The median is taken over echoes only
    (above SECTOR_FLOOR), so a grabber's noisy or lifted black does not move it.
    """
    if method == "none":
        return image
    if method != "sector_median":
        raise PreprocessError(f"unknown harmonisation {method!r}; expected one of {', '.join(HARMONISATIONS)}")
    grey = channel_max(image)
    inside = grey[grey > SECTOR_FLOOR]
    if inside.size == 0:
        return image
    factor = SECTOR_MEDIAN_GREY / max(float(np.median(inside)), 1.0)
    levels = np.clip(np.arange(256, dtype=np.float32) * factor + 0.5, 0, 255).astype(np.uint8)
    scaled = cv2.LUT(image, np.maximum(levels, 1))  # one factor for every grey level: a table, not a float image
    scaled[grey == 0] = 0
    return scaled
