"""The three forms a site's images come in, each with a phantom twin of known truth.

- ``screen``: a PNG of the whole console screen (a video-output grab); the manifest names the layout's
  screen profile, which crops the B-mode box.
- ``dicom``: the same screen as a DICOM ultrasound file whose Sequence of Ultrasound Regions marks the box;
  the manifest names a ``dicom-region`` profile of the vendor.
- ``cropped``: only the B-mode box, as a PNG someone already cut out; the manifest names a ``full-frame``
  profile of the vendor.

All three give the same 224x224 tensor for the same render (tests/test_scanner_onboarding.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.scanners.profiles import DICOM_REGION, FULL_FRAME
from phantom.dicom import UltrasoundRegion, write_ultrasound_dicom
from phantom.layouts import ScreenLayout

FORMATS = ("screen", "dicom", "cropped")
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


def write_rgb_png(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), PNG_PARAMS):
        raise OSError(f"could not write {path}")


def profile_name(layout: ScreenLayout, fmt: str) -> str:
    """The manifest's scanner column for an image of this layout in this form."""
    if fmt == "screen":
        return layout.name
    return f"phantom-{layout.vendor.lower()}-{fmt}"


def profile_entry(layout: ScreenLayout, fmt: str) -> dict[str, object]:
    """The profiles-file entry (vendor, screen, crop) behind profile_name(layout, fmt)."""
    if fmt == "screen":
        return layout.profile.to_mapping()
    return {"vendor": layout.vendor, "crop": DICOM_REGION if fmt == "dicom" else FULL_FRAME}


@dataclass(frozen=True)
class ViewFiles:
    image: str  # path relative to the cohort folder
    mask: str | None


def write_view(
    out_dir: Path, stem: str, layout: ScreenLayout, fmt: str, screens: list[np.ndarray], mask: np.ndarray | None
) -> ViewFiles:
    """Write one view in one form; several screens make a cine DICOM loop (other forms keep the first).

    Args:
        out_dir: the cohort folder (images/ and masks/ inside it).
        stem: file name without suffix.
        layout: the screen layout the screens were rendered on.
        fmt: one of FORMATS.
        screens: the rendered screen(s), RGB uint8.
        mask: truth labels in screen coordinates, or None.
    """
    x, y, w, h = layout.profile.crop_box
    if fmt == "cropped":
        screens = [s[y : y + h, x : x + w] for s in screens]
        mask = mask[y : y + h, x : x + w] if mask is not None else None
    if fmt == "dicom":
        image = f"images/{stem}.dcm"
        frames = np.stack(screens) if len(screens) > 1 else screens[0]
        regions = [UltrasoundRegion.of_box(layout.profile.crop_box)]
        write_ultrasound_dicom(out_dir / image, frames, regions, layout.vendor, layout.name)
    else:
        image = f"images/{stem}.png"
        write_rgb_png(out_dir / image, screens[0])
    mask_path = None
    if mask is not None:
        mask_path = f"masks/{stem}.png"
        cv2.imwrite(str(out_dir / mask_path), mask, PNG_PARAMS)
    return ViewFiles(image, mask_path)
