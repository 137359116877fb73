"""Training-set augmentation of Kim et al.: 13 rotations (0..180 by 15 deg), each as is, flipped on x, on y.

The variants are a fixed, named set, which is what lets the frozen-backbone features of every variant be
computed once and cached. Test folds always see the un-augmented image (variant ``r000``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Variant:
    angle: int  # degrees, counter-clockwise about the image centre
    flip: str  # "none", "x" (mirror left-right) or "y" (mirror top-bottom)

    @property
    def name(self) -> str:
        return f"r{self.angle:03d}" + ("" if self.flip == "none" else f"f{self.flip}")


IDENTITY = Variant(0, "none")
PAPER = tuple(Variant(a, f) for a in range(0, 181, 15) for f in ("none", "x", "y"))
LIGHT = (IDENTITY, Variant(0, "x"), Variant(90, "none"), Variant(180, "y"))
AUGMENTATIONS: dict[str, tuple[Variant, ...]] = {"paper": PAPER, "light": LIGHT, "none": (IDENTITY,)}


def variants(mode: str) -> tuple[Variant, ...]:
    try:
        return AUGMENTATIONS[mode]
    except KeyError:
        raise ValueError(f"unknown augmentation {mode!r}; expected one of {', '.join(AUGMENTATIONS)}") from None


def apply_variant(image: np.ndarray, variant: Variant) -> np.ndarray:
    """Rotate (same size, black corners, like the sector background), then flip."""
    out = image
    if variant.angle:
        h, w = image.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), variant.angle, 1.0)
        out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    if variant.flip == "x":
        out = out[:, ::-1]
    elif variant.flip == "y":
        out = out[::-1]
    return np.ascontiguousarray(out)
