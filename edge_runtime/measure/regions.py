"""Where the hepatorenal index is measured on a kidney-liver frame: one region of renal cortex and one of liver
parenchyma at the same depth, found by image analysis on the model input (grey levels proportional to
the scanner's display).

How, in three steps a sonographer would recognise:
1. **The kidney.** A bank of kidney templates (bright capsule rim, mid-grey cortex, a ring of dark medullary
   pyramids, a bright central sinus) is matched to the smoothed image at quarter scale; the best ellipse is then
   refined at half scale. A weak case for a kidney (kidney_evidence) means no kidney is in view.
2. **The cortex.** Inside the ellipse, between the pyramid ring and the capsule, on the near-field side and off
   the poles: the pixels whose smoothed echo is typical of that band (not a pyramid, not the rim).
3. **The liver.** Outside the capsule, on the near-field side: the pixels typical of the parenchyma there (not a
   vessel, not the sector's edge).
The two seed discs are the deepest inside their candidates at one depth (within MAX_DEPTH_GAP rows); each region
then grows from its disc through connected typical pixels, and its outline is what is measured and drawn.

Nothing here is learned: the method needs no masks from a site and carries to consoles the model never saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

REFINE_WINDOW = 4  # px at half scale: how far the refinement looks around the coarse centre
SMOOTH_SIGMA = 2.0  # model-input px: averages speckle before the search and the typicality tests
# Kidney templates in model-input pixels: semi-axes (px) and tilt of the long axis from the horizontal (degrees).
LONG_AXES = (44.0, 50.0, 56.0)
SHORT_AXES = (26.0, 29.0, 32.0, 35.0)
TILTS = tuple(range(-80, 31, 10))
KidneyRule = tuple[tuple[float, ...], float]  # weights of kidney_signs, intercept
KIDNEY_RULE: KidneyRule = ((13.32, 1.32, 3.63, 0.69), -9.18)  # kidney_evidence's rule
MIN_KIDNEY_EVIDENCE = 0.7  # below this, no kidney is in view; at or above it, the view gate files a frame its head
# sees as no view as a kidney-liver view (model.gate.kidney_bar)
# Against a head that sees a liver view, the gate files a kidney-liver view only at or above this. On the 480
# kidney-liver and 480 other frames of `benchmarks kidney-rule` (two cohorts, three consoles), 64 % of kidney-liver
# frames and 1 other (a partial contact) reach it; 86 % and 7 others (6 liver views, 1 partial contact) reach 0.7.
KIDNEY_VIEW_EVIDENCE = 0.9
CORTEX_BAND = (0.74, 0.96)  # ellipse radius: outside the pyramids (which reach about 0.70), inside the capsule (1.0)
LIVER_BAND = (1.3, 2.2)  # ellipse radius: beyond the capsule and perirenal fat
MAX_POLAR = 0.85  # the cortex disc stays off the poles, where a template's long axis errs most
TYPICAL_MADS = 2.5  # a pixel is typical of its band within this many median absolute deviations
ATYPICAL_MARGIN = 2  # model-input px kept clear of an atypical pixel
CORTEX_RADIUS = 3  # model-input px: the cortex disc (about 30 pixels)
LIVER_RADIUS = 7  # model-input px: the liver disc (about 150 pixels)
CORTEX_REACH = 12  # model-input px: how far the cortex region grows from its disc through typical cortex
LIVER_REACH = 18  # model-input px: the same for the liver region
MAX_DEPTH_GAP = 6  # model-input px: how far apart in depth the two discs' centres may be


@dataclass(frozen=True)
class Kidney:
    """The kidney ellipse in model-input pixels: centre, semi-axes (long, short), tilt in degrees, and its match."""

    cx: float
    cy: float
    long: float
    short: float
    tilt: float
    match: float

    def radius(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each pixel's ellipse radius (1.0 on the capsule), its side (negative: nearer the probe than the long
        axis) and how far it lies from the poles (|cos| of its angle on the ellipse: 1 at a pole, 0 mid-way)."""
        ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
        c, s = math.cos(math.radians(self.tilt)), math.sin(math.radians(self.tilt))
        u = (xs - self.cx) * c + (ys - self.cy) * s
        v = -(xs - self.cx) * s + (ys - self.cy) * c
        rho = np.sqrt((u / self.long) ** 2 + (v / self.short) ** 2)
        return rho, v * math.copysign(1.0, c), np.abs(u / self.long) / np.maximum(rho, 1e-6)


@dataclass(frozen=True)
class Disc:
    """A circular region in model-input pixels."""

    cx: float
    cy: float
    radius: float

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
        return (xs - self.cx) ** 2 + (ys - self.cy) ** 2 <= self.radius**2


@dataclass(frozen=True)
class Region:
    """A measured region as the closed polygon drawn and measured (vertices x, y in model-input pixels)."""

    outline: tuple[tuple[float, float], ...]

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        filled = np.zeros(shape, np.uint8)
        cv2.fillPoly(filled, [np.round(np.array(self.outline)).astype(np.int32)], 1)
        return filled > 0


@dataclass(frozen=True)
class Regions:
    """What the finder found: the kidney and the two regions (None where it found none)."""

    kidney: Kidney | None
    cortex: Region | None
    liver: Region | None


def _template(long: float, short: float, tilt: float, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """A kidney's expected echo pattern and its mask at model input / scale."""
    a, b = long / scale, short / scale
    half = math.ceil(max(a, b) * 1.2) + 1
    ys, xs = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    c, s = math.cos(math.radians(tilt)), math.sin(math.radians(tilt))
    u, v = xs * c + ys * s, -xs * s + ys * c
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    pattern = np.full(rho.shape, 0.5, np.float32)  # cortex
    pattern[(rho > 0.45) & (rho < 0.71)] = 0.2  # the ring of pyramids, darker on average
    pattern[rho < 0.4] = 1.0  # the sinus
    pattern[(rho >= 1.0) & (rho < 1.12)] = 0.9  # capsule and perirenal fat
    return pattern, (rho < 1.14).astype(np.float32)


@lru_cache(maxsize=512)
def kidney_template(long: float, short: float, tilt: float, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The template of one ellipse at model input / scale, built once.

    Args:
        long: the long semi-axis, model-input pixels.
        short: the short semi-axis, model-input pixels.
        tilt: the long axis's tilt from the horizontal, degrees.
        scale: the search's downscaling of the model input.
    """
    return _template(long, short, tilt, scale)


def _best_match(
    image: np.ndarray, shapes: list[tuple[float, float, float]], scale: int, near: tuple[float, float] | None
) -> Kidney | None:
    """The best of ``shapes`` (long, short, tilt) matched to ``image`` (model input / scale), anywhere or within
    REFINE_WINDOW of ``near`` (a centre in model-input pixels)."""
    best: Kidney | None = None
    for long, short, tilt in shapes:
        pattern, mask = kidney_template(long, short, tilt, scale)
        half = (pattern.shape[0] - 1) // 2
        x0 = y0 = 0
        region = image
        if near is not None:
            cx, cy = round(near[0] / scale), round(near[1] / scale)
            x0, y0 = max(cx - half - REFINE_WINDOW, 0), max(cy - half - REFINE_WINDOW, 0)
            region = image[y0 : cy + half + REFINE_WINDOW + 1, x0 : cx + half + REFINE_WINDOW + 1]
        if pattern.shape[0] > region.shape[0] or pattern.shape[1] > region.shape[1]:
            continue
        scores = cv2.matchTemplate(region, pattern, cv2.TM_CCOEFF_NORMED, mask=mask)
        scores[~np.isfinite(scores)] = -1.0
        _, score, _, (x, y) = cv2.minMaxLoc(scores)
        if best is None or score > best.match:
            centre = ((x0 + x + half + 0.5) * scale - 0.5, (y0 + y + half + 0.5) * scale - 0.5)
            best = Kidney(*centre, long, short, tilt, float(score))
    return best


def _neighbours(values: tuple[float, ...], value: float) -> list[float]:
    i = values.index(value)
    return list(values[max(i - 1, 0) : i + 2])


def find_kidney(smooth: np.ndarray) -> Kidney | None:
    """The best-matching kidney ellipse in a smoothed model-input grey image: every template at quarter scale, then
    the neighbouring shapes at half scale near the best centre."""
    quarter = cv2.resize(smooth, None, fx=1 / 4, fy=1 / 4, interpolation=cv2.INTER_AREA)
    shapes = [(a, b, float(t)) for a in LONG_AXES for b in SHORT_AXES for t in TILTS]
    coarse = _best_match(quarter, shapes, 4, None)
    if coarse is None:
        return None
    half = cv2.resize(smooth, None, fx=1 / 2, fy=1 / 2, interpolation=cv2.INTER_AREA)
    tilts = [coarse.tilt + d for d in (-10.0, -5.0, 0.0, 5.0, 10.0)]
    nearby = [
        (a, b, t)
        for a in _neighbours(LONG_AXES, coarse.long)
        for b in _neighbours(SHORT_AXES, coarse.short)
        for t in tilts
    ]
    return _best_match(half, nearby, 2, (coarse.cx, coarse.cy))


def _typical(values: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Candidates whose smoothed echo lies within TYPICAL_MADS median absolute deviations of the candidates', and
    not within ATYPICAL_MARGIN pixels of one that does not (a vessel's or a pyramid's blurred edge)."""
    if not candidates.any():
        return candidates
    inside = values[candidates]
    median = float(np.median(inside))
    spread = max(float(np.median(np.abs(inside - median))) * 1.4826, 1.0)
    typical = candidates & (np.abs(values - median) <= TYPICAL_MADS * spread)
    atypical = cv2.dilate(
        (candidates & ~typical).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=ATYPICAL_MARGIN
    )
    return typical & (atypical == 0)


def _depth_profile(distance: np.ndarray, gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the largest distance within ``gap`` rows of it, and the column and row where it lies."""
    best_in_row = distance.max(axis=1)
    rows = len(best_in_row)
    best, where = np.zeros(rows, np.float32), np.zeros(rows, np.int64)
    for y in range(rows):
        lo, hi = max(y - gap, 0), min(y + gap + 1, rows)
        k = lo + int(np.argmax(best_in_row[lo:hi]))
        best[y], where[y] = best_in_row[k], k
    return best, where


def _discs_at_one_depth(cortex: np.ndarray, liver: np.ndarray) -> tuple[Disc | None, Disc | None]:
    """The cortex disc deepest inside its candidates among the rows where a liver disc fits within MAX_DEPTH_GAP
    rows of it, and that liver disc."""
    to_edge = {
        name: cv2.distanceTransform(m.astype(np.uint8), cv2.DIST_L2, 5) for name, m in (("c", cortex), ("l", liver))
    }
    cortex_rows = to_edge["c"].max(axis=1)
    liver_near, liver_row = _depth_profile(to_edge["l"], MAX_DEPTH_GAP)
    usable = (cortex_rows >= CORTEX_RADIUS) & (liver_near >= LIVER_RADIUS)
    if not usable.any():
        return (Disc(*_peak(to_edge["c"]), CORTEX_RADIUS) if cortex_rows.max() >= CORTEX_RADIUS else None), None
    y = int(np.argmax(np.where(usable, cortex_rows + 0.25 * liver_near, -1.0)))
    cortex_disc = Disc(float(np.argmax(to_edge["c"][y])), float(y), float(CORTEX_RADIUS))
    ly = int(liver_row[y])
    return cortex_disc, Disc(float(np.argmax(to_edge["l"][ly])), float(ly), float(LIVER_RADIUS))


def _peak(distance: np.ndarray) -> tuple[float, float]:
    _, _, _, (x, y) = cv2.minMaxLoc(distance)
    return float(x), float(y)


def kidney_signs(smooth: np.ndarray, kidney: Kidney) -> np.ndarray:
    """What makes a matched ellipse look like a kidney: the template match and three contrasts in standard
    deviations of the echo inside the ellipse (sinus over pyramid ring, cortex over pyramid ring, tissue in front
    over tissue behind). KIDNEY_RULE weighs them; `benchmarks kidney-rule` fits and checks it."""
    rho, side, _ = kidney.radius(smooth.shape)
    spread = float(smooth[rho < 1.0].std()) + 1.0

    def mean(where: np.ndarray) -> float:
        return float(smooth[where].mean()) if where.any() else 0.0

    ring = mean((rho >= 0.45) & (rho < 0.71))
    return np.array(
        [
            kidney.match,
            (mean(rho < 0.4) - ring) / spread,
            (mean((rho >= CORTEX_BAND[0]) & (rho < CORTEX_BAND[1])) - ring) / spread,
            (mean((rho >= 1.2) & (rho < 1.8) & (side < 0)) - mean((rho >= 1.2) & (rho < 1.8) & (side > 0))) / spread,
        ]
    )


def evidence_of(signs: np.ndarray, rule: KidneyRule = KIDNEY_RULE) -> float:
    """The logistic rule's case for a kidney, 0 to 1, from kidney_signs."""
    weights, intercept = rule
    return 1.0 / (1.0 + math.exp(-(intercept + float(np.dot(weights, signs)))))


def kidney_evidence(smooth: np.ndarray, kidney: Kidney) -> float:
    """How sure the image is that the matched ellipse is a kidney, 0 to 1 (KIDNEY_RULE over kidney_signs)."""
    return evidence_of(kidney_signs(smooth, kidney))


@dataclass(frozen=True)
class KidneyLook:
    """One search for a kidney on a frame: the smoothed grey image it searched, the best ellipse (None: no template
    fits) and how sure the image is that it is a kidney (kidney_evidence, 0 to 1). The view gate's look travels with
    the frame, so the HRI stage measures on it instead of searching again (about 50 ms)."""

    smooth: np.ndarray
    kidney: Kidney | None
    evidence: float


def look_for_kidney(grey: np.ndarray) -> KidneyLook:
    """Search a frame's model-input grey image for a kidney. Nothing here is learned from a run, so it does not
    depend on which livers a run saw: the view gate asks it when its own head would not file a frame as a
    kidney-liver view, and find_regions starts from it."""
    smooth = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), SMOOTH_SIGMA)
    kidney = find_kidney(smooth)
    return KidneyLook(smooth, kidney, 0.0 if kidney is None else kidney_evidence(smooth, kidney))


def find_regions(grey: np.ndarray, floor: float, look: KidneyLook | None = None) -> Regions:
    """The kidney, the cortex region and the liver region on a kidney-liver frame.

    Args:
        grey: the frame's model-input grey levels (float32).
        floor: the grey level under which the smoothed image holds no echoes (outside the sector, noise).
        look: the search already made on this grey image (the view gate's), or None to search here.
    """
    look = look_for_kidney(grey) if look is None else look
    smooth, kidney = look.smooth, look.kidney
    signal = smooth > floor
    if kidney is None or look.evidence < MIN_KIDNEY_EVIDENCE:
        return Regions(None, None, None)
    rho, side, polar = kidney.radius(grey.shape)
    near = side < 0
    usable = cv2.erode(signal.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    cortex = _typical(smooth, (rho >= CORTEX_BAND[0]) & (rho <= CORTEX_BAND[1]) & near & (polar < MAX_POLAR) & usable)
    liver = _typical(smooth, (rho >= LIVER_BAND[0]) & (rho <= LIVER_BAND[1]) & near & usable)
    cortex_disc, liver_disc = _discs_at_one_depth(cortex, liver)
    return Regions(kidney, _grown(cortex_disc, cortex, CORTEX_REACH), _grown(liver_disc, liver, LIVER_REACH))


def _grown(seed: Disc | None, candidates: np.ndarray, reach: float) -> Region | None:
    """The candidates within ``reach`` of the disc's centre, connected to it, as a polygon; the disc is the
    region's core, so the region only grows where the echo stays typical."""
    if seed is None:
        return None
    near = Disc(seed.cx, seed.cy, reach).mask(candidates.shape) & candidates
    near = cv2.erode(near.astype(np.uint8), np.ones((3, 3), np.uint8)) | seed.mask(candidates.shape)
    _count, labels = cv2.connectedComponents(near.astype(np.uint8))
    component = (labels == labels[int(seed.cy), int(seed.cx)]).astype(np.uint8)
    contours, _ = cv2.findContours(component, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = max(contours, key=cv2.contourArea)
    outline = cv2.approxPolyDP(outline, 0.75, True)[:, 0, :]
    return Region(tuple((float(x), float(y)) for x, y in outline))
