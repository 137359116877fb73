"""Scanner onboarding: find the B-mode image box on a screen grab, so a new console becomes a profile in one
command (``edge-runtime profile detect``).

The box is where speckle is: grey pixels whose neighbourhood varies strongly. Text, the depth ruler and the
TGC curve are thin strokes (removed by a morphological opening); colour bars are not grey; the grey bar is a
smooth ramp (no texture); a thumbnail is speckle too, but small, so the largest textured region wins.
Several grabs of one console must agree, or the command says where they do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_runtime.profiles import ProfileError

Box = tuple[int, int, int, int]  # x, y, width, height in screen pixels

GREY_CHROMA = 10  # max - min over RGB at or below this is a grey pixel (B-mode is grey)
TEXTURE_WINDOW = 9  # local standard deviation window, pixels
TEXTURE_STD = 3.0  # grey levels: >= 95 % of sector pixels vary more than this within a window
STROKE = 15  # opening kernel: removes strokes and ticks thinner than this (text, ruler, TGC curve)
MIN_AREA_SHARE = 0.03  # a box smaller than this share of the screen is not the image
AGREEMENT_IOU = 0.97  # grabs of one console must give boxes at least this similar


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def texture_mask(rgb: np.ndarray) -> np.ndarray:
    """Grey pixels with a speckle-like neighbourhood (uint8 0/1)."""
    pixels = rgb.astype(np.float32)
    grey = pixels.mean(axis=2)
    chroma = pixels.max(axis=2) - pixels.min(axis=2)
    size = (TEXTURE_WINDOW, TEXTURE_WINDOW)
    mean = cv2.boxFilter(grey, -1, size)
    var = cv2.boxFilter(grey * grey, -1, size) - mean * mean
    textured = (np.sqrt(np.maximum(var, 0)) > TEXTURE_STD) & (chroma <= GREY_CHROMA)
    return textured.astype(np.uint8)


def _largest_region(mask: np.ndarray) -> tuple[np.ndarray, int] | None:
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (STROKE, STROKE)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    if count <= 1:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return (labels == best).astype(np.uint8), int(stats[best, cv2.CC_STAT_AREA])


def detect_box(rgb: np.ndarray) -> Box:
    """The B-mode box of one screen grab (H x W x 3 RGB uint8); a ProfileError when there is none."""
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.dtype != np.uint8:
        raise ProfileError(f"expected an RGB uint8 screen grab, got shape {rgb.shape} and {rgb.dtype}")
    rgb = np.ascontiguousarray(rgb[:, :, :3])
    height, width = rgb.shape[:2]
    mask = texture_mask(rgb)
    found = _largest_region(mask)
    if found is None or found[1] < MIN_AREA_SHARE * width * height:
        raise ProfileError("found no ultrasound image box (no region of grey speckle large enough)")
    region, _ = found
    ys, xs = np.nonzero(region)
    # The texture window reaches half its width past the image's edge; the opening trims about 0.3 of its
    # radius off the sector's right-angled corners. Both are known, so the edges are corrected for them.
    inset = TEXTURE_WINDOW // 2 - round(0.3 * (STROKE // 2))
    x0, y0 = int(xs.min()) + inset, int(ys.min()) + inset
    x1, y1 = int(xs.max()) - inset, int(ys.max()) - inset
    box = (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
    if box[2] * box[3] >= 0.95 * width * height:
        raise ProfileError("the speckle fills the whole image: it is already cropped (use the full-frame profile)")
    return box


def agree(boxes: list[Box], names: list[str]) -> Box:
    """The boxes of several grabs of one console, combined (median edges); a ProfileError naming the grabs
    that disagree and by how much."""
    edges = np.array([(x, y, x + w, y + h) for x, y, w, h in boxes])
    x0, y0, x1, y1 = (int(v) for v in np.median(edges, axis=0).round())
    combined = (x0, y0, x1 - x0, y1 - y0)
    off = [(name, box, iou(box, combined)) for name, box in zip(names, boxes, strict=True)]
    bad = [f"{name}: {box} (IoU {score:.3f})" for name, box, score in off if score < AGREEMENT_IOU]
    if bad:
        raise ProfileError(
            f"the grabs disagree on the image box (median {combined}); these differ: {'; '.join(bad)}. "
            "Are they all from one console and one preset?"
        )
    return combined


def draw_overlay(rgb: np.ndarray, box: Box, label: str) -> np.ndarray:
    """The grab with the box drawn, for a person to confirm before the profile is used."""
    out = np.ascontiguousarray(rgb[:, :, :3]).copy()
    x, y, w, h = box
    cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), (0, 255, 0), 3)
    cv2.putText(out, label, (x + 6, max(24, y - 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 255, 0), 2, cv2.LINE_AA)
    return out


def read_grab(path: str) -> np.ndarray:
    """A screen grab file (PNG, JPEG, BMP, TIFF) as RGB uint8; a ProfileError naming the file otherwise."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ProfileError(f"{path}: not a readable image (a PNG, JPEG, BMP or TIFF screen grab)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class Onboarding:
    """The result of ``profile detect``: one profile from one or more grabs of a console."""

    name: str
    vendor: str
    screen: tuple[int, int]
    box: Box
    per_grab: list[tuple[str, Box]]
    first_grab: np.ndarray = field(repr=False, compare=False)  # what the overlay is drawn on (decoded once)

    def profile_mapping(self) -> dict[str, object]:
        return {"vendor": self.vendor, "screen": list(self.screen), "crop": list(self.box)}


def onboard(paths: list[str], name: str, vendor: str) -> Onboarding:
    """Detect the box on every grab, check they are one console (same size, agreeing boxes), combine."""
    grabs = [(str(p), read_grab(p)) for p in paths]
    sizes = {(g.shape[1], g.shape[0]) for _, g in grabs}
    if len(sizes) > 1:
        listing = ", ".join(f"{p} {g.shape[1]}x{g.shape[0]}" for p, g in grabs)
        raise ProfileError(f"the grabs differ in size, so they are not one screen layout: {listing}")
    per_grab = []
    for path, grab in grabs:
        try:
            per_grab.append((path, detect_box(grab)))
        except ProfileError as exc:
            raise ProfileError(f"{path}: {exc}") from None
    box = agree([b for _, b in per_grab], [p for p, _ in per_grab])
    return Onboarding(name, vendor, sizes.pop(), box, per_grab, grabs[0][1])
