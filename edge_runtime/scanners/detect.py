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

from edge_runtime.scanners.profiles import ProfileError

Box = tuple[int, int, int, int]  # x, y, width, height in screen pixels

GREY_CHROMA = 10  # max - min over RGB at or below this is a grey pixel (B-mode is grey)
TEXTURE_WINDOW = 9  # local standard deviation window, pixels
TEXTURE_STD = 3.0  # grey levels: >= 95 % of sector pixels vary more than this within a window
FLAT_WINDOW = 3  # a pixel whose 3x3 neighbourhood is one grey level is flat: a gap between panels, never speckle
GAP_GREY = 64  # a gap between panels is background, dark
TEXT_STD = 40.0  # a region whose median local contrast is above this is lettering (text: ~55; speckle: 10-30)
STROKE = 15  # opening kernel: removes strokes and ticks thinner than this (text, ruler, TGC curve)
MIN_AREA_SHARE = 0.03  # a box smaller than this share of the screen is not the image
SECOND_IMAGE_SHARE = 0.5  # a second textured region at least half the largest is another image (dual display)
AGREEMENT_IOU = 0.97  # grabs of one console must give boxes at least this similar


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def _local_std(grey: np.ndarray, window: int) -> np.ndarray:
    mean = cv2.boxFilter(grey, -1, (window, window))
    return np.sqrt(np.maximum(cv2.boxFilter(grey * grey, -1, (window, window)) - mean * mean, 0))


@dataclass(frozen=True)
class Texture:
    """Per pixel: speckle-like texture (uint8 0/1), flatness (one grey level over 3x3: background, a gap between
    panels, never speckle) and the local contrast (standard deviation over the texture window)."""

    textured: np.ndarray
    flat: np.ndarray
    contrast: np.ndarray


def texture_mask(rgb: np.ndarray) -> Texture:
    """Grey pixels with a speckle-like neighbourhood, and what tells lettering from speckle."""
    pixels = rgb.astype(np.float32)
    grey = pixels.mean(axis=2)
    chroma = pixels.max(axis=2) - pixels.min(axis=2)
    contrast = _local_std(grey, TEXTURE_WINDOW)
    textured = ((contrast > TEXTURE_STD) & (chroma <= GREY_CHROMA)).astype(np.uint8)
    flat = (_local_std(grey, FLAT_WINDOW) < 0.5) & (grey < GAP_GREY)  # dark: a clipped white sector is no gap
    return Texture(textured, flat, contrast)


def _opened(mask: np.ndarray) -> np.ndarray:
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (STROKE, STROKE)))


def _grown(seed: np.ndarray, labels: np.ndarray, texture: Texture) -> np.ndarray:
    """An image's region: its largest part, joined by the parts a flat line cut off that are speckle (a dark band
    of the near field), never those that are lettering (a band of patient text, far busier with strokes)."""
    grow = cv2.getStructuringElement(cv2.MORPH_RECT, (STROKE + 2, STROKE + 2))
    region = seed
    for _ in range(8):
        near = np.unique(labels[(cv2.dilate(region, grow) > 0) & (region == 0) & (labels > 0)])
        speckle = [k for k in near if np.median(texture.contrast[labels == k]) <= TEXT_STD]
        if not speckle:
            break
        region = region | np.isin(labels, speckle).astype(np.uint8)
    return region


def _image_regions(rgb: np.ndarray) -> list[np.ndarray]:
    """The textured regions large enough to be an image, left to right: cut apart at flat lines (so a band of
    burned-in text a few pixels above the image is another region), rejoined where the cut-off part is speckle,
    then grown back to the texture's own edge, which the box's edge correction expects."""
    texture = texture_mask(rgb)
    whole = _opened(texture.textured)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(_opened(texture.textured & ~texture.flat), 8)
    if count <= 1:
        return []
    areas = stats[1:, cv2.CC_STAT_AREA]
    floor = max(MIN_AREA_SHARE * rgb.shape[0] * rgb.shape[1], SECOND_IMAGE_SHARE * areas.max())
    chosen = sorted((1 + k for k in np.flatnonzero(areas >= floor)), key=lambda k: stats[k, cv2.CC_STAT_LEFT])
    grow = cv2.getStructuringElement(cv2.MORPH_RECT, (STROKE + 2, STROKE + 2))  # back over what the cut trimmed
    return [cv2.dilate(_grown((labels == k).astype(np.uint8), labels, texture), grow) & whole for k in chosen]


def _box_of(region: np.ndarray) -> Box:
    ys, xs = np.nonzero(region)
    # The texture window reaches half its width past the image's edge; the opening trims about 0.3 of its
    # radius off the sector's right-angled corners. Both are known, so the edges are corrected for them.
    inset = TEXTURE_WINDOW // 2 - round(0.3 * (STROKE // 2))
    x0, y0 = int(xs.min()) + inset, int(ys.min()) + inset
    x1, y1 = int(xs.max()) - inset, int(ys.max()) - inset
    return x0, y0, x1 - x0 + 1, y1 - y0 + 1


def detect_boxes(rgb: np.ndarray) -> list[Box]:
    """Every B-mode box of one screen grab (H x W x 3 RGB uint8), left to right: one, or the images of a dual or quad
    display; a ProfileError when there is none."""
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.dtype != np.uint8:
        raise ProfileError(f"expected an RGB uint8 screen grab, got shape {rgb.shape} and {rgb.dtype}")
    rgb = np.ascontiguousarray(rgb[:, :, :3])
    height, width = rgb.shape[:2]
    regions = _image_regions(rgb)
    if not regions:
        raise ProfileError("found no ultrasound image box (no region of grey speckle large enough)")
    boxes = [_box_of(r) for r in regions]
    if len(boxes) == 1 and boxes[0][2] * boxes[0][3] >= 0.95 * width * height:
        raise ProfileError("the speckle fills the whole image: it is already cropped (use the full-frame profile)")
    return boxes


def detect_box(rgb: np.ndarray) -> Box:
    """The one B-mode box of a screen grab; a ProfileError when there is none, or when it shows several images."""
    boxes = detect_boxes(rgb)
    if len(boxes) > 1:
        raise ProfileError(f"{len(boxes)} images side by side (a dual or quad display): {boxes}")
    return boxes[0]


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


@dataclass(frozen=True)
class Grab:
    """One screen grab: its pixels, and for a DICOM file the image boxes its own region sequence states."""

    path: str
    rgb: np.ndarray
    stated: list[Box] | None = None  # a DICOM file's tissue regions (None: a raster grab, or no region sequence)
    model: str = ""  # a DICOM file's Manufacturer's Model Name (what the listener matches profile names against)


def _read_dicom_grab(path: str) -> Grab:
    from edge_runtime.sources.dicom.images import DicomImageError, read_dataset, rgb_frames, tissue_boxes

    try:
        ds = read_dataset(path)
        rgb = rgb_frames(ds)[0]
        regions = tissue_boxes(ds, rgb.shape[1], rgb.shape[0])
    except DicomImageError as exc:
        raise ProfileError(str(exc)) from None
    stated = [(x0, y0, x1 - x0 + 1, y1 - y0 + 1) for x0, y0, x1, y1 in regions] or None
    return Grab(path, rgb, stated, str(getattr(ds, "ManufacturerModelName", "") or ""))


def read_grab(path: str) -> Grab:
    """A screen grab (PNG, JPEG, BMP, TIFF) or a stored DICOM image as RGB uint8; a ProfileError naming the file."""
    with open(path, "rb") as fh:
        head = fh.read(132)
    if head[128:132] == b"DICM" or str(path).lower().endswith((".dcm", ".dicom")):
        return _read_dicom_grab(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ProfileError(f"{path}: not a readable image (a PNG, JPEG, BMP or TIFF screen grab, or a DICOM file)")
    return Grab(path, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


@dataclass(frozen=True)
class Onboarding:
    """The result of ``profile detect``: one profile per image box (two for a dual display) from grabs of a console."""

    name: str
    vendor: str
    screen: tuple[int, int]
    boxes: list[Box]
    per_grab: list[tuple[str, list[Box]]]
    first: Grab = field(repr=False, compare=False)  # what the overlay is drawn on (decoded once)

    @property
    def names(self) -> list[str]:
        """One profile name per box: the name itself, or NAME-1, NAME-2, ... left to right on a dual display."""
        return [self.name] if len(self.boxes) == 1 else [f"{self.name}-{k + 1}" for k in range(len(self.boxes))]

    def profile_mappings(self) -> dict[str, dict[str, object]]:
        return {
            name: {"vendor": self.vendor, "screen": list(self.screen), "crop": list(box)}
            for name, box in zip(self.names, self.boxes, strict=True)
        }


def check_stated(grab: Grab, boxes: list[Box]) -> list[float]:
    """The detected boxes against a DICOM file's own regions (IoU each); a ProfileError when they disagree."""
    if grab.stated is None:
        return []
    if len(grab.stated) != len(boxes):
        raise ProfileError(f"{grab.path}: found {len(boxes)} image box(es) {boxes}; the file states {grab.stated}")
    scores = [iou(found, stated) for found, stated in zip(boxes, grab.stated, strict=True)]
    if min(scores) < AGREEMENT_IOU:
        raise ProfileError(
            f"{grab.path}: found {boxes}, the file's region sequence says {grab.stated} (IoU "
            f"{', '.join(f'{s:.3f}' for s in scores)}); the detection is wrong for this console"
        )
    return scores


def onboard(paths: list[str], name: str, vendor: str) -> Onboarding:
    """Detect the boxes on every grab, check they are one console (same size, as many boxes, agreeing boxes, and
    the DICOM files' own regions where they state them), combine."""
    grabs = [read_grab(p) for p in paths]
    sizes = {(g.rgb.shape[1], g.rgb.shape[0]) for g in grabs}
    if len(sizes) > 1:
        listing = ", ".join(f"{g.path} {g.rgb.shape[1]}x{g.rgb.shape[0]}" for g in grabs)
        raise ProfileError(f"the grabs differ in size, so they are not one screen layout: {listing}")
    per_grab = []
    for grab in grabs:
        try:
            boxes = detect_boxes(grab.rgb)
        except ProfileError as exc:
            raise ProfileError(f"{grab.path}: {exc}") from None
        check_stated(grab, boxes)
        per_grab.append((grab.path, boxes))
    counts = {len(b) for _, b in per_grab}
    if len(counts) > 1:
        listing = ", ".join(f"{p}: {len(b)}" for p, b in per_grab)
        raise ProfileError(f"the grabs show different numbers of images, so they are not one layout: {listing}")
    combined = [agree([b[k] for _, b in per_grab], [p for p, _ in per_grab]) for k in range(counts.pop())]
    return Onboarding(name, vendor, sizes.pop(), combined, per_grab, grabs[0])
