"""The scanner screen around the B-mode image: what a frame grabber sees on the video output.

Text, depth scale, logo and TGC curve sit outside the crop box of the scanner profile, exactly as on a real
console, so preprocessing has real work to do (and a wrong crop box shows up as UI in the model input).
No patient identity is drawn: the phantom has none, and real frames must not carry it either.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_runtime.scanners.profiles import ScannerProfile
from phantom.clutter import VIEW_CAPTION, calipers, depth_scale, draw_styled, grey_bar, text, tgc_curve, thumbnail
from phantom.layouts import ScreenLayout
from phantom.subject import Subject


def _philips_layout(img: np.ndarray, profile: ScannerProfile, subject: Subject, view: str, stamp: str) -> None:
    img[:] = (18, 22, 30)
    img[:60] = (36, 44, 60)
    cv2.rectangle(img, (24, 10), (64, 50), (60, 120, 200), -1)  # logo: shield block + wordmark
    text(img, "PH", (30, 38), 0.7, (255, 255, 255))
    text(img, "PHANTOM EPX  C5-1  Abd Gen", (84, 40), 0.9, (220, 220, 220))
    text(img, f"MI 1.1  TIS 0.7  {stamp}", (1300, 40), 0.7, (200, 200, 200))
    info = [
        "2D",
        f"Frq  {subject.freq_mhz:.1f} MHz",
        f"Gn   {50 + subject.gain_db:.0f}",
        f"DR   {subject.dynamic_range_db:.0f}",
        f"Dpth {subject.imaging.depth_cm:.0f} cm",
        "HPen  Gen",
    ]
    for i, line in enumerate(info):
        text(img, line, (60, 200 + 42 * i), 0.8, (200, 210, 230))
    text(img, VIEW_CAPTION.get(view, ""), (60, 980), 0.9, (240, 220, 120))
    x, _, w, _ = profile.crop_box
    depth_scale(img, profile, subject, x + w + 10, (220, 220, 220))
    tgc_curve(img, profile, subject, 1620, (120, 200, 255))
    grey_bar(img, 1540, 700, 256)


def _ge_layout(img: np.ndarray, profile: ScannerProfile, subject: Subject, view: str, stamp: str) -> None:
    img[:] = (0, 0, 0)
    cv2.circle(img, (1600, 60), 36, (230, 230, 230), 2)  # logo: ring + monogram
    text(img, "G", (1585, 72), 1.1, (230, 230, 230))
    text(img, "PHANTOM LQ  C1-6-D  ABDOMEN", (20, 36), 0.8, (255, 255, 0))
    text(img, stamp, (20, 70), 0.6, (200, 200, 200))
    info = [
        f"Frq {subject.freq_mhz:.1f}",
        f"Gn {50 + subject.gain_db:.0f}",
        f"D {subject.imaging.depth_cm:.1f}",
        f"DR {subject.dynamic_range_db:.0f}",
        "AO 100%",
        "CHI off",
    ]
    for i, line in enumerate(info):
        text(img, line, (1330, 200 + 40 * i), 0.75, (255, 255, 255))
    text(img, VIEW_CAPTION.get(view, ""), (1290, 980), 0.8, (0, 255, 255))
    x, _, _, _ = profile.crop_box
    depth_scale(img, profile, subject, x - 60, (255, 255, 0))
    tgc_curve(img, profile, subject, 1540, (0, 255, 0))


def compose_screen(
    layout: ScreenLayout,
    bmode: np.ndarray,
    subject: Subject,
    view: str,
    stamp: str,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """Full RGB screen with the grey B-mode image pasted into the layout's box, plus its clutter.

    Args:
        layout: the screen layout and its B-mode box.
        bmode: the grey B-mode image, the box's size.
        subject: the subject (what the info panel shows).
        view: the view (its caption).
        stamp: date and time text.
        rng: the clutter's random stream (calipers on some frames), apart from the image's; None: no
            calipers.
    """
    profile = layout.profile
    img = np.zeros((profile.screen_height, profile.screen_width, 3), dtype=np.uint8)
    if layout.style is None:
        (_philips_layout if layout.vendor == "PHILIPS" else _ge_layout)(img, profile, subject, view, stamp)
    else:
        draw_styled(img, profile, layout.style, subject, view, stamp)
    x, y, w, h = profile.crop_box
    if bmode.shape[:2] != (h, w):
        raise ValueError(f"B-mode image is {bmode.shape[1]}x{bmode.shape[0]}, crop box needs {w}x{h}")
    img[y : y + h, x : x + w] = bmode[:, :, None]
    if layout.style is not None:
        if layout.style.thumbnail:
            thumbnail(img, bmode, *layout.style.thumbnail)
        if rng is not None and rng.random() < layout.style.caliper_share:
            calipers(img, profile, rng)
    return img


def paste_mask(profile: ScannerProfile, labels: np.ndarray) -> np.ndarray:
    """Truth labels in screen coordinates (zero outside the crop box)."""
    mask = np.zeros((profile.screen_height, profile.screen_width), dtype=np.uint8)
    x, y, w, h = profile.crop_box
    mask[y : y + h, x : x + w] = labels
    return mask
