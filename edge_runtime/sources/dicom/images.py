"""Frames from the DICOM images scanners store: every transfer syntax pydicom's decoders read (with the pylibjpeg,
openjpeg and libjpeg plugins), every photometric interpretation a scanner writes, cine loops, and dual or quad
displays, where each tissue region of the Sequence of Ultrasound Regions (0018,6011) is a frame of its own.

No codec is written here: pydicom decodes, and converts YBR colour spaces to RGB; this module turns what it
returns into 8-bit RGB (palette colour through the file's own lookup tables, MONOCHROME1 inverted, deeper pixels
scaled by their stored bit depth) and cuts out the regions.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import FattyLiverError

TISSUE = (1, 1)  # (RegionSpatialFormat 2-D, RegionDataType tissue): a B-mode image


class DicomImageError(FattyLiverError):
    """A DICOM object that is not an image this product can read; the message names the object and why."""


@dataclass(frozen=True)
class RegionFrame:
    """One frame the pipeline can read: a tissue region (or the whole image) of one frame of the object."""

    frame: int  # the frame of a cine loop (0 for a single image)
    region: int | None  # index among the tissue regions; None: the object has none (a screen profile crops)
    pixels: np.ndarray  # (H, W, 3) uint8 RGB
    offset: tuple[int, int] = (0, 0)  # where the region's top-left pixel lies in the stored image (x, y)


def read_dataset(source: str | Path | bytes) -> Any:
    """A pydicom dataset from a file or a received byte stream, or DicomImageError naming the source."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    where = source if isinstance(source, str | Path) else f"{len(source)} received bytes"
    try:
        return pydicom.dcmread(source if isinstance(source, str | Path) else BytesIO(source))
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise DicomImageError(f"{where}: not a readable DICOM object ({exc})") from None


def describe(ds: Any) -> str:
    """The object in a log line: SOP Instance UID and transfer syntax, never a patient field."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    name = getattr(syntax, "name", syntax) or "unknown transfer syntax"
    return f"SOP instance {getattr(ds, 'SOPInstanceUID', '?')} ({name})"


def pixel_data_problem(ds: Any, frames: int) -> str | None:
    """Why the Pixel Data cannot hold Rows x Columns x frames (too short uncompressed, or fewer compressed fragments
    than frames), or None: checked at the door, before any profile or decoder is asked."""
    from pydicom.encaps import parse_fragments
    from pydicom.pixels.utils import get_expected_length

    data = ds.get("PixelData")
    if data is None:
        return "no pixel data"
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        if syntax is not None and syntax.is_compressed:
            fragments, _ = parse_fragments(data)
            return None if fragments >= frames else f"{fragments} compressed fragments for {frames} frames"
        expected = get_expected_length(ds, "bytes")
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        return f"pixel data that cannot be measured ({exc})"
    return None if len(data) >= expected else f"{len(data)} bytes of pixel data, {expected} needed"


def _decoded(ds: Any) -> np.ndarray:
    try:
        return np.asarray(ds.pixel_array)
    except (AttributeError, NotImplementedError, RuntimeError, ValueError, TypeError) as exc:
        raise DicomImageError(f"{describe(ds)}: pixel data cannot be decoded ({exc})") from None


def _to_uint8(pixels: np.ndarray, bits: int) -> np.ndarray:
    """Stored values scaled by their bit depth (not by the image's own range, which would change from frame to
    frame of a cine loop)."""
    if pixels.dtype == np.uint8:
        return pixels
    scaled = pixels.astype(np.float64) * (255.0 / ((1 << bits) - 1))
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def rgb_frames(ds: Any) -> np.ndarray:
    """Every frame of the object as (frames, rows, columns, 3) uint8 RGB."""
    from pydicom.pixels import apply_color_lut

    pixels = _decoded(ds)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1))
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if frames == 1:
        pixels = pixels[None]
    bits = int(getattr(ds, "BitsStored", 8) or 8)
    if int(getattr(ds, "PixelRepresentation", 0) or 0) == 1 and photometric != "PALETTE COLOR":
        pixels = pixels.astype(np.int64) + (1 << (bits - 1))  # signed stored values, shifted to 0 .. 2^bits - 1
    if photometric == "PALETTE COLOR":
        try:
            pixels = apply_color_lut(pixels, ds)
        except (AttributeError, ValueError, KeyError) as exc:
            raise DicomImageError(f"{describe(ds)}: palette colour without usable lookup tables ({exc})") from None
        bits = 8 if pixels.dtype == np.uint8 else 16
    elif photometric == "MONOCHROME1":
        pixels = ((1 << bits) - 1) - pixels.astype(np.int64)
    elif samples == 1 and photometric != "MONOCHROME2":
        raise DicomImageError(f"{describe(ds)}: photometric interpretation {photometric!r} with one sample")
    pixels = _to_uint8(pixels, bits)
    if pixels.ndim == 3:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    return np.ascontiguousarray(pixels[..., :3])


def tissue_boxes(ds: Any, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Every 2-D tissue region of the Sequence of Ultrasound Regions as (x0, y0, x1, y1) inclusive, left to right
    and top to bottom; [] when the object has no region sequence."""
    boxes = []
    for item in getattr(ds, "SequenceOfUltrasoundRegions", None) or []:
        kind = (getattr(item, "RegionSpatialFormat", None), getattr(item, "RegionDataType", None))
        if kind != TISSUE:
            continue
        names = ("RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1", "RegionLocationMaxY1")
        try:
            x0, y0, x1, y1 = (int(getattr(item, name)) for name in names)
        except (AttributeError, TypeError, ValueError):
            raise DicomImageError(f"{describe(ds)}: a tissue region without its location") from None
        if not (0 <= x0 < x1 < width and 0 <= y0 < y1 < height):
            raise DicomImageError(
                f"{describe(ds)}: tissue region {(x0, y0, x1, y1)} lies outside the {width}x{height} image"
            )
        boxes.append((x0, y0, x1, y1))
    return sorted(boxes, key=lambda b: (b[1] // 32, b[0]))


def region_frames(ds: Any) -> list[RegionFrame]:
    """What the pipeline reads from one stored object: each tissue region of each frame, or each whole frame."""
    frames = rgb_frames(ds)
    height, width = frames.shape[1:3]
    boxes = tissue_boxes(ds, width, height)
    if not boxes:
        return [RegionFrame(k, None, frame) for k, frame in enumerate(frames)]
    return [
        RegionFrame(k, i, np.ascontiguousarray(frame[y0 : y1 + 1, x0 : x1 + 1]), (x0, y0))
        for k, frame in enumerate(frames)
        for i, (x0, y0, x1, y1) in enumerate(boxes)
    ]
