"""Names declared once: the pipeline's stages, every reason the box gives (a frame rejected or dropped, a view kept
out, a DICOM object refused, an exam with no call, an exam's end) and the counters derived from them.

The runner, the statistics, the metrics topic, Prometheus, the bedside page and the docs' tables all read these
enums, so a stage or a counter is added here and appears everywhere (``tests/test_contracts.py`` checks the docs).
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """Where a frame's time goes: ``queue`` (waiting for the worker), the pipeline's stages in order, then the
    publishing of the result and the whole path from capture to the result leaving the box."""

    QUEUE = "queue"
    DECODE = "decode"
    PREPROCESS = "preprocess"
    ENCODE = "encode"
    GATE = "gate"
    MEASURE = "measure"
    PAIR = "pair"
    HEAD = "head"
    EXAM = "exam"
    PUBLISH = "publish"
    END_TO_END = "end_to_end"


PIPELINE_STAGES = (
    Stage.DECODE,
    Stage.PREPROCESS,
    Stage.ENCODE,
    Stage.GATE,
    Stage.MEASURE,
    Stage.PAIR,
    Stage.HEAD,
    Stage.EXAM,
)


class Reject(StrEnum):
    """Why a frame is malformed or unusable: counted under the metrics' ``rejected`` and skipped."""

    PART_COUNT = "part_count"
    BAD_TOPIC = "bad_topic"
    HEADER_TOO_LARGE = "header_too_large"
    BAD_JSON = "bad_json"
    MISSING_FIELD = "missing_field"
    BAD_FIELD_TYPE = "bad_field_type"
    BAD_VERSION = "bad_version"
    UNKNOWN_VIEW = "unknown_view"
    BAD_ENCODING = "bad_encoding"
    BAD_SESSION = "bad_session"
    UNKNOWN_SCANNER = "unknown_scanner"
    BAD_DIMENSIONS = "bad_dimensions"
    SIZE_MISMATCH = "size_mismatch"
    UNSEEN_SCANNER = "unseen_scanner"
    NO_VIEW_MODEL = "no_view_model"
    PAYLOAD_SIZE = "payload_size"
    DECODE_FAILED = "decode_failed"
    DECODED_SIZE = "decoded_size"
    BLANK = "blank"


class DropReason(StrEnum):
    """Why a live frame waiting for the worker is dropped: a newer frame of its (session, view) replaced it, or the
    queue held as many (session, view) keys as it may and the oldest went."""

    STALE = "stale"
    OVERFLOW = "overflow"


class GateKeptOut(StrEnum):
    """What the view gate saw in a frame it keeps out of the pairing: colour in the box (never a view), a frame of no
    view (``other``), or a view predicted below the gate's confidence floor."""

    COLOUR = "colour"
    OTHER = "other"
    LIVER = "liver"
    KIDNEY_LIVER = "kidney_liver"


class GuardPart(StrEnum):
    """Which part of the out-of-distribution guard flags a frame."""

    FEATURES = "features"
    SPECKLE = "speckle"
    CLIPPED = "clipped"


class DicomFailure(StrEnum):
    """Why a stored DICOM object is refused with a failure status (the scanner sees the status, the box counts it)."""

    UNREADABLE = "unreadable"  # 0xC000: not a DICOM object pydicom can read
    NOT_IMAGE = "not_image"  # 0xA900: not an image of its SOP class, or its identity is missing
    TOO_LARGE = "too_large"  # 0xA700: outside the size limits
    SHORT_PIXEL_DATA = "short_pixel_data"  # 0xC000: pixel data too short for Rows x Columns x frames
    UNDECODABLE = "undecodable"  # 0xC000: pixel data no decoder reads
    BUSY = "busy"  # 0xA700: the pipeline stayed full


class NoCall(StrEnum):
    """Why an exam states no definite call. The report's coded reason (edge_runtime.hospital.codes) and the words
    on the page (NO_CALL_SAID) derive from it."""

    COLLECTING = "collecting"  # fewer pairs than an answer needs
    SETTLING = "settling"  # a first call has not yet held long enough to be shown
    OUTSIDE_TRAINING = "outside_training"  # the recent pairs lie outside the training distribution as a whole
    CANNOT_TELL = "cannot_tell"  # the model cannot tell at its certified level
    CANNOT_CERTIFY = "cannot_certify"  # the bundle's calibration is too small to certify calls on this side
    DISCORDANT = "discordant"  # the call and the PDFF interval contradict each other
    NOT_CALIBRATED = "not_calibrated"  # the bundle states no model-error calibration


NO_CALL_SAID: dict[NoCall, str] = {
    NoCall.COLLECTING: "collecting",
    NoCall.SETTLING: "settling",
    NoCall.OUTSIDE_TRAINING: "outside the model's training distribution",
    NoCall.CANNOT_TELL: "the model cannot tell",
    NoCall.CANNOT_CERTIFY: "the bundle cannot certify a definite call",
    NoCall.DISCORDANT: "discordant",
    NoCall.NOT_CALIBRATED: "the model cannot tell: the bundle states no model-error calibration",
}


class HriAbsent(StrEnum):
    """Why a kidney-liver frame or an exam gives no hepatorenal index (edge_runtime.measure.hri)."""

    NO_KIDNEY = "no_kidney"  # no renal cortex in view
    CORTEX_TOO_SMALL = "cortex_too_small"  # the cortex in view is too thin or too small to measure
    NO_LIVER_AT_DEPTH = "no_liver_at_depth"  # no liver parenchyma beside the cortex at its depth
    SATURATED = "saturated"  # a region's echoes are clipped at the display's white
    NOISE_FLOOR = "noise_floor"  # a region's echoes are under the noise floor (attenuation, gain)


HRI_ABSENT_SAID: dict[HriAbsent, str] = {
    HriAbsent.NO_KIDNEY: "no renal cortex in view",
    HriAbsent.CORTEX_TOO_SMALL: "the cortex in view is too small",
    HriAbsent.NO_LIVER_AT_DEPTH: "no liver beside the cortex at its depth",
    HriAbsent.SATURATED: "the regions are saturated",
    HriAbsent.NOISE_FLOOR: "the regions are under the noise floor",
}


class Change(StrEnum):
    """What a follow-up exam says against the patient's previous report (edge_runtime.followup.change)."""

    DECREASED = "decreased"  # the fat fraction fell beyond what the two measurements can resolve
    INCREASED = "increased"  # it rose beyond that
    NO_CHANGE = "no_change"  # no change beyond what the two measurements can resolve
    NOT_COMPARABLE = "not_comparable"  # the two exams' numbers cannot be set side by side (reason given)
    NO_PRIOR = "no_prior"  # no earlier report was found, or the PACS could not be asked (reason given)


CHANGE_SAID: dict[Change, str] = {
    Change.DECREASED: "decreased",
    Change.INCREASED: "increased",
    Change.NO_CHANGE: "no change beyond what the two measurements can resolve",
    Change.NOT_COMPARABLE: "not comparable",
    Change.NO_PRIOR: "prior not available",
}


class ExamEnd(StrEnum):
    """Why an exam ended: no new frame for its time to live (a study: idle), the session cap, or the model serving it
    stopped serving (shutdown or a model update)."""

    TTL = "ttl"
    CAPACITY = "capacity"
    SHUTDOWN = "shutdown"


PLAIN_COUNTERS = """
    frames_received frames_rejected frames_lost_in_transport frames_unseen_scanner frames_encoded view_mismatch
    view_kidney_found
    gate_rejected frames_repeated frames_out_of_distribution frames_awaiting_pair results_withheld_out_of_distribution
    results_published inference_errors sink_errors audit_write_failures exams_ended
    dicom_associations dicom_associations_refused dicom_associations_aborted dicom_objects_received
    dicom_objects_analysed dicom_objects_not_analysed dicom_objects_failed dicom_frames source_errors
    reports_queued reports_sent report_send_failures reports_not_linked reports_quarantined service_errors
    hri_measured
""".split()  # noqa: SIM905 - one name per word reads better than 31 quoted lines
# Counters by reason: each member of a reason enum is counted under PREFIX_<its value>.
COUNTED_REASONS: tuple[tuple[type[StrEnum], str], ...] = (
    (DropReason, "frames_dropped"),
    (GateKeptOut, "gate_rejected"),
    (GuardPart, "frames_out_of_distribution"),
    (DicomFailure, "dicom_failed"),
    (NoCall, "exams_no_call"),
    (HriAbsent, "hri_not_measurable"),
)
_REASON_COUNTERS = {f"{prefix}_{reason.value}": (kind, reason) for kind, prefix in COUNTED_REASONS for reason in kind}

Count = StrEnum(  # type: ignore[misc]  # members built from the declared names and reasons above
    "Count", {name.upper(): name for name in (*PLAIN_COUNTERS, *_REASON_COUNTERS)}, module=__name__
)
Count.__doc__ = """Every counter of the metrics topic and Prometheus: the plain ones, and one per member of each
reason enum in COUNTED_REASONS (rejected frames are also counted by Reject, under the metrics' ``rejected``)."""

_BY_REASON: dict[tuple[type[StrEnum], str], Count] = {
    (kind, reason.value): Count(name) for name, (kind, reason) in _REASON_COUNTERS.items()
}


def counted(reason: StrEnum) -> Count:
    """The counter of one declared reason (a member of an enum in COUNTED_REASONS)."""
    return _BY_REASON[(type(reason), reason.value)]
