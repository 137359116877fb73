"""Wire protocol v1: the ``frame`` header a source sends, and every message the runtime publishes.

Frames: ``[b"frame", header_json, payload]`` from the scanner-side source to the runtime. Results, metrics,
heartbeats and thumbnails: ``[topic, json]`` from the runtime to displays and loggers; readers keep fields they
do not know, so a newer runtime never breaks an older display. ``docs/schemas/`` holds each message's JSON Schema.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from pydantic import Field, ValidationError, WithJsonSchema, field_validator

from edge_runtime.contracts.base import Message, validation_problems
from edge_runtime.contracts.constants import (
    MAX_THUMBNAIL_BYTES,
    MODEL_SIZE,
    PROTOCOL_VERSION,
    TOPIC_HEARTBEAT,
    TOPIC_METRICS,
    TOPIC_RESULT,
    TOPIC_THUMBNAIL,
    View,
)
from edge_runtime.contracts.names import Change, ExamEnd, HriAbsent, NoCall
from edge_runtime.errors import FattyLiverError


@dataclass(frozen=True)
class FrameHeader:
    """The JSON header of a ``frame`` message. A plain dataclass rather than pydantic: it is parsed at up to
    60 frames/s by ``edge_runtime.wire.protocol.parse_header``, whose hand-ordered checks give each rejection the
    reason the runtime counts (``edge_runtime.contracts.names.Reject``)."""

    v: int
    seq: int  # increasing by one per frame of a session; a gap is counted as a transport loss
    ts: float  # capture time, unix seconds
    session: str
    scanner: str  # a scanner profile name
    view: str  # one of VIEWS, or AUTO_VIEW (the bundle's view gate decides)
    width: int
    height: int
    channels: int  # 1 (grey) or 3 (RGB)
    encoding: str  # one of ENCODINGS; raw = row-major H x W x C uint8

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()


class ModelInfo(Message):
    name: str
    version: str
    sha: str = Field(description="First 16 hex digits of bundle.json's SHA-256 (which pins every file).")
    site: str | None = Field(
        None, description="The site the bundle was adapted to (`trainer site-adapt`); None: as trained."
    )
    signed_by: str | None = Field(
        None, description="The trusted key whose signature was verified; None: unsigned (development only)."
    )


class FrameRef(Message):
    seq: int
    ts: float
    view_confidence: float | None = Field(None, description="The view gate's confidence in this view; None: no gate.")
    out_of_distribution: bool | None = Field(None, description="Beyond the guard's threshold; None: no guard.")


ExamCall = Literal["fatty", "normal", "indeterminate"]
Polygon = list[tuple[float, float]]


class HriReading(Message):
    """One kidney-liver frame's hepatorenal index (liver over renal cortex at the same depth, mean echo of the
    displayed grey), with the two regions it was measured in, or why it is not measurable."""

    seq: int = Field(description="The kidney-liver frame measured.")
    value: float | None = Field(None, description="Liver / cortex mean echo; None: not measurable (see why).")
    interval: tuple[float, float] | None = Field(None, description="95 % interval from the regions' speckle.")
    why: HriAbsent | None = Field(None, description="Why there is no value.")
    reason: str | None = Field(None, description="The same in words, for the page.")
    liver_region: Polygon | None = Field(None, description="The liver region's outline, frame pixels (x, y).")
    cortex_region: Polygon | None = Field(None, description="The cortex region's outline, frame pixels (x, y).")
    liver_echo: float | None = Field(None, description="Mean grey level of the liver region (model input scale).")
    cortex_echo: float | None = Field(None, description="Mean grey level of the cortex region (model input scale).")
    box: tuple[int, int, int, int] | None = Field(
        None, description="Where the measured model input was cut from the frame (x, y, w, h): the page draws there."
    )


class ExamHri(Message):
    """The exam's hepatorenal index over its guard-clean measured kidney-liver frames."""

    value: float | None = Field(None, description="Geometric mean of the frames' HRI; None: none measurable.")
    interval: tuple[float, float] | None = Field(
        None, description="95 %: the spread between frames (three or more), else the frames' speckle."
    )
    frames: int = Field(0, ge=0, description="Frames measured.")
    tried: int = Field(0, ge=0, description="Kidney-liver frames the measurement was tried on.")
    why: HriAbsent | None = Field(None, description="The commonest reason when no frame was measurable.")


class ExamEstimate(Message):
    """The session's exam so far: recent pairs combined, with intervals, behind a hysteresis."""

    call: ExamCall | None = Field(description="None until enough pairs agree for long enough (see reason).")
    reason: str | None = Field(None, description="Why there is no call, why it is indeterminate, or what it holds.")
    why: NoCall | None = Field(
        None, description="The declared reason there is no definite call (names.NoCall); None when there is one."
    )
    p_fatty: float | None = Field(None, ge=0, le=1, description="Calibrated when `calibrated` is true.")
    p_fatty_interval: tuple[float, float] | None = Field(
        None, description="Not filled: how much frames agree is not how often the model is right; see class_set."
    )
    pdff: float | None = Field(None, description="Trimmed mean of the pairs' ensemble PDFF, recalibrated on CV, %.")
    pdff_interval: tuple[float, float] | None = Field(
        None, description="At pdff_coverage: the model's CV error scaled by its ensemble spread, and the pairs' spread."
    )
    pdff_se: float | None = Field(
        None,
        ge=0,
        description="Standard error of the estimate on log(1 + PDFF) from its pairs' disagreement: how far a repeat "
        "exam of the same liver moves it (follow-up comparisons rest on it); None: fewer than 2 pairs.",
    )
    n_pairs: int = Field(0, ge=0)
    stable_since: float | None = Field(None, description="Frame time (unix s) since which the call has held.")
    calibrated: bool = Field(description="False: the bundle has no calibrator and p_fatty is the raw output.")
    discordant: bool = Field(False, description="The call and the PDFF point estimate sit on opposite sides of 5 %.")
    views_seen: list[View] = Field(default_factory=list)
    class_set: list[Literal["fatty", "normal"]] | None = Field(
        None, description="The classes the certified rule cannot rule out; one class is a definite call."
    )
    coverage: float | None = Field(None, description="Not filled: definite calls are certified (definite_error).")
    pdff_coverage: float | None = Field(None, description="The coverage of pdff_interval: e.g. 0.9 of patients.")
    definite_error: float | None = Field(
        None, description="At most this share of definite calls is wrong, per class, as the bundle certifies it."
    )
    definite_subjects: int | None = Field(None, description="The calibration subjects the certification rests on.")
    hri: ExamHri | None = Field(None, description="The exam's hepatorenal index; None: no kidney-liver frame tried.")


class ResultMessage(Message):
    """One paired inference: both views' frames, the call, the PDFF estimate and where the time went."""

    v: int = PROTOCOL_VERSION
    session: str
    trigger: View = Field(description="The view whose new frame produced this result.")
    frames: dict[View, FrameRef]
    p_fatty: float = Field(ge=0, le=1)
    fatty: bool
    threshold: float
    pdff: float = Field(description="Estimated MRI-PDFF, %.")
    model: ModelInfo
    latency_ms: dict[str, float] = Field(
        description="Per stage (edge_runtime.contracts.names.Stage, in its order) and end_to_end."
    )
    exam: ExamEstimate = Field(description="The session's exam-level answer after this pair.")
    hri: HriReading | None = Field(None, description="The pair's kidney-liver frame's HRI, when it was measured.")
    out_of_distribution: bool | None = Field(
        None, description="A paired frame lies outside the training distribution; None: the bundle has no guard."
    )
    spread: dict[str, float] | None = Field(
        None, description="The ensemble's spread on this pair: logit of p_fatty and log(1 + PDFF) (None: one head)."
    )
    audited: bool | None = Field(
        None, description="Whether the audit log recorded this result before it was sent; None: no audit log."
    )

    @property
    def end_to_end_ms(self) -> float:
        return self.latency_ms.get("end_to_end", float("nan"))


class MetricsMessage(Message):
    v: int = PROTOCOL_VERSION
    ts: float
    counters: dict[str, int] = Field(description="edge_runtime.contracts.names.Count -> how many so far.")
    rejected: dict[str, int] = Field(description="Malformed or unusable frames by reason (names.Reject).")
    latency_ms: dict[str, dict[str, float]] = Field(
        description="Per stage (names.Stage, in its order): count, p50, p90, p99, p99_9, max, mean."
    )
    sessions: int
    sessions_expired: int
    pending: int


class AuditHealth(Message):
    """Whether the audit log is recording: a full or read-only disk is said, never silent."""

    ok: bool
    error: str | None = Field(None, description="The last write's failure, while writes fail.")
    failures: int = Field(0, description="Records the disk refused since start.")
    retired: int = Field(0, description="Rotated files deleted by retention (size or age) since start.")


class QuarantinedReport(Message):
    """A report that cannot be built: never retried by itself, never blocking the reports behind it."""

    sop_instance_uid: str | None = None
    session: str | None = None
    reason: str | None = None


class PriorReport(Message):
    """The patient's previous report by this product, as read back from the PACS (edge_runtime.hospital.priors)."""

    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str = ""
    date: str = Field(description="The prior study's date (ISO).")
    call: Literal["fatty", "normal", "indeterminate"]
    why: NoCall | None = Field(None, description="Why the prior was indeterminate, when it was.")
    pdff: float | None = Field(None, description="The prior's PDFF estimate, %.")
    pdff_interval: tuple[float, float] | None = None
    pdff_se: float | None = Field(None, description="The prior's repeat standard error on log(1 + PDFF).")
    n_pairs: int = Field(0, ge=0, description="Image pairs the prior combined.")
    model: str = Field(description="The bundle that made it: name (the lineage) and version.")
    lineage: str = Field(description="The bundle's name and site adaptation: scales agree only within one lineage.")
    scanner: str | None = Field(None, description="The scanner profile of the prior's frames, when stated.")


class FollowUpRule(Message):
    """The change rule a statement was judged by ([runtime.followup]; calibrated per bundle by benchmarks followup)."""

    scale: float = Field(description="Multiplier on two exams' repeat error: the calibrated 90 % no-change bound.")
    between_visits: float = Field(description="Sd of what a new day moves an exam's PDFF, percentage points.")
    pair_sd: float = Field(description="One image pair's sd on log(1 + PDFF): an exam of one pair's error.")


class FollowUp(Message):
    """This exam against the patient's previous report: the change in PDFF with its interval, and what it means."""

    statement: Change
    reason: str = Field(description="The statement in words, with why when not comparable or no prior.")
    date: str | None = Field(None, description="This exam's study date (ISO).")
    prior: PriorReport | None = None
    days: int | None = Field(None, description="Days between the prior study and this one.")
    change: float | None = Field(None, description="This exam's PDFF minus the prior's, percentage points.")
    change_interval: tuple[float, float] | None = Field(
        None, description="The change's 90 % interval from both exams' repeat errors, percentage points."
    )
    relative_change: float | None = Field(None, description="The change over the prior's PDFF (-0.3: a 30 % fall).")
    response: bool | None = Field(
        None,
        description="True: the interval lies wholly beyond a 30 % relative fall (the trials' response); False: the "
        "liver got fatter; None: not said (the model reads changes short, so a shorter interval does not show less).",
    )
    history: list[PriorReport] = Field(
        default_factory=list, description="Every earlier report in the window, oldest first (the page's trend)."
    )
    rule: FollowUpRule | None = Field(
        None, description="The rule the change was judged by (None: not judged), so an audit sees which one said it."
    )


class ExamFollowUp(Message):
    """An ended exam's comparison with the patient's prior report, written to the audit log by the report sender
    when it is made; readers join it to the exam's ``exam_final`` (edge_runtime.sinks.audit.read_final_exams)."""

    record: Literal["exam_followup"] = "exam_followup"
    session: str
    report: str = Field(description="The SR's SOP Instance UID (the exam_final's `report`).")
    at: float = Field(description="Unix seconds when the comparison was made.")
    ended: float = Field(description="Unix seconds when the exam ended (so the comparison's delay is known).")
    pdff: float | None = Field(None, description="This exam's PDFF estimate, % (the trend's newest point).")
    pdff_interval: tuple[float, float] | None = None
    followup: FollowUp


class PacsStatus(Message):
    """The report queue on its way to the PACS (edge_runtime.hospital): nothing waits unseen."""

    queued: int = Field(0, description="Reports waiting on disk for the PACS.")
    sent: int = Field(0, description="Reports every destination acknowledged, since start.")
    failed: int = Field(0, description="Failed sending attempts since start (each is retried with backoff).")
    oldest_age_s: float | None = Field(None, description="Seconds the oldest waiting report has waited.")
    last_error: str | None = Field(None, description="Why the last attempt failed.")
    not_linked: int = Field(0, description="Exams that ended linked to no study (no worklist, no DICOM): no report.")
    unlinked: list[str] = Field(default_factory=list, description="Active sessions that will end with no report.")
    destinations: list[str] = Field(default_factory=list, description="Where reports go (AE@HOST:PORT, stow).")
    quarantined: int = Field(0, description="Reports that could not be built, set aside with their reason.")
    followups: list[ExamFollowUp] = Field(
        default_factory=list, description="The newest comparisons with prior reports, newest last (the page's trend)."
    )
    quarantine: list[QuarantinedReport] = Field(
        default_factory=list, description="The newest quarantined reports: what a person must look at, and why."
    )


class ModelUpdate(Message):
    """One model update (SIGHUP): swapped in between frames, or refused with the old model still serving. The
    heartbeat carries the last one; the audit log records each."""

    record: Literal["model_update"] = "model_update"
    at: float = Field(description="Unix seconds when the update was decided.")
    ok: bool = Field(description="True: swapped in; False: refused, the previous model serves on.")
    requested: str = Field(description="The bundle folder the update read.")
    model: ModelInfo | None = Field(None, description="The model serving after the update.")
    previous: ModelInfo | None = Field(None, description="The model that served before it.")
    error: str | None = Field(None, description="Why it was refused.")
    sessions_ended: int = Field(0, description="Exams ended (each with its exam_final) because the model changed.")


class PartHealth(Message):
    """One part of the bedside (a source, the stages, a sink, a service) as its supervisor sees it."""

    kind: str = Field(description="source, stage, sink or service.")
    alive: bool = Field(True, description="False: its thread ended (the box exits to be restarted).")
    stalled: bool = Field(False, description="Its thread has not done its work for longer than it may.")
    errors: int = Field(0, description="Unexpected exceptions since start (each counted, named and survived).")
    last_error: str | None = Field(None, description="The last of them, in words.")


class BoxHealth(Message):
    """Every part's health: what /healthz decides on, said in the heartbeat so the page shows it."""

    healthy: bool
    problem: str | None = Field(None, description="What is dead or stalled, in one line.")
    parts: dict[str, PartHealth] = Field(default_factory=dict)


class OutcomesVerdict(Message):
    """The last reconciliation of the box's answers with MRI-PDFF (`edge-runtime outcomes`), as the box shows it."""

    verdict: Literal["pass", "fail", "insufficient"] = Field(description="insufficient: fewer exams than `minimum`.")
    exams: int = Field(ge=0, description="Exams reconciled with MRI-PDFF.")
    minimum: int = Field(ge=0, description="The fewest the bundle's acceptance criteria judge.")
    failing: list[str] = Field(default_factory=list, description="Criteria the site's figures miss.")
    created: float = Field(description="Unix seconds of the reconciliation.")
    report: str = Field(description="Where its report is.")


class DriftAlarm(Message):
    """One statistic of one scanner's recent exams beyond what the bundle's validation leads to expect."""

    scanner: str
    statistic: Literal["guard_share", "indeterminate_share", "pdff_distribution", "display_level", "display_step"]
    value: float = Field(
        description="The window's figure: a share, a KS distance (PDFF estimates, display levels), or |z| of the "
        "latest exams' mean display level against the console's go-live (display_step)."
    )
    bound: float = Field(description="The figure beyond which it alarms (at this window's size).")
    expected: float = Field(description="What the bundle's validation expects (a share; 0 for the KS distance).")
    exams: int = Field(ge=1, description="Exams in the scanner's window.")
    since: float = Field(description="Unix seconds since the alarm has stood.")


class HeartbeatMessage(Message):
    v: int = PROTOCOL_VERSION
    ts: float
    uptime_s: float
    model: ModelInfo
    sessions: int
    pending: int
    calibrated: bool = Field(description="Whether the bundle carries a p_fatty calibrator.")
    validation: str = Field(description="What the model was validated on, for the display's banner.")
    exams: dict[str, ExamEstimate] = Field(default_factory=dict, description="Active session -> its exam now.")
    audit: AuditHealth | None = Field(None, description="The audit log's state; None: a runtime before it was said.")
    model_since: float | None = Field(None, description="Unix seconds since which `model` has served.")
    model_update: ModelUpdate | None = Field(None, description="The last model update since start, if any.")
    pacs: PacsStatus | None = Field(None, description="The PACS report queue; None: no PACS configured.")
    health: BoxHealth | None = Field(None, description="Every part's pulse and errors (as /healthz says them).")
    outcomes: OutcomesVerdict | None = Field(None, description="The last reconciliation with MRI-PDFF, if any.")
    drift: list[DriftAlarm] | None = Field(None, description="Standing drift alarms; None: drift is not watched.")


class StudyReference(Message):
    """The DICOM study an exam analysed (edge_runtime.sources.dicom): what a report in the same study refers to. UIDs
    only: no patient field ever reaches the audit log."""

    study_instance_uid: str
    series_instance_uids: list[str] = Field(description="Series whose frames the gate filed as a view.")
    sop_instance_uids: list[str] = Field(description="Instances whose frames the gate filed as a view.")
    received: int = Field(0, ge=0, description="Instances of the study the box received.")


class ExamIdentity(Message):
    """Who and when an exam was, as keyed pseudonyms (edge_runtime.hospital.pseudonyms under the site's key): what
    MRI-PDFF arriving weeks later is matched by (`edge-runtime outcomes`), with no patient field on the box's disk."""

    patient: str | None = Field(None, description="Keyed pseudonym of the Patient ID; None: none known.")
    accession: str | None = Field(None, description="Keyed pseudonym of the accession number; None: none known.")
    date: str | None = Field(None, description="The study date (ISO), else the day the exam ended.")


class FrameTally(Message):
    """The exam's frames the gate filed as a view, and how many of them the guard flagged."""

    filed: int = Field(0, ge=0)
    flagged: int = Field(0, ge=0)
    display_level: float | None = Field(
        None, description="Median echo of the filed frames as displayed, before harmonisation (drift reads it)."
    )


class ExamRecord(Message):
    """The audit log's last word on a session, written when it ends (TTL, the session cap, shutdown or a new model)."""

    record: Literal["exam_final"] = "exam_final"
    session: str
    ended: float = Field(description="Unix seconds when the runtime closed the session.")
    why: Annotated[ExamEnd, WithJsonSchema({"enum": [e.value for e in ExamEnd], "type": "string"})] = Field(
        description="shutdown: the model serving it stopped serving."
    )
    cause: str | None = Field(None, description="What ended it, in words, when more than `why`: e.g. a model update.")
    exam: ExamEstimate
    model: ModelInfo
    study: StudyReference | None = Field(
        None, description="The DICOM study this exam was, with the instances that contributed (DICOM sources only)."
    )
    report: str | None = Field(
        None, description="The PACS report's SOP Instance UID, or why there is none (no PACS configured: None)."
    )
    scanner: str | None = Field(None, description="The scanner profile of the exam's frames (the last filed).")
    frames: FrameTally | None = Field(None, description="Frames filed as a view, and flagged by the guard.")
    identity: ExamIdentity | None = Field(None, description="Pseudonyms for reconciliation (the audit log's copy).")
    followup: FollowUp | None = Field(
        None,
        description="The comparison with the prior report: made after the exam ends, off the result path, and "
        "joined from its exam_followup record when the log is read.",
    )


class ThumbnailMessage(Message):
    """A preprocessed view crop that produced a result, as a small JPEG (off by default; rate-limited)."""

    v: int = PROTOCOL_VERSION
    session: str
    view: View
    seq: int = Field(description="The frame the crop came from (matches the result's frames[view].seq).")
    ts: float
    jpeg: str = Field(description=f"Base64 JPEG of the {MODEL_SIZE}x{MODEL_SIZE} model input, <= 20 kB.")

    @field_validator("jpeg")
    @classmethod
    def _bounded(cls, jpeg: str) -> str:
        if len(jpeg) * 3 // 4 > MAX_THUMBNAIL_BYTES + 2:
            raise ValueError(f"thumbnail of about {len(jpeg) * 3 // 4} bytes, the limit is {MAX_THUMBNAIL_BYTES}")
        return jpeg


class MessageError(FattyLiverError):
    """A runtime message that does not follow protocol v1 (a display skips it and counts it)."""


MESSAGES: dict[bytes, type[Message]] = {
    TOPIC_RESULT: ResultMessage,
    TOPIC_METRICS: MetricsMessage,
    TOPIC_HEARTBEAT: HeartbeatMessage,
    TOPIC_THUMBNAIL: ThumbnailMessage,
}
# audit-log records besides results
RECORDS: dict[str, type[Message]] = {
    "exam_final": ExamRecord,
    "model_update": ModelUpdate,
    "exam_followup": ExamFollowUp,
}


def message_bytes(message: Message) -> bytes:
    return message.model_dump_json().encode()


def parse_message(topic: bytes, body: bytes) -> Message:
    """A runtime message from its topic and JSON body; raises MessageError naming the topic and the problem."""
    model = MESSAGES.get(bytes(topic))
    if model is None:
        raise MessageError(f"unknown topic {bytes(topic)[:32]!r}")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise MessageError(f"{topic.decode(errors='replace')}: {validation_problems(exc)}") from None
