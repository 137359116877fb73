"""DICOM ultrasound files the way consoles export them: the whole screen as RGB pixels, and a Sequence of
Ultrasound Regions (0018,6011) saying where the 2-D tissue image (and any other region) sits.

Written with pydicom, so the phantom's DICOM twin is read back by the same library a hospital's files are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

TISSUE = 1  # RegionSpatialFormat 2D and RegionDataType tissue: the B-mode image


@dataclass(frozen=True)
class UltrasoundRegion:
    """One item of the region sequence: an inclusive pixel box and what it holds."""

    x0: int
    y0: int
    x1: int
    y1: int
    spatial_format: int = TISSUE  # 1 = 2D, 0 = none (e.g. a colour bar)
    data_type: int = TISSUE  # 1 = tissue, 0 = none
    cm_per_pixel: float | None = None

    @classmethod
    def of_box(cls, box: tuple[int, int, int, int], cm_per_pixel: float | None = None) -> UltrasoundRegion:
        """The tissue region of an (x, y, width, height) crop box."""
        x, y, w, h = box
        return cls(x, y, x + w - 1, y + h - 1, cm_per_pixel=cm_per_pixel)


def _region_item(region: UltrasoundRegion):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.RegionLocationMinX0, item.RegionLocationMinY0 = region.x0, region.y0
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = region.x1, region.y1
    item.RegionSpatialFormat, item.RegionDataType, item.RegionFlags = region.spatial_format, region.data_type, 0
    if region.cm_per_pixel is not None:
        item.PhysicalUnitsXDirection = item.PhysicalUnitsYDirection = 3  # centimetres
        item.PhysicalDeltaX = item.PhysicalDeltaY = float(region.cm_per_pixel)
    return item


def write_ultrasound_dicom(
    path: str | Path,
    frames: np.ndarray,
    regions: list[UltrasoundRegion],
    manufacturer: str = "PHANTOM",
    model: str = "",
) -> Path:
    """Write one RGB screen (H x W x 3) or a cine loop (N x H x W x 3) as an uncompressed ultrasound file.

    Args:
        path: where to write.
        frames: uint8 RGB pixels.
        regions: the Sequence of Ultrasound Regions (empty: none written, as some old exports do).
        manufacturer: (0008,0070).
        model: (0008,1090), the scanner model or screen layout.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        UltrasoundImageStorage,
        UltrasoundMultiFrameImageStorage,
        generate_uid,
    )

    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    cine = frames.ndim == 4
    sop_class = UltrasoundMultiFrameImageStorage if cine else UltrasoundImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta, ds.SOPClassUID, ds.SOPInstanceUID = meta, sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "US", manufacturer, model
    ds.Rows, ds.Columns = frames.shape[-3:-1]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if cine:
        ds.NumberOfFrames = frames.shape[0]
    ds.PixelData = frames.tobytes()
    if regions:
        ds.SequenceOfUltrasoundRegions = [_region_item(r) for r in regions]
    ds.save_as(str(path), enforce_file_format=True)
    return Path(path)
