"""The scanner screen around the B-mode image: what a frame grabber sees on the video output.

Text, depth scale, logo and TGC curve sit outside the crop box of the scanner profile, exactly as on a real
console, so preprocessing has real work to do (and a wrong crop box shows up as UI in the model input).
No patient identity is drawn: the phantom has none, and real frames must not carry it either.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_runtime.profiles import ScannerProfile
from phantom.bmode import depth_to_row
from phantom.subject import Subject

FONT = cv2.FONT_HERSHEY_SIMPLEX
VIEW_CAPTION = {"liver": "RT LOBE INTERCOSTAL", "kidney_liver": "RT KIDNEY / LIVER"}


def _text(img: np.ndarray, text: str, xy: tuple[int, int], scale: float, color: tuple[int, int, int]) -> None:
    cv2.putText(img, text, xy, FONT, scale, color, 1 if scale < 0.7 else 2, cv2.LINE_AA)


def _depth_scale(
    img: np.ndarray, profile: ScannerProfile, subject: Subject, x: int, color: tuple[int, int, int]
) -> None:
    _, y0, w, h = profile.crop_box
    for cm in range(int(subject.imaging.depth_cm) + 1):
        y = y0 + depth_to_row(subject.imaging, w, h, cm)
        length = 14 if cm % 5 == 0 else 7
        cv2.line(img, (x, y), (x + length, y), color, 2)
        if cm % 5 == 0:
            _text(img, str(cm), (x + 18, y + 6), 0.5, color)


def _tgc_curve(img: np.ndarray, profile: ScannerProfile, subject: Subject, x: int, color: tuple[int, int, int]) -> None:
    _, y0, _, h = profile.crop_box
    points = []
    for k in range(9):
        y = y0 + int(k / 8 * (h - 1))
        points.append((x + int(20 + 25 * subject.tgc_compensation * k / 8), y))
    cv2.polylines(img, [np.array(points, np.int32)], False, color, 2, cv2.LINE_AA)


def _philips_layout(img: np.ndarray, profile: ScannerProfile, subject: Subject, view: str, stamp: str) -> None:
    img[:] = (18, 22, 30)
    img[:60] = (36, 44, 60)
    cv2.rectangle(img, (24, 10), (64, 50), (60, 120, 200), -1)  # logo: shield block + wordmark
    _text(img, "PH", (30, 38), 0.7, (255, 255, 255))
    _text(img, "PHANTOM EPX  C5-1  Abd Gen", (84, 40), 0.9, (220, 220, 220))
    _text(img, f"MI 1.1  TIS 0.7  {stamp}", (1300, 40), 0.7, (200, 200, 200))
    info = [
        "2D",
        f"Frq  {subject.freq_mhz:.1f} MHz",
        f"Gn   {50 + subject.gain_db:.0f}",
        f"DR   {subject.dynamic_range_db:.0f}",
        f"Dpth {subject.imaging.depth_cm:.0f} cm",
        "HPen  Gen",
    ]
    for i, line in enumerate(info):
        _text(img, line, (60, 200 + 42 * i), 0.8, (200, 210, 230))
    _text(img, VIEW_CAPTION[view], (60, 980), 0.9, (240, 220, 120))
    x, _, w, _ = profile.crop_box
    _depth_scale(img, profile, subject, x + w + 10, (220, 220, 220))
    _tgc_curve(img, profile, subject, 1620, (120, 200, 255))
    grey_bar = np.linspace(255, 0, 256).astype(np.uint8)[:, None].repeat(20, 1)
    img[700:956, 1540:1560] = grey_bar[:, :, None]


def _ge_layout(img: np.ndarray, profile: ScannerProfile, subject: Subject, view: str, stamp: str) -> None:
    img[:] = (0, 0, 0)
    cv2.circle(img, (1600, 60), 36, (230, 230, 230), 2)  # logo: ring + monogram
    _text(img, "G", (1585, 72), 1.1, (230, 230, 230))
    _text(img, "PHANTOM LQ  C1-6-D  ABDOMEN", (20, 36), 0.8, (255, 255, 0))
    _text(img, stamp, (20, 70), 0.6, (200, 200, 200))
    info = [
        f"Frq {subject.freq_mhz:.1f}",
        f"Gn {50 + subject.gain_db:.0f}",
        f"D {subject.imaging.depth_cm:.1f}",
        f"DR {subject.dynamic_range_db:.0f}",
        "AO 100%",
        "CHI off",
    ]
    for i, line in enumerate(info):
        _text(img, line, (1330, 200 + 40 * i), 0.75, (255, 255, 255))
    _text(img, VIEW_CAPTION[view], (1290, 980), 0.8, (0, 255, 255))
    x, _, _, _ = profile.crop_box
    _depth_scale(img, profile, subject, x - 60, (255, 255, 0))
    _tgc_curve(img, profile, subject, 1540, (0, 255, 0))


def compose_screen(profile: ScannerProfile, bmode: np.ndarray, subject: Subject, view: str, stamp: str) -> np.ndarray:
    """Full RGB screen with the grey B-mode image pasted into the profile's crop box.

    Args:
        profile: the screen layout and its B-mode box.
        bmode: the grey B-mode image, the box's size.
        subject: the subject (what the info panel shows).
        view: the view (its caption).
        stamp: date and time text.
    """
    img = np.zeros((profile.screen_height, profile.screen_width, 3), dtype=np.uint8)
    layout = _philips_layout if subject.vendor == "PHILIPS" else _ge_layout
    layout(img, profile, subject, view, stamp)
    x, y, w, h = profile.crop_box
    if bmode.shape[:2] != (h, w):
        raise ValueError(f"B-mode image is {bmode.shape[1]}x{bmode.shape[0]}, crop box needs {w}x{h}")
    img[y : y + h, x : x + w] = bmode[:, :, None]
    return img


def paste_mask(profile: ScannerProfile, labels: np.ndarray) -> np.ndarray:
    """Truth labels in screen coordinates (zero outside the crop box)."""
    mask = np.zeros((profile.screen_height, profile.screen_width), dtype=np.uint8)
    x, y, w, h = profile.crop_box
    mask[y : y + h, x : x + w] = labels
    return mask
