"""Appearance augmentation: what differs between scanners, presets and operators, and not the fat.

A model that learned one scanner's look fails on the next (``trainer transfer`` measures it). Each family here
models one such difference on the preprocessed 224x224 image; each has a fixed set of levels, so every look is
a named variant whose frozen features are computed once and cached like the paper's rotations.

The transforms act on grey levels inside the sector only (black stays black) and change every pixel of one
image the same way, or smoothly with depth, so the hepatorenal contrast the fat raises keeps its sign.
Which families the trainer uses by default, and why, is in docs/DESIGN.md ("Appearance augmentation").
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import cv2
import numpy as np

Transform = Callable[[np.ndarray, float], np.ndarray]  # float32 grey-level image (0..255), level -> image


def _gain(image: np.ndarray, offset: float) -> np.ndarray:
    """Overall gain: every echo brighter or darker by the same number of grey levels (dB on a log display)."""
    return image + offset


def _tgc(image: np.ndarray, slope: float) -> np.ndarray:
    """TGC slope: a gain that grows (or falls) linearly with depth, zero at mid-depth."""
    ramp = np.linspace(-0.5, 0.5, image.shape[0], dtype=np.float32)[:, None, None]
    return image + slope * ramp


def _grey_map(image: np.ndarray, gamma: float) -> np.ndarray:
    """Grey map: display = level ** gamma (a brighter or darker post-processing curve)."""
    return 255.0 * (np.clip(image, 0, 255) / 255.0) ** gamma


def _dynamic_range(image: np.ndarray, stretch: float) -> np.ndarray:
    """Dynamic range: contrast about mid-grey (a narrower range stretches it, a wider one flattens it)."""
    return 128.0 + (image - 128.0) * stretch


def _speckle(image: np.ndarray, sigma: float) -> np.ndarray:
    """Speckle size: coarser (Gaussian blur) for sigma > 0, finer-looking (unsharp mask) for sigma < 0."""
    blurred = cv2.GaussianBlur(image, (0, 0), abs(sigma))
    return blurred if sigma > 0 else image + (image - blurred)


def _noise(image: np.ndarray, sd: float) -> np.ndarray:
    """Electronic noise, seeded by the image's content so the variant is the same every time it is made."""
    rng = np.random.default_rng(zlib.crc32(image.tobytes()))
    return image + rng.normal(0.0, sd, image.shape[:2]).astype(np.float32)[..., None]


def _zoom(image: np.ndarray, scale: float) -> np.ndarray:
    """Zoom or crop jitter: the sector scaled about the probe (top centre); black where the scan has no data."""
    h, w = image.shape[:2]
    matrix = np.float32([[scale, 0, (1 - scale) * w / 2], [0, scale, 0]])
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)


def _jpeg(image: np.ndarray, quality: float) -> np.ndarray:
    """JPEG re-encoding, as a PACS export or a video link does."""
    _, blob = cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(blob, cv2.IMREAD_UNCHANGED).astype(np.float32).reshape(image.shape)


# family -> (transform, its levels). The levels span about the gap between the phantom's PHILIPS-like and
# GE-like renderings (gain sd 6 dB on a 55-75 dB display is ~20-30 grey levels; gamma 0.85 vs 1.1).
FAMILIES: dict[str, tuple[Transform, tuple[float, ...]]] = {
    "gain": (_gain, (-28.0, 28.0)),
    "tgc": (_tgc, (-45.0, 45.0)),
    "grey_map": (_grey_map, (0.7, 1.4)),
    "dynamic_range": (_dynamic_range, (0.75, 1.3)),
    "speckle": (_speckle, (1.2, -1.0)),
    "noise": (_noise, (10.0,)),
    "zoom": (_zoom, (0.9, 1.12)),
    "jpeg": (_jpeg, (30.0,)),
}


# The trainer's default: the families that made the model carry over to an unseen vendor (trainer transfer
# --study). Noise and JPEG re-encoding added nothing measurable on top of these, so they cost no default
# extraction; '--appearance all' still uses them.
KEPT_FAMILIES = ("gain", "tgc", "grey_map", "dynamic_range", "speckle", "zoom")


def look_names(families: tuple[str, ...]) -> tuple[str, ...]:
    """The named looks of some families, e.g. ('gain0', 'gain1'): one per level."""
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown appearance family {', '.join(unknown)}; expected some of {', '.join(FAMILIES)}")
    return tuple(f"{family}{k}" for family in families for k in range(len(FAMILIES[family][1])))


def apply_look(image: np.ndarray, look: str) -> np.ndarray:
    """One named look on a uint8 image (H x W x 3); pixels outside the sector (exactly black) stay black."""
    family = look.rstrip("0123456789")
    transform, levels = FAMILIES[family]
    level = int(look[len(family) :])
    sector = image.max(axis=2, keepdims=True) > 0
    out = transform(image.astype(np.float32), levels[level])
    if family != "zoom":  # zoom moves the sector itself; its own border is black
        out = np.where(sector, np.clip(out, 1, 255), 0)
    return np.clip(out, 0, 255).astype(np.uint8)
