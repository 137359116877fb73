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


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path))
        pixels = ds.pixel_array  # pydicom converts YBR colour spaces to RGB
    except (InvalidDicomError, AttributeError, ValueError, RuntimeError, OSError) as exc:
        raise ImageReadError(f"{path}: not a readable DICOM image ({exc})") from exc
    samples = int(getattr(ds, "SamplesPerPixel", 1))
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]  # a cine loop: the first frame is the stored still
    if samples == 1 and getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        pixels = pixels.max() - pixels
    pixels = _to_uint8(np.asarray(pixels))
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3])


def image_digest(pixels: np.ndarray) -> str:
    """Content id of a decoded image (its pixels and shape, not its file): the same picture exported twice,
    or copied under another name, has one digest."""
    digest = hashlib.sha256(str(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()[:24]


def read_image(path: str | Path) -> np.ndarray:
    """H x W x 3 RGB uint8, whatever the source format."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix in RASTER_SUFFIXES:
        return _read_raster(path)
    if suffix in DICOM_SUFFIXES:
        return _read_dicom(path)
    raise ImageReadError(f"{path}: unsupported image type {suffix!r} (PNG, JPEG, BMP, TIFF or DICOM)")
