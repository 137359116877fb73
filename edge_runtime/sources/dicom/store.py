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

import math
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.box.telemetry import Telemetry
from edge_runtime.config import DicomSettings, RuntimeConfig
from edge_runtime.contracts import AUTO_VIEW, PROTOCOL_VERSION, Count, DicomFailure, FrameHeader, counted
from edge_runtime.model.served import Served, ServedModel
from edge_runtime.pipeline.frame import FrameContext
from edge_runtime.pipeline.queue import FrameQueue
from edge_runtime.pipeline.studies import StudyOrigin
from edge_runtime.scanners.seen import seen, unseen_refusal
from edge_runtime.scanners.stored import StoredScanner, match_profile
from edge_runtime.sources.dicom.attributes import patient_study_attributes
from edge_runtime.sources.dicom.images import (
    DicomImageError,
    describe,
    pixel_data_problem,
    read_dataset,
    region_frames,
    tissue_boxes,
)
from edge_runtime.sources.dicom.sop import IMAGE_STORAGE
from edge_runtime.wire.protocol import MAX_DIMENSION

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # too large, or the pipeline stayed full
NOT_THIS_SOP_CLASS = 0xA900  # "dataset does not match SOP class": not an image, or its identity is missing
CANNOT_UNDERSTAND = 0xC000  # unreadable or undecodable
MIN_SIDE = 16
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # PS3.5 9.1: digits and dots, at most 64 characters


STATUS = {  # what a scanner is answered for each failure (PS3.4 annex B.2.3)
    DicomFailure.UNREADABLE: CANNOT_UNDERSTAND,
    DicomFailure.NOT_IMAGE: NOT_THIS_SOP_CLASS,
    DicomFailure.TOO_LARGE: OUT_OF_RESOURCES,
    DicomFailure.SHORT_PIXEL_DATA: CANNOT_UNDERSTAND,
    DicomFailure.UNDECODABLE: CANNOT_UNDERSTAND,
    DicomFailure.BUSY: OUT_OF_RESOURCES,
}


class Refused(Exception):
    """A stored object this box answers with a failure status: why (declared; its status follows), and the detail."""

    def __init__(self, why: DicomFailure, detail: str):
        super().__init__(detail)
        self.why, self.status, self.detail = why, STATUS[why], detail


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

    @property
    def sop_class(self) -> str:
        return str(self.ds.SOPClassUID)


def _uid(ds: Any, keyword: str) -> str:
    value = str(getattr(ds, keyword, "") or "").strip()
    if len(value) > 64 or not UID.match(value):
        raise Refused(DicomFailure.NOT_IMAGE, f"{describe(ds)}: no valid {keyword}")
    return value


def identify(ds: Any, max_frames: int) -> StoredObject:
    """The object's study, series, instance, scanner and size; a Refused naming what is wrong.

    Args:
        ds: the dataset as read (pixels not yet decoded).
        max_frames: the most frames one object may hold.
    """
    if str(getattr(ds, "SOPClassUID", "")) not in IMAGE_STORAGE or "PixelData" not in ds:
        raise Refused(DicomFailure.NOT_IMAGE, f"{describe(ds)}: not an ultrasound or secondary capture image")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        raise Refused(DicomFailure.NOT_IMAGE, f"{describe(ds)}: no usable Rows, Columns or frames") from None
    if not (MIN_SIDE <= rows <= MAX_DIMENSION and MIN_SIDE <= columns <= MAX_DIMENSION) or not frames >= 1:
        raise Refused(DicomFailure.TOO_LARGE, f"{describe(ds)}: {columns}x{rows} is outside 16-4096 a side")
    if frames > max_frames:
        raise Refused(DicomFailure.TOO_LARGE, f"{describe(ds)}: {frames} frames (at most {max_frames})")
    short = pixel_data_problem(ds, frames)
    if short is not None:
        raise Refused(DicomFailure.SHORT_PIXEL_DATA, f"{describe(ds)}: {short}")
    try:
        has_regions = bool(tissue_boxes(ds, columns, rows))
    except DicomImageError as exc:
        raise Refused(DicomFailure.NOT_IMAGE, str(exc)) from None
    manufacturer = str(getattr(ds, "Manufacturer", "") or "").strip()
    model = str(getattr(ds, "ManufacturerModelName", "") or "").strip()
    scanner = StoredScanner(manufacturer, model, columns, rows, has_regions)
    ids = (_uid(ds, "StudyInstanceUID"), _uid(ds, "SeriesInstanceUID"), _uid(ds, "SOPInstanceUID"))
    return StoredObject(ds, *ids, scanner, frames)


def frame_offsets(ds: Any, frames: int) -> list[float]:
    """Each frame's capture time after the first (seconds), from the cine module: Frame Time (ms), else the Frame
    Time Vector (ms since the previous frame), else Cine Rate or Recommended Display Frame Rate (frames/s); all
    zero when none is readable. The exam's pairing and the per-session rations count these, so a loop's frames
    are spaced as they were captured, whichever of the standard's ways the scanner chose."""
    step = _numbers(ds, "FrameTime", 1)
    if step is not None and step[0] > 0:
        return [k * step[0] / 1000 for k in range(frames)]
    vector = _numbers(ds, "FrameTimeVector", frames)
    if vector is not None and min(vector) >= 0:
        return [float(t) / 1000 for t in np.cumsum(vector)]
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = _numbers(ds, keyword, 1)
        if rate is not None and rate[0] > 0:
            return [k / rate[0] for k in range(frames)]
    return [0.0] * frames


def _numbers(ds: Any, keyword: str, count: int) -> list[float] | None:
    """The attribute's ``count`` finite numbers, or None when it is absent, unreadable or of another length."""
    try:
        value = getattr(ds, keyword, None)
        several = isinstance(value, Iterable) and not isinstance(value, str | bytes)
        values = [] if value is None else [float(v) for v in (value if several else [value])]
    except (TypeError, ValueError):
        return None
    if len(values) != count or not all(math.isfinite(v) for v in values):
        return None
    return values


class DicomStores:
    """Stored objects -> frames in the worker's stored lane, counted; one instance serves every association."""

    def __init__(self, config: RuntimeConfig, served: Served, queue: FrameQueue, telemetry: Telemetry):
        """Args:
        config: the runtime's configuration ([runtime.dicom], scanners.allow_unseen).
        served: the model being served (its scanners and profiles), read once per stored object.
        queue: the worker's queue (its stored lane).
        telemetry: the statistics and the throttled log.
        """
        self.config, self.settings, self.served, self.queue = config, config.dicom, served, queue
        self.stats, self.log = telemetry.stats, telemetry.log
        self._seq: dict[str, int] = {}
        self._lock = threading.Lock()
        self.keeper = KeptObjects(self.settings) if self.settings.keep_dir else None

    def store(self, data: bytes, received: float) -> int:
        """One received object (the encoded dataset with its file meta): its status for the C-STORE response."""
        self.stats.count(Count.DICOM_OBJECTS_RECEIVED)
        try:
            frames = self._frames(read_dataset(data), received, self.served.current)
        except DicomImageError as exc:
            return self._refused(Refused(DicomFailure.UNREADABLE, str(exc)))
        except Refused as refusal:
            return self._refused(refusal)
        except NotAnalysed as why:
            self.stats.count(Count.DICOM_OBJECTS_NOT_ANALYSED)
            self.log.once(f"dicom-not-analysed:{why}", str(why), "stored image accepted, not analysed")
            return SUCCESS
        queued = self.queue.put_stored(frames, self.settings.queue_timeout_s)
        self.stats.count(Count.DICOM_FRAMES, queued)
        if queued < len(frames):
            waited = self.settings.queue_timeout_s
            detail = f"{len(frames) - queued} of {len(frames)} frames found no room in {waited} s"
            return self._refused(Refused(DicomFailure.BUSY, detail))
        self.stats.count(Count.DICOM_OBJECTS_ANALYSED)
        if self.keeper is not None:
            self.keeper.keep(frames[0].origin.instance, data)
        return SUCCESS

    def _refused(self, refusal: Refused) -> int:
        self.stats.count(Count.DICOM_OBJECTS_FAILED)
        self.stats.count(counted(refusal.why))
        self.log.once(f"dicom-{refusal.why}", refusal.detail, "stored object refused")
        return refusal.status

    def _profile(self, stored: StoredObject, model: ServedModel) -> str:
        """The scanner profile the object is analysed with; NotAnalysed when there is none the bundle may serve."""
        name, why = match_profile(stored.scanner, model.profiles, self.settings.scanners)
        if name is None:
            raise NotAnalysed(why)
        refusal = unseen_refusal(model.bundle, name, self.config.scanners.allow_unseen)
        if refusal is not None:
            raise NotAnalysed(f"{stored.scanner.said}: {refusal}")
        return name

    def _frames(self, ds: Any, received: float, model: ServedModel) -> list[FrameContext]:
        """Every region of every frame of the object, as pipeline frames of its study's session."""
        stored = identify(ds, self.settings.max_frames)
        scanner = self._profile(stored, model)
        try:
            regions = region_frames(ds)
        except DicomImageError as exc:
            raise Refused(DicomFailure.UNDECODABLE, str(exc)) from None
        if not seen(model.bundle, scanner):
            self.stats.count(Count.FRAMES_UNSEEN_SCANNER, len(regions))
        offsets = frame_offsets(ds, max(region.frame for region in regions) + 1)
        first = self._numbered(stored.study, len(regions))
        attributes = patient_study_attributes(ds)
        out = []
        for k, region in enumerate(regions):
            height, width = region.pixels.shape[:2]
            ts = received + offsets[region.frame]
            header = FrameHeader(
                PROTOCOL_VERSION, first + k, ts, stored.study, scanner, AUTO_VIEW, width, height, 3, "raw"
            )
            where = (stored.study, stored.series, stored.instance, region.frame, region.region)
            origin = StudyOrigin(*where, stored.sop_class, attributes, region.offset)
            out.append(FrameContext(header, region.pixels, received, origin=origin))
        return out

    def _numbered(self, study: str, count: int) -> int:
        """The first of ``count`` sequence numbers for a study's next frames (a study numbers its own frames)."""
        with self._lock:
            first = self._seq.get(study, -1) + 1
            self._seq[study] = first + count - 1
            if len(self._seq) > 4096:  # studies long ended; their numbering restarts harmlessly
                self._seq.pop(next(iter(self._seq)))
        return first


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
