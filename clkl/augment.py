"""Training-set augmentation of Kim et al.: 13 rotations (0..180 by 15 deg), each as is, flipped on x, on y.

The variants are a fixed, named set, which is what lets the frozen-backbone features of every variant be
computed once and cached. Test folds always see the un-augmented image (variant ``r000``). Appearance looks
(:mod:`clkl.appearance`: gain, TGC, grey map, ...) join the set as variants of the un-rotated image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from clkl.appearance import apply_look, look_names


@dataclass(frozen=True)
class Variant:
    angle: int  # degrees, counter-clockwise about the image centre
    flip: str  # "none", "x" (mirror left-right) or "y" (mirror top-bottom)
    look: str = ""  # an appearance look (clkl.appearance), applied before the rotation; "" = none

    @property
    def name(self) -> str:
        return (
            f"r{self.angle:03d}"
            + ("" if self.flip == "none" else f"f{self.flip}")
            + (f"-{self.look}" if self.look else "")
        )


IDENTITY = Variant(0, "none")
PAPER = tuple(Variant(a, f) for a in range(0, 181, 15) for f in ("none", "x", "y"))
LIGHT = (IDENTITY, Variant(0, "x"), Variant(90, "none"), Variant(180, "y"))
AUGMENTATIONS: dict[str, tuple[Variant, ...]] = {"paper": PAPER, "light": LIGHT, "none": (IDENTITY,)}


def variants(mode: str, appearance: tuple[str, ...] = ()) -> tuple[Variant, ...]:
    """The geometric set of an augmentation mode, then one un-rotated variant per look of the appearance families."""
    try:
        geometric = AUGMENTATIONS[mode]
    except KeyError:
        raise ValueError(f"unknown augmentation {mode!r}; expected one of {', '.join(AUGMENTATIONS)}") from None
    return geometric + tuple(Variant(0, "none", look) for look in look_names(appearance))


def apply_variant(image: np.ndarray, variant: Variant) -> np.ndarray:
    """Apply the look, rotate (same size, black corners, like the sector background), then flip."""
    out = apply_look(image, variant.look) if variant.look else image
    if variant.angle:
        h, w = image.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), variant.angle, 1.0)
        out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    if variant.flip == "x":
        out = out[:, ::-1]
    elif variant.flip == "y":
        out = out[::-1]
    return np.ascontiguousarray(out)
