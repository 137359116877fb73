"""The second frame source: images and cine loops a scanner stores over DICOM, turned into pipeline frames.

One stored object becomes frames (each tissue region of each frame, edge_runtime.sources.dicom.images), filed under its
study: the StudyInstanceUID is the session, so a study's images make one exam, and the exam ends when the study has
been idle (``[runtime.dicom] study_idle_s``). Every frame is processed (a cine loop is not a live stream whose stale
frames may go): the store waits for room in the worker's stored lane, so the scanner's own flow control holds.

What a store is answered (PS3.4 annex B.2.3): success once the frames are queued; success, counted and logged, for an
image this box cannot analyse (no profile for its scanner, a scanner the bundle never saw), because a configuration
gap must not block the scanner's send queue; 0xA900 for a dataset that is not an image of its SOP class, 0xA700 for
one too large or when the pipeline stays full, 0xC000 for one that cannot be read or decoded. Nothing is written to
disk unless ``keep_dir`` is set, and then within ``keep_max_bytes``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.box.stats import RuntimeStats, ThrottledLog
from edge_runtime.config import DicomSettings, RuntimeConfig
from edge_runtime.contracts import AUTO_VIEW, PROTOCOL_VERSION, Count, FrameHeader
from edge_runtime.hospital.link import StudyRegistry
from edge_runtime.hospital.report import Evidence
from edge_runtime.pipeline.frame import FrameContext
from edge_runtime.pipeline.sessions import LatestFrames, StudyOrigin
from edge_runtime.scanners.profiles import ScannerProfile
from edge_runtime.scanners.stored import StoredScanner, match_profile
from edge_runtime.sources.dicom.images import DicomImageError, describe, read_dataset, region_frames, tissue_boxes
from edge_runtime.sources.dicom.sop import IMAGE_STORAGE
from edge_runtime.wire.protocol import MAX_DIMENSION

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # too large, or the pipeline stayed full
NOT_THIS_SOP_CLASS = 0xA900  # "dataset does not match SOP class": not an image, or its identity is missing
CANNOT_UNDERSTAND = 0xC000  # unreadable or undecodable
MIN_SIDE = 16
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # PS3.5 9.1: digits and dots, at most 64 characters


class Refused(Exception):
    """A stored object this box answers with a failure status: why (a counter's suffix), the status, and the detail."""

    def __init__(self, why: str, status: int, detail: str):
        super().__init__(detail)
        self.why, self.status, self.detail = why, status, detail


class NotAnalysed(Exception):
    """A valid image accepted (success) but not analysed; the message names the scanner or the reason."""


@dataclass(frozen=True)
class StoredObject:
    """A received object's identity, checked before any pixel is decoded."""

    ds: Any
    study: str
    series: str
    instance: str
    scanner: StoredScanner
    frames: int


def _uid(ds: Any, keyword: str) -> str:
    value = str(getattr(ds, keyword, "") or "").strip()
    if len(value) > 64 or not UID.match(value):
        raise Refused("not_image", NOT_THIS_SOP_CLASS, f"{describe(ds)}: no valid {keyword}")
    return value


def identify(ds: Any, max_frames: int) -> StoredObject:
    """The object's study, series, instance, scanner and size; a Refused naming what is wrong.

    Args:
        ds: the dataset as read (pixels not yet decoded).
        max_frames: the most frames one object may hold.
    """
    if str(getattr(ds, "SOPClassUID", "")) not in IMAGE_STORAGE or "PixelData" not in ds:
        raise Refused("not_image", NOT_THIS_SOP_CLASS, f"{describe(ds)}: not an ultrasound or secondary capture image")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        raise Refused("not_image", NOT_THIS_SOP_CLASS, f"{describe(ds)}: no usable Rows, Columns or frames") from None
    if not (MIN_SIDE <= rows <= MAX_DIMENSION and MIN_SIDE <= columns <= MAX_DIMENSION) or not frames >= 1:
        raise Refused("too_large", OUT_OF_RESOURCES, f"{describe(ds)}: {columns}x{rows} is outside 16-4096 a side")
    if frames > max_frames:
        raise Refused("too_large", OUT_OF_RESOURCES, f"{describe(ds)}: {frames} frames (at most {max_frames})")
    try:
        has_regions = bool(tissue_boxes(ds, columns, rows))
    except DicomImageError as exc:
        raise Refused("not_image", NOT_THIS_SOP_CLASS, str(exc)) from None
    manufacturer = str(getattr(ds, "Manufacturer", "") or "").strip()
    model = str(getattr(ds, "ManufacturerModelName", "") or "").strip()
    scanner = StoredScanner(manufacturer, model, columns, rows, has_regions)
    ids = (_uid(ds, "StudyInstanceUID"), _uid(ds, "SeriesInstanceUID"), _uid(ds, "SOPInstanceUID"))
    return StoredObject(ds, *ids, scanner, frames)


def frame_seconds(ds: Any) -> float:
    """Seconds between a cine loop's frames (Frame Time, ms), so the exam sees their capture spacing."""
    try:
        return max(0.0, float(getattr(ds, "FrameTime", 0) or 0) / 1000)
    except (TypeError, ValueError):
        return 0.0


class DicomSource:
    """Stored objects -> frames in the worker's stored lane, counted; one instance serves every association."""

    def __init__(
        self,
        config: RuntimeConfig,
        served: Any,
        queue: LatestFrames,
        reporting: tuple[RuntimeStats, ThrottledLog],
        studies: StudyRegistry | None = None,
    ):
        """Args:
        config: the runtime's configuration ([runtime.dicom], scanners.allow_unseen).
        served: what holds the model being served and its profiles (``.bundle``, ``.profiles``: FrameAdmission).
        queue: the worker's queue (its stored lane).
        reporting: the statistics and the throttled log.
        studies: where each analysed study's patient and study attributes wait for its report (None: no PACS).
        """
        self.config, self.settings, self.served, self.queue = config, config.dicom, served, queue
        self.studies = studies
        self.stats, self.log = reporting
        self._seq: dict[str, int] = {}
        self._lock = threading.Lock()
        self.keeper = KeptObjects(self.settings) if self.settings.keep_dir else None

    def store(self, data: bytes, received: float) -> int:
        """One received object (the encoded dataset with its file meta): its status for the C-STORE response."""
        self.stats.count(Count.DICOM_OBJECTS_RECEIVED)
        try:
            stored, frames = self._frames(read_dataset(data), received)
        except DicomImageError as exc:
            return self._refused(Refused("unreadable", CANNOT_UNDERSTAND, str(exc)))
        except Refused as refusal:
            return self._refused(refusal)
        except NotAnalysed as why:
            self.stats.count(Count.DICOM_OBJECTS_NOT_ANALYSED)
            self.log.once(f"dicom-not-analysed:{why}", str(why), "stored image accepted, not analysed")
            return SUCCESS
        queued = self.queue.put_stored(frames, self.settings.queue_timeout_s)
        self.stats.count(Count.DICOM_FRAMES, queued)
        if queued < len(frames):
            detail = (
                f"{len(frames) - queued} of {len(frames)} frames found no room in {self.settings.queue_timeout_s} s"
            )
            return self._refused(Refused("busy", OUT_OF_RESOURCES, detail))
        self.stats.count(Count.DICOM_OBJECTS_ANALYSED)
        if self.studies is not None:
            sop_class = str(stored.ds.SOPClassUID)
            self.studies.saw(stored.ds, stored.study, Evidence(sop_class, stored.instance, stored.series))
        if self.keeper is not None:
            self.keeper.keep(frames[0].origin.instance, data)
        return SUCCESS

    def _refused(self, refusal: Refused) -> int:
        self.stats.count(Count.DICOM_OBJECTS_FAILED)
        self.stats.count(Count.dicom_failed(refusal.why))
        self.log.once(f"dicom-{refusal.why}", refusal.detail, "stored object refused")
        return refusal.status

    def _profile(self, stored: StoredObject) -> str:
        """The scanner profile the object is analysed with; NotAnalysed when there is none the bundle may serve."""
        profiles: Mapping[str, ScannerProfile] = self.served.profiles
        name, why = match_profile(stored.scanner, profiles, self.settings.scanners)
        if name is None:
            raise NotAnalysed(why)
        bundle = self.served.bundle
        if name not in bundle.meta.scanners and not self.config.scanners.allow_unseen:
            raise NotAnalysed(f"{stored.scanner.said} is profile {name!r}, which bundle {bundle.name!r} never saw")
        return name

    def _frames(self, ds: Any, received: float) -> tuple[StoredObject, list[FrameContext]]:
        """Every region of every frame of the object, as pipeline frames of its study's session."""
        stored = identify(ds, self.settings.max_frames)
        scanner = self._profile(stored)
        try:
            regions = region_frames(ds)
        except DicomImageError as exc:
            raise Refused("undecodable", CANNOT_UNDERSTAND, str(exc)) from None
        step = frame_seconds(ds)
        with self._lock:
            first = self._seq.get(stored.study, -1) + 1
            self._seq[stored.study] = first + len(regions) - 1
            if len(self._seq) > 4096:  # studies long ended; their numbering restarts harmlessly
                self._seq.pop(next(iter(self._seq)))
        out = []
        for k, region in enumerate(regions):
            height, width = region.pixels.shape[:2]
            header = FrameHeader(PROTOCOL_VERSION, first + k, received + region.frame * step, stored.study, scanner,
                                 AUTO_VIEW, width, height, 3, "raw")  # fmt: skip
            origin = StudyOrigin(stored.study, stored.series, stored.instance, region.frame, region.region)
            out.append(FrameContext(header, region.pixels, received, origin=origin))
        return stored, out


class KeptObjects:
    """Received objects kept on disk (only when ``keep_dir`` is set), the oldest deleted past ``keep_max_bytes``."""

    def __init__(self, settings: DicomSettings):
        self.root, self.limit = Path(settings.keep_dir), settings.keep_max_bytes
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()

    def keep(self, instance: str, data: bytes) -> None:
        with self._lock:
            (self.root / f"{instance}.dcm").write_bytes(data)
            files = sorted(self.root.glob("*.dcm"), key=lambda p: p.stat().st_mtime)
            total = sum(p.stat().st_size for p in files)
            while files and total > self.limit:
                oldest = files.pop(0)
                total -= oldest.stat().st_size
                oldest.unlink(missing_ok=True)
