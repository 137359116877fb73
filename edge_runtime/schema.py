"""The product's contracts, declared once: views, model input size, the bundle's metadata and the wire messages.

Everything that crosses a boundary (trainer -> bundle -> bedside -> display) is declared here and imported
everywhere else, so a field is added in one place and every reader and writer sees it. The bundle metadata
follows the idea of MONAI's bundle ``meta_schema.json``: typed, described, validated on read.

Growth rule: bundle schema ``fatty-liver-edge/bundle@1`` and wire protocol v1 grow additively. New bundle
fields are optional (older bundles still load; ``None`` means "this bundle predates the field"), and message
readers ignore fields they do not know (a newer runtime never breaks an older display).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge_runtime.errors import FattyLiverError

# -- what the model sees --------------------------------------------------------------------------------------------
View = Literal["liver", "kidney_liver"]
VIEWS: tuple[View, View] = ("liver", "kidney_liver")  # right intercostal liver view, liver with right renal cortex
OTHER_VIEW = "other"  # a manifest row showing neither view (air, other organs, Doppler, menus): never paired
VIEW_CLASSES = (*VIEWS, OTHER_VIEW)  # what a bundle's view gate tells apart, in its output order
AUTO_VIEW = "auto"  # a frame header's view when the source does not know it: the bundle's view gate decides
MODEL_SIZE = 224  # VGG19's input side, in pixels
INPUT_SHAPE = (MODEL_SIZE, MODEL_SIZE, 3)  # what preprocess_frame returns and every encoder takes (uint8 RGB)
FEATURE_MAP = (7, 7, 512)  # VGG19's last pooled map for INPUT_SHAPE: rows, columns, channels ('flatten' = 25 088)
FATTY_PDFF = 5.0  # MRI-PDFF (%) at and above which a liver is fatty (the paper's reference standard)
P_FATTY_THRESHOLD = 0.5  # default decision threshold on the model's p_fatty
HOLDOUT_SHARE = 0.12  # share of a run's subjects in each of its calibration and fidelity groups
HARMONISATIONS = ("none", "sector_median")  # scanner harmonisation steps preprocess_frame knows (the last step)
Harmonisation = Literal["none", "sector_median"]
REPRESENTATIVE_SAMPLES = 300  # images (and augmented variants) an int8 encoder is calibrated on

# -- wire protocol v1 (ZeroMQ multipart, topic first) ---------------------------------------------------------------
PROTOCOL_VERSION = 1
TOPIC_FRAME = b"frame"
TOPIC_RESULT = b"result"
TOPIC_METRICS = b"metrics"
TOPIC_HEARTBEAT = b"heartbeat"
TOPIC_THUMBNAIL = b"thumbnail"  # optional (serve --thumbnails): what the model saw, for a display
MAX_THUMBNAIL_BYTES = 20_000  # one thumbnail's JPEG, at most
ENCODINGS = ("raw", "png", "jpeg")
SESSION_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # an opaque exam id, never a name or MRN

TensorDtype = Literal["uint8", "int8", "float32"]
SEMVER_PATTERN = r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$"


@dataclass(frozen=True)
class FrameHeader:
    """The JSON header of a ``frame`` message. A plain dataclass rather than pydantic: it is parsed at up to
    60 frames/s by ``edge_runtime.protocol.parse_header``, whose hand-ordered checks give each rejection the
    reason name the runtime counts."""

    v: int
    seq: int  # increasing per source; gaps are counted as transport losses
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


class _Contract(BaseModel):
    """A bundle part: unknown fields are errors (a hand-edited or foreign bundle.json is refused by name)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Message(BaseModel):
    """A wire message: readers keep fields they do not know, so displays survive a newer runtime."""

    model_config = ConfigDict(extra="allow")


class BundleError(FattyLiverError):
    """The bundle cannot be trusted or used; the message names the file and the problem."""


def validation_problems(exc: ValidationError) -> str:
    """One line per problem: the dotted field and what is wrong with it."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
    )


# -- bundle.json ----------------------------------------------------------------------------------------------------
BUNDLE_SCHEMA = "fatty-liver-edge/bundle@1"


class InputSpec(_Contract):
    shape: tuple[int, int, int] = Field(INPUT_SHAPE, description="Encoder input, height x width x channels.")
    dtype: TensorDtype = Field("uint8", description="Pixels go in as they are (scale 1, zero point 0).")
    resize: Literal["area"] = Field("area", description="OpenCV INTER_AREA, in preprocess_frame.")
    color: Literal["rgb"] = "rgb"
    preprocess: str = "edge_runtime.preprocess.preprocess_frame (scanner-profile crop, INTER_AREA)"
    harmonisation: Harmonisation | None = Field(
        None, description="preprocess_frame's last step (None: a bundle older than the field, i.e. 'none')."
    )

    @field_validator("shape")
    @classmethod
    def _served_shape(cls, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        if tuple(shape) != INPUT_SHAPE:
            raise ValueError(f"input shape {list(shape)}, this runtime feeds {list(INPUT_SHAPE)}")
        return shape


class FeatureSpec(_Contract):
    size: int = Field(gt=0, description="Length of one view's feature vector (25 088 for flatten, 512 for avg).")
    dtype: TensorDtype = Field(description="Encoder output type; int8 is dequantized before the head.")
    pooling: Literal["flatten", "avg"] | None = None


class ClassOutput(_Contract):
    threshold: float = Field(P_FATTY_THRESHOLD, gt=0, lt=1, description="p_fatty at or above which the call is fatty.")
    meaning: str
    validated: bool | None = Field(None, description="Cross-validated by the run; None: bundle predates the flag.")


class PdffOutput(_Contract):
    unit: Literal["%"] = "%"
    meaning: str
    validated: bool | None = Field(None, description="Cross-validated by the run; None: bundle predates the flag.")


class Outputs(_Contract):
    p_fatty: ClassOutput
    pdff: PdffOutput

    def unvalidated(self) -> list[str]:
        return [name for name, spec in (("p_fatty", self.p_fatty), ("pdff", self.pdff)) if spec.validated is False]


class HeadOutputs(_Contract):
    """TFLite renames outputs, so export records which output tensor index is which answer."""

    p_fatty: int
    pdff: int


class BundleFiles(_Contract):
    encoder: dict[View, str] = Field(description="One file shared by both views (frozen backbone) or one per view.")
    head: str
    fidelity: str
    gate: str | None = Field(None, description="View gate and feature guard arrays (npz); None in older bundles.")

    @field_validator("encoder")
    @classmethod
    def _both_views(cls, encoder: dict[str, str]) -> dict[str, str]:
        missing = [v for v in VIEWS if v not in encoder]
        if missing:
            raise ValueError(f"no encoder file for view(s) {missing}")
        return encoder


class QuantParams(_Contract):
    scale: float
    zero_point: int


class BiasCorrection(_Contract):
    images: int = Field(description="Calibration images the int8-minus-float feature bias was measured on.")
    mean_abs_feature_bias: float


class Quantization(_Contract):
    encoder: str
    input: QuantParams
    output: QuantParams
    head: str
    bias_correction: BiasCorrection | None = None
    representative_samples: int = Field(ge=0)


class CalibrationInfo(_Contract):
    subjects: int = Field(ge=0, description="Subjects whose images calibrated the int8 ranges.")
    subject_id_sha256: str = Field(description="Who calibrated the bundle, without shipping their ids.")
    fidelity_subjects: int = Field(ge=0)
    train_subjects: int = Field(ge=0)
    train_subject_id_sha256: str | None = None


class TrainingInfo(_Contract):
    run: str
    weights: str
    weights_id: str | None
    finetune: str | None
    augment: str
    appearance: str | None = Field(
        None, description="Appearance augmentation families the head trained with ('none', 'all' or a list)."
    )
    epochs: int = Field(gt=0, description="Epochs the exported head trained for (the run's validated protocol).")
    task: Literal["classify", "regress", "both"] | None = Field(None, description="What the run cross-validated.")
    features: Literal["float", "int8"] | None = Field(
        None, description="What the head trained on: the float encoder's features, or the shipped int8 encoder's."
    )
    cohort: Literal["phantom", "clinical"] | None = Field(
        None, description="What the model was trained and cross-validated on: phantom screens or clinical images."
    )
    subjects: int | None = Field(None, ge=1, description="Subjects in the cross-validated run.")


class CvMetrics(_Contract):
    task: str
    pooled: dict[str, float | None] | None = None
    ci95: dict[str, list[float] | None] | None = None
    fold_mean_sd: dict[str, list[float] | None] | None = None


class PlattCalibrator(_Contract):
    """Logistic recalibration of p_fatty, fitted on the run's out-of-fold predictions (one per subject)."""

    kind: Literal["platt"] = "platt"
    inputs: list[Literal["logit_p_fatty", "pdff"]] = Field(
        description="Design columns: logit of the raw p_fatty, and the PDFF estimate (%) for two-output models."
    )
    coef: list[float]
    intercept: float
    subjects: int = Field(ge=2, description="Out-of-fold predictions it was fitted on.")
    ece_before: float | None = Field(None, description="Expected calibration error of the raw p_fatty (10 bins).")
    ece_after: float | None = Field(None, description="ECE after calibration, cross-fitted over the CV folds.")

    @model_validator(mode="after")
    def _one_coef_per_input(self) -> PlattCalibrator:
        if len(self.coef) != len(self.inputs):
            raise ValueError(f"{len(self.coef)} coefficients for {len(self.inputs)} inputs")
        return self


class PdffInterval(_Contract):
    """Split-conformal interval for PDFF from out-of-fold residuals, symmetric in log(1 + PDFF)."""

    coverage: float = Field(gt=0, lt=1, description="Nominal coverage, e.g. 0.9.")
    space: Literal["log1p"] = "log1p"
    halfwidth: float = Field(ge=0, description="Half-width in log1p(PDFF %) units.")
    subjects: int = Field(ge=2)
    cv_coverage: float | None = Field(None, description="Cross-fitted coverage on the run's own subjects.")


class ExamCalibration(_Contract):
    """What turns per-pair outputs into a calibrated exam answer (docs/DESIGN.md, 'The exam-level answer')."""

    p_fatty: PlattCalibrator | None = None
    pdff_interval: PdffInterval | None = None
    fatty_pdff: float = Field(FATTY_PDFF, gt=0, description="The PDFF line (%) the call and PDFF are checked against.")
    discordance: dict[str, float] = Field(
        default_factory=dict, description="CV shares of subjects whose call and PDFF disagree about the line."
    )


class ScannerSpec(_Contract):
    """A scanner profile as runs and bundles record it: where the B-mode image sits on that screen."""

    vendor: str
    screen: tuple[int, int] | None = Field(None, description="Screen width, height in pixels (none: full-frame).")
    crop: tuple[int, int, int, int] | Literal["full-frame", "dicom-region"] = Field(
        description="B-mode box x, y, width, height on that screen; full-frame (already cropped images) or "
        "dicom-region (each DICOM file's own ultrasound region)."
    )

    @model_validator(mode="after")
    def _screen_with_a_box(self) -> ScannerSpec:
        if isinstance(self.crop, tuple) and self.screen is None:
            raise ValueError("a crop box needs the screen size it sits on")
        return self


class ExportSettings(_Contract):
    """Every knob of ``trainer export``, recorded in the bundle so anyone can redo it."""

    int8: bool = Field(True, description="Full-integer int8 encoder (--float ships the float32 encoder).")
    calibration_subjects: int | None = Field(None, ge=1, description="Default: holdout_share of the subjects.")
    fidelity_subjects: int | None = Field(None, ge=1, description="Default: holdout_share of the subjects.")
    holdout_share: float = Field(
        HOLDOUT_SHARE,
        gt=0,
        lt=0.5,
        description="Share held out for each of the two groups (runs that predate split.json).",
    )
    representative_samples: int = Field(
        REPRESENTATIVE_SAMPLES, ge=8, description="Calibration images and their augmented variants."
    )
    epochs: int | None = Field(None, ge=1, description="Final head epochs; default: the run's validated epochs.")
    version: str = Field("1.0.0", pattern=SEMVER_PATTERN, description="Bundle version, semver.")
    name: str | None = Field(None, description="Bundle name; default: the output folder's name.")
    debugger: bool = Field(True, description="Run TensorFlow Lite's quantization debugger (per-layer error).")
    debugger_images: int = Field(8, ge=1, description="Representative images the debugger runs on.")
    allow_fidelity_miss: bool = Field(False, description="Write the bundle and exit 0 even if bars are missed.")
    qat: bool = Field(False, description="Quantization-aware fine-tuning of the head on int8 features (tfmot).")
    qat_epochs: int = Field(100, ge=1, description="Epochs of the quantization-aware fine-tuning.")
    qat_images: int = Field(400, ge=8, description="Training (subject, augmentation) images encoded for --qat.")
    fidelity_manifest: str | None = Field(None, description="An independent labelled cohort judged too.")
    decision_threshold: float = Field(
        P_FATTY_THRESHOLD, gt=0, lt=1, description="p_fatty at or above which the call is fatty."
    )

    @model_validator(mode="after")
    def _qat_needs_int8(self) -> ExportSettings:
        if self.qat and not self.int8:
            raise ValueError("--qat fine-tunes the head on int8 features; it needs --int8")
        return self


class ViewGateSpec(_Contract):
    """The view head: which of VIEW_CLASSES a frame shows, from the shared encoder's features."""

    classes: tuple[str, str, str] = VIEW_CLASSES
    feature_pooling: Literal["none", "grid2"] = Field(
        "none",
        description="How the head pools the encoder's features (edge_runtime.gate.view_features); "
        "absent in older bundles: none.",
    )
    confidence_floor: float = Field(ge=0, le=1, description="Frames below it are not paired (gate_rejected).")
    cv_confusion: list[list[int]] = Field(description="Subject-level CV: rows true class, columns predicted.")
    cv_recall: dict[str, float] = Field(description="Per class, share of its frames predicted as it (CV).")
    cv_other_admitted: float = Field(ge=0, le=1, description="Share of other frames paired at the floor (CV).")
    cv_view_swapped: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Share of view frames filed under the other view at the floor (CV); "
        "absent in bundles from before the floor counted it.",
    )
    frames: dict[str, int] = Field(description="Training frames per class.")
    meets_bar: bool = Field(
        description="CV view recall >= 99 % and other admitted <= 1 %. When false the gate still sorts 'auto' "
        "frames, but a frame that names its view keeps it (view_authority acts as 'header')."
    )

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, classes: tuple[str, ...]) -> tuple[str, ...]:
        if tuple(classes) != VIEW_CLASSES:
            raise ValueError(f"view classes {list(classes)}, this runtime knows {list(VIEW_CLASSES)}")
        return classes


SPECKLE_STATISTICS = ("across", "down")  # edge_runtime.gate.speckle_texture: lag-1 speckle autocorrelation


class SpeckleGuardSpec(_Contract):
    """The guard's speckle part: how far a frame's speckle texture lies from the training frames' of its view."""

    statistics: tuple[str, ...] = Field(SPECKLE_STATISTICS, description="What edge_runtime.gate.speckle_texture gives.")
    method: str = Field(description="How the score is computed (Mahalanobis distance, shrunk covariance).")
    thresholds: dict[View, float] = Field(description="Per view, the distance above which a frame is flagged.")

    @field_validator("statistics")
    @classmethod
    def _known_statistics(cls, statistics: tuple[str, ...]) -> tuple[str, ...]:
        if tuple(statistics) != SPECKLE_STATISTICS:
            raise ValueError(f"speckle statistics {list(statistics)}, this runtime computes {list(SPECKLE_STATISTICS)}")
        return statistics


class GuardSpec(_Contract):
    """The out-of-distribution guard: how far a frame's features (and, since the speckle part, its speckle) lie
    from the training frames of its view."""

    method: str = Field(description="How the score is computed (PCA Mahalanobis distance plus residual).")
    components: int = Field(ge=1)
    false_alarm_target: float = Field(gt=0, lt=1, description="Share of in-distribution frames flagged, by design.")
    thresholds: dict[View, float] = Field(description="Per view, the score above which a frame is flagged.")
    held_out_false_alarm: float | None = Field(
        None, ge=0, le=1, description="Share of the fidelity subjects' frames flagged (never used to fit it)."
    )
    speckle: SpeckleGuardSpec | None = Field(
        None, description="The speckle-texture part; absent in bundles from before it (features and clipping only)."
    )


class BundleMeta(_Contract):
    """bundle.json: what the bedside needs to verify, load and describe a model; its hash is the bundle's id."""

    schema_id: Literal["fatty-liver-edge/bundle@1"] = Field(BUNDLE_SCHEMA, alias="schema")
    name: str = Field(min_length=1)
    version: str = Field(pattern=SEMVER_PATTERN)
    created: dt.datetime
    views: tuple[View, View] = VIEWS
    input: InputSpec = Field(default_factory=InputSpec)
    features: FeatureSpec
    outputs: Outputs
    head_outputs: HeadOutputs
    files: BundleFiles
    quantization: Quantization
    calibration: CalibrationInfo
    training: TrainingInfo
    cv_metrics: CvMetrics
    export: ExportSettings | None = Field(None, description="How the bundle was exported; None in older bundles.")
    exam: ExamCalibration | None = Field(
        None, description="Calibrator and PDFF interval; None in older bundles (the exam then uses raw p_fatty)."
    )
    scanners: dict[str, ScannerSpec] | None = Field(
        None, description="The scanner profiles the model was trained on; frames from others are refused."
    )
    view_gate: ViewGateSpec | None = Field(None, description="None: frames must name their view (no 'auto').")
    guard: GuardSpec | None = Field(None, description="None: no out-of-distribution check.")
    sha256: dict[str, str] = Field(description="SHA-256 of every file in the bundle except bundle.json itself.")

    @field_validator("views")
    @classmethod
    def _served_views(cls, views: tuple[str, str]) -> tuple[str, str]:
        if tuple(views) != VIEWS:
            raise ValueError(f"views {list(views)}, this runtime serves {list(VIEWS)}")
        return views

    @classmethod
    def from_json(cls, raw: bytes, path: Path) -> BundleMeta:
        """Parse and validate bundle.json's bytes; every problem is a BundleError naming the file and the field."""
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{path}: not valid JSON ({exc})") from exc
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        if found != BUNDLE_SCHEMA:
            raise BundleError(f"{path}: schema {found!r} is not {BUNDLE_SCHEMA!r}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise BundleError(f"{path}: {validation_problems(exc)}") from None

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(by_alias=True, indent=2) + "\n")


# -- messages from the runtime (results, metrics, heartbeats) ----------------------------------------------------------
class ModelInfo(Message):
    name: str
    version: str
    sha: str = Field(description="First 16 hex digits of bundle.json's SHA-256 (which pins every file).")


class FrameRef(Message):
    seq: int
    ts: float
    view_confidence: float | None = Field(None, description="The view gate's confidence in this view; None: no gate.")
    out_of_distribution: bool | None = Field(None, description="Beyond the guard's threshold; None: no guard.")


ExamCall = Literal["fatty", "normal", "indeterminate"]


class ExamEstimate(Message):
    """The session's exam so far: recent pairs combined, with intervals, behind a hysteresis."""

    call: ExamCall | None = Field(description="None until enough pairs agree for long enough (see reason).")
    reason: str | None = Field(None, description="Why there is no call, why it is indeterminate, or what it holds.")
    p_fatty: float | None = Field(None, ge=0, le=1, description="Calibrated when `calibrated` is true.")
    p_fatty_interval: tuple[float, float] | None = Field(None, description="90 % interval from the pairs' spread.")
    pdff: float | None = Field(None, description="Trimmed mean of the pairs' PDFF estimates, %.")
    pdff_interval: tuple[float, float] | None = Field(None, description="90 % interval: CV error and pairs' spread.")
    n_pairs: int = Field(0, ge=0)
    stable_since: float | None = Field(None, description="Frame time (unix s) since which the call has held.")
    calibrated: bool = Field(description="False: the bundle has no calibrator and p_fatty is the raw output.")
    discordant: bool = Field(False, description="The call and the PDFF point estimate sit on opposite sides of 5 %.")
    views_seen: list[View] = Field(default_factory=list)


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
    latency_ms: dict[str, float] = Field(description="queue, decode, preprocess, encode, gate, head, end_to_end.")
    exam: ExamEstimate | None = Field(None, description="The session's exam-level answer after this pair.")
    out_of_distribution: bool | None = Field(
        None, description="A paired frame lies outside the training distribution; None: the bundle has no guard."
    )

    @property
    def end_to_end_ms(self) -> float:
        return self.latency_ms.get("end_to_end", float("nan"))


class MetricsMessage(Message):
    v: int = PROTOCOL_VERSION
    ts: float
    counters: dict[str, int]
    rejected: dict[str, int] = Field(description="Malformed or unusable frames by reason.")
    latency_ms: dict[str, dict[str, float]] = Field(description="Per stage: count, p50, p90, p99, p99_9, max, mean.")
    sessions: int
    sessions_expired: int
    pending: int


class HeartbeatMessage(Message):
    v: int = PROTOCOL_VERSION
    ts: float
    uptime_s: float
    model: ModelInfo
    sessions: int
    pending: int
    calibrated: bool | None = Field(None, description="Whether the bundle carries a p_fatty calibrator.")
    validation: str | None = Field(None, description="What the model was validated on, for the display's banner.")
    exams: dict[str, ExamEstimate] = Field(default_factory=dict, description="Active session -> its exam now.")


class ExamRecord(Message):
    """The audit log's last word on a session, written when it ends (TTL or the session cap)."""

    record: Literal["exam_final"] = "exam_final"
    session: str
    ended: float = Field(description="Unix seconds when the runtime closed the session.")
    why: Literal["ttl", "capacity", "shutdown"]
    exam: ExamEstimate
    model: ModelInfo


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
