"""Read the image formats hospitals export (PNG, JPEG, BMP, TIFF, DICOM) as RGB uint8 screens."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.errors import FattyLiverError

RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
DICOM_SUFFIXES = {".dcm", ".dicom", ""}


class ImageReadError(FattyLiverError):
    """A file is missing, not an image, or an image this product cannot use."""


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Deeper-than-8-bit pixels (16-bit TIFF, DICOM) are stretched to 0..255 over their own range."""
    if pixels.dtype == np.uint8:
        return pixels
    if not np.issubdtype(pixels.dtype, np.integer) and not np.issubdtype(pixels.dtype, np.floating):
        raise ImageReadError(f"unsupported pixel type {pixels.dtype}")
    lo, hi = float(pixels.min()), float(pixels.max())
    if hi <= lo:
        return np.zeros(pixels.shape, np.uint8)
    return np.clip((pixels.astype(np.float64) - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def _read_raster(path: Path) -> np.ndarray:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ImageReadError(f"{path}: not a readable image")
    data = _to_uint8(data)
    if data.ndim == 2:
        return np.repeat(data[:, :, None], 3, axis=2)
    if data.shape[2] == 4:
        return cv2.cvtColor(data, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)


def _dicom_frames(path: Path):
    """The file's dataset and every frame as RGB uint8, decoded exactly as the bedside decodes what a scanner
    stores (edge_runtime.sources.dicom.images), so training and the bedside see the same pixels."""
    from edge_runtime.sources.dicom.images import DicomImageError, read_dataset, rgb_frames

    try:
        ds = read_dataset(path)
        return ds, rgb_frames(ds)
    except DicomImageError as exc:
        raise ImageReadError(f"{path}: {exc}") from None


def _read_dicom(path: Path, frame: int = 0):
    """One frame of the file; a cine loop's frame is chosen by the manifest (default: the first)."""
    ds, frames = _dicom_frames(path)
    if not 0 <= frame < len(frames):
        raise ImageReadError(
            f"{path}: frame {frame} asked for, but the file holds {len(frames)} frame(s) (0..{len(frames) - 1})"
        )
    return ds, frames[frame]


def tissue_region(ds, path: Path, size: tuple[int, int], region: int | None = None) -> tuple[int, int, int, int]:
    """A 2-D tissue region of the Sequence of Ultrasound Regions (0018,6011), as x0, y0, x1, y1 inclusive: the only
    one, or the ``region``-th of a dual or quad display (in the bedside's order: top to bottom, left to right).

    Args:
        ds: the pydicom dataset.
        path: the file, for error messages.
        size: the pixel array's (width, height).
        region: which tissue region (the manifest's region column); None: the file must hold exactly one.
    """
    from edge_runtime.sources.dicom.images import DicomImageError, tissue_boxes

    if not list(getattr(ds, "SequenceOfUltrasoundRegions", None) or []):
        raise ImageReadError(f"{path}: no Sequence of Ultrasound Regions (0018,6011); use a screen profile")
    try:
        boxes = tissue_boxes(ds, *size)
    except DicomImageError as exc:
        raise ImageReadError(f"{path}: {exc}") from None
    listing = "; ".join(f"{k}: x {b[0]}-{b[2]}, y {b[1]}-{b[3]}" for k, b in enumerate(boxes))
    if region is None and len(boxes) != 1:
        raise ImageReadError(
            f"{path}: {len(boxes)} 2-D tissue regions ({listing or 'none'}); a dicom-region row needs exactly one, "
            "or a region column naming which"
        )
    if region is not None and not 0 <= region < len(boxes):
        raise ImageReadError(f"{path}: region {region} asked for, but the file holds {len(boxes)} ({listing})")
    return boxes[region or 0]


def read_dicom_region(path: str | Path, frame: int = 0, region: int | None = None) -> np.ndarray:
    """A 2-D tissue image of a DICOM ultrasound file, cut out where the file's own region sequence says.

    Args:
        path: the DICOM file.
        frame: which frame of a cine loop (the manifest's optional frame column).
        region: which tissue region of a dual or quad display (the manifest's optional region column).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    ds, rgb = _read_dicom(path, frame)
    x0, y0, x1, y1 = tissue_region(ds, path, (rgb.shape[1], rgb.shape[0]), region)
    return np.ascontiguousarray(rgb[y0 : y1 + 1, x0 : x1 + 1])


def image_digest(pixels: np.ndarray) -> str:
    """Content id of a decoded image (its pixels and shape, not its file): the same picture exported twice,
    or copied under another name, has one digest."""
    digest = hashlib.sha256(str(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()[:24]


def read_for_profile(path: str | Path, profile, frame: int = 0, region: int | None = None) -> np.ndarray:
    """The image a profile crops from: the whole file, or (dicom-region profiles) the file's tissue region.

    Args:
        path: the image file.
        profile: its scanner profile (None: read the whole file).
        frame: which frame of a cine DICOM loop.
        region: which tissue region of a multi-region DICOM file (dicom-region profiles only).
    """
    if getattr(profile, "dicom_region", False):
        return read_dicom_region(path, frame, region)
    if region is not None:
        raise ImageReadError(f"{path}: a region is given, but scanner profile {profile.name!r} is not dicom-region")
    return read_image(path, frame)


def read_image(path: str | Path, frame: int = 0) -> np.ndarray:
    """H x W x 3 RGB uint8, whatever the source format; frame picks one frame of a cine DICOM loop."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix in RASTER_SUFFIXES:
        if frame != 0:
            raise ImageReadError(f"{path}: frame {frame} asked for, but a {suffix} file holds one image")
        return _read_raster(path)
    if suffix in DICOM_SUFFIXES:
        return _read_dicom(path, frame)[1]
    raise ImageReadError(f"{path}: unsupported image type {suffix!r} (PNG, JPEG, BMP, TIFF or DICOM)")
