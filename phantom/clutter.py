"""What consoles draw around the B-mode box: text, depth ruler, TGC curve, grey and colour bars, a thumbnail,
a body marker, and calipers with measurement text burned into frozen frames.

Scanner onboarding (``edge-runtime profile detect``) must find the box through all of it, and a model must
learn to ignore what leaks inside the box (calipers), so the phantom draws it the way consoles do.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_runtime.scanners.profiles import ScannerProfile
from phantom.bmode import depth_to_row
from phantom.layouts import ClutterStyle
from phantom.subject import Subject

FONT = cv2.FONT_HERSHEY_SIMPLEX
VIEW_CAPTION = {
    "liver": "RT LOBE INTERCOSTAL",
    "kidney_liver": "RT KIDNEY / LIVER",
    "spleen": "LT INTERCOSTAL",
    "gallbladder": "GB LONG",
    "bowel_gas": "RLQ",
    "doppler": "RT LOBE  CFM",
    "partial_contact": "RT LOBE INTERCOSTAL",
}  # captions sit outside the box: the model never sees them
Colour = tuple[int, int, int]


def text(img: np.ndarray, words: str, xy: tuple[int, int], scale: float, color: Colour) -> None:
    """Console lettering, anti-aliased, bold from scale 0.7 up.

    Args:
        img: the screen, drawn in place.
        words: the text.
        xy: baseline start, pixels.
        scale: OpenCV font scale.
        color: RGB.
    """
    cv2.putText(img, words, xy, FONT, scale, color, 1 if scale < 0.7 else 2, cv2.LINE_AA)


def depth_scale(img: np.ndarray, profile: ScannerProfile, subject: Subject, x: int, color: Colour) -> None:
    """Ticks every centimetre along the centre line's depth, labels every 5 cm.

    Args:
        img: the screen, drawn in place.
        profile: the layout's profile (where the box is).
        subject: the subject (its preset depth).
        x: the ruler's column.
        color: RGB.
    """
    _, y0, w, h = profile.crop_box
    for cm in range(int(subject.imaging.depth_cm) + 1):
        y = y0 + depth_to_row(subject.imaging, w, h, cm)
        length = 14 if cm % 5 == 0 else 7
        cv2.line(img, (x, y), (x + length, y), color, 2)
        if cm % 5 == 0:
            text(img, str(cm), (x + 18, y + 6), 0.5, color)


def tgc_curve(img: np.ndarray, profile: ScannerProfile, subject: Subject, x: int, color: Colour) -> None:
    """The time-gain-compensation curve beside the box, bent by how much the operator compensates.

    Args:
        img: the screen, drawn in place.
        profile: the layout's profile (where the box is).
        subject: the subject (its TGC habit).
        x: the curve's left column.
        color: RGB.
    """
    _, y0, _, h = profile.crop_box
    points = []
    for k in range(9):
        y = y0 + int(k / 8 * (h - 1))
        points.append((x + int(20 + 25 * subject.tgc_compensation * k / 8), y))
    cv2.polylines(img, [np.array(points, np.int32)], False, color, 2, cv2.LINE_AA)


def grey_bar(img: np.ndarray, x: int, y: int, height: int) -> None:
    """The grey-map reference bar: white at the top to black at the bottom.

    Args:
        img: the screen, drawn in place.
        x: left column.
        y: top row.
        height: pixels.
    """
    ramp = np.linspace(255, 0, height).astype(np.uint8)[:, None].repeat(20, 1)
    img[y : y + height, x : x + 20] = ramp[:, :, None]


def _colour_bar(img: np.ndarray, x: int, y: int, height: int) -> None:
    """A colour-flow velocity scale: red above the baseline, blue below."""
    t = np.linspace(1.0, -1.0, height)[:, None]
    red = np.clip(255 * t, 0, 255)
    blue = np.clip(-255 * t, 0, 255)
    green = np.clip(200 * (np.abs(t) - 0.7) / 0.3, 0, 200)
    bar = np.stack([red, green, blue], axis=2).repeat(20, axis=1).astype(np.uint8)
    img[y : y + height, x : x + 20] = bar


def thumbnail(img: np.ndarray, bmode: np.ndarray, x: int, y: int, width: int) -> None:
    """A small stored image (the clip-store preview), framed.

    Args:
        img: the screen, drawn in place.
        bmode: the grey B-mode image to shrink.
        x: left column.
        y: top row.
        width: pixels (the height keeps the image's aspect).
    """
    height = round(width * bmode.shape[0] / bmode.shape[1])
    small = cv2.resize(bmode, (width, height), interpolation=cv2.INTER_AREA)
    img[y : y + height, x : x + width] = small[:, :, None]
    cv2.rectangle(img, (x - 2, y - 2), (x + width + 1, y + height + 1), (160, 160, 160), 1)


def _body_marker(img: np.ndarray, x: int, y: int, color: Colour) -> None:
    """A torso pictogram with the probe position, as consoles draw it."""
    cv2.ellipse(img, (x + 30, y + 40), (22, 34), 0, 0, 360, color, 1, cv2.LINE_AA)
    cv2.circle(img, (x + 30, y), 9, color, 1, cv2.LINE_AA)
    cv2.line(img, (x + 38, y + 30), (x + 52, y + 44), (255, 255, 0), 3)


def calipers(img: np.ndarray, profile: ScannerProfile, rng: np.random.Generator) -> None:
    """A frozen-frame measurement burned into the sector: two '+' calipers, a dotted line and its text."""
    x, y, w, h = profile.crop_box
    a = (x + int(rng.uniform(0.3, 0.45) * w), y + int(rng.uniform(0.3, 0.5) * h))
    b = (x + int(rng.uniform(0.55, 0.7) * w), y + int(rng.uniform(0.5, 0.7) * h))
    for px, py in (a, b):
        cv2.line(img, (px - 8, py), (px + 8, py), (255, 255, 0), 2)
        cv2.line(img, (px, py - 8), (px, py + 8), (255, 255, 0), 2)
    steps = 12
    for k in range(1, steps, 2):
        p = (a[0] + (b[0] - a[0]) * k // steps, a[1] + (b[1] - a[1]) * k // steps)
        cv2.circle(img, p, 1, (255, 255, 0), -1)
    text(img, f"D1 {rng.uniform(2, 8):.2f} cm", (x + int(0.55 * w), y + int(0.85 * h)), 0.6, (255, 255, 255))


HEADER_BAND = 46  # pixels of burned-in patient text above the box
HEADER_GAP = 3  # ... ending this close to the image's top edge


def patient_header(
    img: np.ndarray, box: tuple[int, int, int, int], subject: Subject, stamp: str, color: Colour
) -> None:
    """Burned-in patient text in a grey band touching the image's top edge, as some consoles print it: dense
    letters whose strokes a texture finder mistakes for speckle (the profile must leave the band out).

    Args:
        img: the screen, drawn in place.
        box: the image's box (x, y, width, height): the band ends just above it.
        subject: whose (synthetic) name and id are printed.
        stamp: date and time text.
        color: the letters' RGB.
    """
    x, y, w, _ = box
    top = y - HEADER_GAP - HEADER_BAND
    img[top : y - HEADER_GAP, x : x + w] = (28, 28, 28)
    lines = (
        f"PHANTOM^{subject.subject_id}  ID {subject.subject_id}-{subject.index:05d}  DOB 1970/01/01  F  {stamp}",
        f"ACC A{subject.index:07d}  PHANTOM HOSPITAL RADIOLOGY  ABDOMEN LIVER  C1-6  18 Hz  MI 1.1  TIb 0.4",
    )
    for i, line in enumerate(lines):
        text(img, line, (x + 6, top + 19 + 21 * i), 0.55, color)


def draw_styled(
    img: np.ndarray, profile: ScannerProfile, style: ClutterStyle, subject: Subject, view: str, stamp: str
) -> None:
    """Everything a declared layout draws outside its box (the box itself is pasted afterwards).

    Args:
        img: the screen, drawn in place.
        profile: the layout's profile.
        style: the layout's clutter.
        subject: the subject (the info panel, ruler and TGC curve).
        view: the view (its caption).
        stamp: date and time text.
    """
    img[:] = style.background
    img[:56] = style.header
    text(img, style.brand, (20, 38), 0.8, style.text)
    text(img, f"MI 1.0  TIS 0.6  {stamp}", (img.shape[1] - 420, 38), 0.6, style.text)
    info = [f"Frq {subject.freq_mhz:.1f}", f"Gn {50 + subject.gain_db:.0f}", f"DR {subject.dynamic_range_db:.0f}"]
    info += [f"D {subject.imaging.depth_cm:.0f} cm", "FR 24 Hz"]
    for i, line in enumerate(info):
        text(img, line, (style.info_xy[0], style.info_xy[1] + 36 * i), 0.6, style.text)
    x, _, w, _ = profile.crop_box
    ruler_x = x + w + 10 if style.ruler_side == "right" else x - 60
    depth_scale(img, profile, subject, ruler_x, style.text)
    tgc_curve(img, profile, subject, style.tgc_x, style.accent)
    if style.grey_bar:
        grey_bar(img, *style.grey_bar)
    if style.colour_bar:
        _colour_bar(img, *style.colour_bar)
    if style.text_header:
        patient_header(img, profile.crop_box, subject, stamp, style.text)
    _body_marker(img, *style.body_marker_xy, style.text)
    text(img, VIEW_CAPTION.get(view, ""), (style.body_marker_xy[0], style.body_marker_xy[1] + 110), 0.6, style.accent)
