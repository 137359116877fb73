"""Names declared once: the pipeline's stages, the runtime's counters and why a frame is rejected.

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
    PAIR = "pair"
    HEAD = "head"
    EXAM = "exam"
    PUBLISH = "publish"
    END_TO_END = "end_to_end"


PIPELINE_STAGES = (Stage.DECODE, Stage.PREPROCESS, Stage.ENCODE, Stage.GATE, Stage.PAIR, Stage.HEAD, Stage.EXAM)


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


class Count(StrEnum):
    """Every counter of the metrics topic and Prometheus (rejections are also counted by reason)."""

    FRAMES_RECEIVED = "frames_received"
    FRAMES_REJECTED = "frames_rejected"
    FRAMES_LOST_IN_TRANSPORT = "frames_lost_in_transport"
    FRAMES_DROPPED_STALE = "frames_dropped_stale"
    FRAMES_DROPPED_OVERFLOW = "frames_dropped_overflow"
    FRAMES_UNSEEN_SCANNER = "frames_unseen_scanner"
    FRAMES_ENCODED = "frames_encoded"
    VIEW_MISMATCH = "view_mismatch"
    GATE_REJECTED = "gate_rejected"
    GATE_REJECTED_COLOUR = "gate_rejected_colour"
    GATE_REJECTED_OTHER = "gate_rejected_other"
    GATE_REJECTED_LIVER = "gate_rejected_liver"
    GATE_REJECTED_KIDNEY_LIVER = "gate_rejected_kidney_liver"
    FRAMES_REPEATED = "frames_repeated"
    FRAMES_OUT_OF_DISTRIBUTION = "frames_out_of_distribution"
    FRAMES_OUT_OF_DISTRIBUTION_FEATURES = "frames_out_of_distribution_features"
    FRAMES_OUT_OF_DISTRIBUTION_SPECKLE = "frames_out_of_distribution_speckle"
    FRAMES_OUT_OF_DISTRIBUTION_CLIPPED = "frames_out_of_distribution_clipped"
    FRAMES_AWAITING_PAIR = "frames_awaiting_pair"
    RESULTS_WITHHELD_OUT_OF_DISTRIBUTION = "results_withheld_out_of_distribution"
    RESULTS_PUBLISHED = "results_published"
    INFERENCE_ERRORS = "inference_errors"
    AUDIT_WRITE_FAILURES = "audit_write_failures"
    DICOM_ASSOCIATIONS = "dicom_associations"
    DICOM_ASSOCIATIONS_REFUSED = "dicom_associations_refused"
    DICOM_ASSOCIATIONS_ABORTED = "dicom_associations_aborted"
    DICOM_OBJECTS_RECEIVED = "dicom_objects_received"
    DICOM_OBJECTS_ANALYSED = "dicom_objects_analysed"
    DICOM_OBJECTS_NOT_ANALYSED = "dicom_objects_not_analysed"
    DICOM_OBJECTS_FAILED = "dicom_objects_failed"
    DICOM_FAILED_UNREADABLE = "dicom_failed_unreadable"
    DICOM_FAILED_NOT_IMAGE = "dicom_failed_not_image"
    DICOM_FAILED_TOO_LARGE = "dicom_failed_too_large"
    DICOM_FAILED_UNDECODABLE = "dicom_failed_undecodable"
    DICOM_FAILED_BUSY = "dicom_failed_busy"
    DICOM_FRAMES = "dicom_frames"
    REPORTS_QUEUED = "reports_queued"
    REPORTS_SENT = "reports_sent"
    REPORT_SEND_FAILURES = "report_send_failures"
    REPORTS_NOT_LINKED = "reports_not_linked"

    @classmethod
    def gate_rejected(cls, what: str) -> Count:
        """The counter of frames the gate keeps out because they showed ``what`` (colour, or a view class the gate
        predicted: other, or a view below its confidence floor)."""
        return cls(f"gate_rejected_{what}")

    @classmethod
    def dicom_failed(cls, why: str) -> Count:
        """The counter of stored objects refused for ``why`` (unreadable, not_image, too_large, undecodable, busy)."""
        return cls(f"dicom_failed_{why}")

    @classmethod
    def out_of_distribution(cls, part: str) -> Count:
        """The counter of frames flagged by one part of the guard (features, speckle or clipped)."""
        return cls(f"frames_out_of_distribution_{part}")
