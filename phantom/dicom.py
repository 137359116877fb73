"""DICOM ultrasound files the way consoles export them: the whole screen as RGB pixels, and a Sequence of
Ultrasound Regions (0018,6011) saying where the 2-D tissue image (and any other region) sits, with the patient,
study and series a console fills in (synthetic: the phantom's patients are nobody).

Written with pydicom, so the phantom's DICOM twin is read back by the same library a hospital's files are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

TISSUE = 1  # RegionSpatialFormat 2D and RegionDataType tissue: the B-mode image


@dataclass(frozen=True)
class StudyIdentity:
    """The patient, study and series a console writes into every image of one exam (all synthetic)."""

    patient_id: str
    patient_name: str
    accession: str
    study_uid: str
    series_uid: str
    study_date: str = "20260101"
    study_time: str = "090000"
    character_set: tuple[str, ...] = ()  # SpecificCharacterSet as the console writes it (empty: the default set)

    @classmethod
    def new(cls, patient_id: str, accession: str | None = None) -> StudyIdentity:
        """A fresh study for a phantom subject (new UIDs each call)."""
        from pydicom.uid import generate_uid

        return cls(patient_id, f"PHANTOM^{patient_id}", accession or f"ACC{patient_id}"[:16], generate_uid(),
                   generate_uid())  # fmt: skip


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


def _identify(ds, study: StudyIdentity, instance: int) -> None:
    """The patient, general study and general series modules, as a console fills them."""
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = study.patient_id, study.patient_name, "", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study.study_uid, study.series_uid
    ds.StudyDate, ds.StudyTime, ds.StudyID = study.study_date, study.study_time, study.accession[-16:]
    ds.AccessionNumber, ds.ReferringPhysicianName = study.accession, ""
    ds.SeriesNumber, ds.InstanceNumber = 1, instance
    ds.ContentDate, ds.ContentTime = study.study_date, study.study_time
    if study.character_set:  # pydicom encodes every text value in it when the file is written
        ds.SpecificCharacterSet = list(study.character_set) if len(study.character_set) > 1 else study.character_set[0]


def write_ultrasound_dicom(
    path: str | Path,
    frames: np.ndarray,
    regions: list[UltrasoundRegion],
    manufacturer: str = "PHANTOM",
    model: str = "",
    study: StudyIdentity | None = None,
    instance: int = 1,
) -> Path:
    """Write one RGB screen (H x W x 3) or a cine loop (N x H x W x 3, 30 frames/s) as an uncompressed ultrasound
    file.

    Args:
        path: where to write.
        frames: uint8 RGB pixels.
        regions: the Sequence of Ultrasound Regions (empty: none written, as some old exports do).
        manufacturer: (0008,0070): the vendor.
        model: (0008,1090), the scanner model (the phantom's screen layout).
        study: the patient, study and series (default: a new study of patient 'PHANTOM').
        instance: the Instance Number within its series.
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
    _identify(ds, study or StudyIdentity.new("PHANTOM"), instance)
    ds.Rows, ds.Columns = frames.shape[-3:-1]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if cine:
        ds.NumberOfFrames, ds.FrameTime, ds.FrameIncrementPointer = frames.shape[0], 1000 / 30, (0x0018, 0x1063)
    ds.PixelData = frames.tobytes()
    if regions:
        ds.SequenceOfUltrasoundRegions = [_region_item(r) for r in regions]
    ds.save_as(str(path), enforce_file_format=True)
    return Path(path)
