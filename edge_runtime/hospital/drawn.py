"""The frame a report's hepatorenal regions were measured on, with both regions drawn, for `edge-runtime report`: a
sonographer checks by eye that the liver region lies in parenchyma and the cortex region in the renal cortex.

The report references its image by UID; the image itself is found among DICOM files (a folder the study was
exported to, or the study fetched from the archive over DIMSE or DICOMweb) and decoded by the one DICOM reader.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.hospital.report import ShownRegion
from edge_runtime.hospital.retrieve import RetrieveError, StudyArchive
from edge_runtime.sources.dicom.images import DicomImageError, read_dataset, rgb_frames

REGION_COLOURS = {"liver region": (60, 200, 60), "renal cortex region": (40, 150, 255)}  # RGB
REGION_LABELS = {"liver region": "liver", "renal cortex region": "cortex"}
OTHER_REGION = (230, 60, 230)


@dataclass(frozen=True)
class DrawnFrame:
    """The measured frame (RGB) with its regions drawn, or why it could not be shown."""

    image: np.ndarray | None
    said: str


def instance_path(folder: Path, sop_instance_uid: str) -> Path | None:
    """The DICOM file under ``folder`` (any depth) holding ``sop_instance_uid``; None when none does."""
    import pydicom

    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        except Exception:
            continue
        if str(header.get("SOPInstanceUID", "")) == sop_instance_uid:
            return path
    return None


def draw_regions(frame: np.ndarray, regions: tuple[ShownRegion, ...]) -> np.ndarray:
    """``frame`` (RGB) with each region's closed outline and name, in the frame's own pixels."""
    out = np.ascontiguousarray(frame.copy())
    thickness = max(2, round(max(out.shape[:2]) / 400))
    for region in regions:
        colour = REGION_COLOURS.get(region.name, OTHER_REGION)
        points = np.round(np.array(region.polygon, np.float64)).astype(np.int32)
        cv2.polylines(out, [points], True, colour, thickness, cv2.LINE_AA)
        x, y = points.min(axis=0)
        label = REGION_LABELS.get(region.name, region.name)
        cv2.putText(out, label, (int(x), max(12, int(y) - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.3 * thickness, colour,
                    max(1, thickness - 1), cv2.LINE_AA)  # fmt: skip
    return out


NOTHING_TO_DRAW = DrawnFrame(None, "no region to draw: the report measured no hepatorenal index")


def drawn_from(folder: Path, regions: tuple[ShownRegion, ...]) -> DrawnFrame:
    """The regions drawn on their frame, found in ``folder``; or why not (no region, no such image, unreadable)."""
    if not regions:
        return NOTHING_TO_DRAW
    uid, frame = regions[0].sop_instance_uid, regions[0].frame_number
    path = instance_path(folder, uid)
    if path is None:
        return DrawnFrame(None, f"regions not drawn: image {uid} is not among the files given")
    try:
        frames = rgb_frames(read_dataset(path))
    except DicomImageError as exc:
        return DrawnFrame(None, f"regions not drawn: {exc}")
    if not 1 <= frame <= len(frames):
        return DrawnFrame(None, f"regions not drawn: image {uid} has {len(frames)} frames, the report names {frame}")
    return DrawnFrame(draw_regions(frames[frame - 1], regions), f"regions drawn on image {uid}, frame {frame}")


def drawn_fetched(archive: StudyArchive, study_uid: str, regions: tuple[ShownRegion, ...]) -> DrawnFrame:
    """The regions drawn on their frame, fetched from the archive first: its series, or the whole study when the
    report lists no series for it."""
    if not regions:
        return NOTHING_TO_DRAW
    with tempfile.TemporaryDirectory(prefix="report-") as tmp:
        try:
            archive.retrieve(study_uid, Path(tmp), series_uid=regions[0].series_uid)
        except RetrieveError as exc:
            return DrawnFrame(None, f"regions not drawn: {exc}")
        return drawn_from(Path(tmp), regions)
