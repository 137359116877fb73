"""bundle.json, schema ``fatty-liver-edge/bundle@1``: what the bedside needs to verify, load and describe a model.

The idea is MONAI's bundle ``meta_schema.json``: typed, described, validated on read. ``docs/schemas/bundle@1.json``
is this model's JSON Schema, and ``bundle@1`` is frozen: a field present now keeps its name, type and meaning, and a
field added later is optional, so a bundle written today still loads (``tests/test_contracts.py`` holds both).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from edge_runtime.contracts.base import StrictModel, validation_problems
from edge_runtime.contracts.constants import (
    FATTY_PDFF,
    INPUT_SHAPE,
    P_FATTY_THRESHOLD,
    SEMVER_PATTERN,
    SPECKLE_STATISTICS,
    VIEW_CLASSES,
    VIEWS,
    Harmonisation,
    TensorDtype,
    View,
)
from edge_runtime.errors import FattyLiverError

BUNDLE_SCHEMA = "fatty-liver-edge/bundle@1"
JsonScalar = str | int | float | bool | None


class BundleError(FattyLiverError):
    """The bundle cannot be trusted or used; the message names the file and the problem."""


class InputSpec(StrictModel):
    shape: tuple[int, int, int] = Field(INPUT_SHAPE, description="Encoder input, height x width x channels.")
    dtype: TensorDtype = Field("uint8", description="Pixels go in as they are (scale 1, zero point 0).")
    resize: Literal["area"] = Field("area", description="OpenCV INTER_AREA, in preprocess_frame.")
    color: Literal["rgb"] = "rgb"
    preprocess: str = "edge_runtime.pipeline.preprocess.preprocess_frame (scanner-profile crop, INTER_AREA)"
    harmonisation: Harmonisation = Field(description="preprocess_frame's last step, as the model was trained.")

    @field_validator("shape")
    @classmethod
    def _served_shape(cls, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        if tuple(shape) != INPUT_SHAPE:
            raise ValueError(f"input shape {list(shape)}, this runtime feeds {list(INPUT_SHAPE)}")
        return shape


class FeatureSpec(StrictModel):
    size: int = Field(gt=0, description="Length of one view's feature vector (25 088 for flatten, 512 for avg).")
    dtype: TensorDtype = Field(description="Encoder output type; int8 is dequantized before the head.")
    pooling: Literal["flatten", "avg"] = Field(description="How VGG19's last map becomes the feature vector.")


class ClassOutput(StrictModel):
    threshold: float = Field(P_FATTY_THRESHOLD, gt=0, lt=1, description="p_fatty at or above which the call is fatty.")
    meaning: str
    validated: bool = Field(description="Whether the run cross-validated this output (a regress run did not).")


class PdffOutput(StrictModel):
    unit: Literal["%"] = "%"
    meaning: str
    validated: bool = Field(description="Whether the run cross-validated this output (a classify run did not).")


class Outputs(StrictModel):
    p_fatty: ClassOutput
    pdff: PdffOutput

    def unvalidated(self) -> list[str]:
        return [name for name, spec in (("p_fatty", self.p_fatty), ("pdff", self.pdff)) if not spec.validated]


class HeadOutputs(StrictModel):
    """TFLite renames outputs, so export records which output tensor index is which answer."""

    p_fatty: int
    pdff: int


class BundleFiles(StrictModel):
    encoder: dict[View, str] = Field(description="One file shared by both views (frozen backbone) or one per view.")
    head: str
    fidelity: str
    gate: str | None = Field(
        None, description="The view gate's and guard's arrays (npz); none when the bundle has neither."
    )

    @field_validator("encoder")
    @classmethod
    def _both_views(cls, encoder: dict[str, str]) -> dict[str, str]:
        missing = [v for v in VIEWS if v not in encoder]
        if missing:
            raise ValueError(f"no encoder file for view(s) {missing}")
        return encoder


class QuantParams(StrictModel):
    scale: float
    zero_point: int


class BiasCorrection(StrictModel):
    images: int = Field(description="Calibration images the int8-minus-float feature bias was measured on.")
    mean_abs_feature_bias: float


class Quantization(StrictModel):
    encoder: str = Field(description="What the encoder is, in words (float32, or int8 and how it was calibrated).")
    input: QuantParams
    output: QuantParams
    head: str = Field(description="What the head is, in words (float32, bias-corrected, quantization-aware).")
    bias_correction: BiasCorrection | None = None
    representative_samples: int = Field(ge=0)


class CalibrationInfo(StrictModel):
    subjects: int = Field(ge=0, description="Subjects whose images calibrated the int8 ranges.")
    subject_id_sha256: str = Field(description="Who calibrated the bundle, without shipping their ids.")
    fidelity_subjects: int = Field(ge=0)
    train_subjects: int = Field(ge=0)
    train_subject_id_sha256: str


class FederationInfo(StrictModel):
    """How a federated run trained (trainer federated): its sites by hashed name, their subjects, the rounds."""

    sites: list[str] = Field(description="Each site's name, hashed (SHA-256 prefix).")
    subjects: dict[str, int] = Field(description="Hashed site -> its labelled subjects.")
    rounds: int = Field(ge=1)
    local_epochs: int = Field(ge=1)
    strategy: str = Field(description="Flower's aggregation: fedavg, fedprox, fedavgm or fedadam.")
    server_optimiser: dict[str, float] = Field(
        default_factory=dict, description="The server optimiser's settings (fedavgm: learning_rate, momentum)."
    )


class TrainingInfo(StrictModel):
    run: str
    weights: str
    weights_id: str | None = Field(description="Fingerprint of the backbone's weights (None: random weights).")
    finetune: str | None
    augment: str
    appearance: str = Field(
        description="Appearance augmentation families the head trained with ('none', 'all' or a list)."
    )
    epochs: int = Field(gt=0, description="Epochs the exported head trained for (the run's validated protocol).")
    task: Literal["classify", "regress", "both"] = Field(description="What the run cross-validated.")
    features: Literal["float", "int8"] = Field(
        description="What the head trained on: the float encoder's features, or the shipped int8 encoder's."
    )
    cohort: Literal["phantom", "clinical"] = Field(
        description="What the model was trained and cross-validated on: phantom screens or clinical images."
    )
    subjects: int = Field(ge=1, description="Subjects in the cross-validated run.")
    federation: FederationInfo | None = Field(None, description="The sites a federated run trained across.")


class CvMetrics(StrictModel):
    task: str
    pooled: dict[str, float | None] | None = None
    ci95: dict[str, list[float] | None] | None = None
    fold_mean_sd: dict[str, list[float] | None] | None = None


class PlattCalibrator(StrictModel):
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


class PdffInterval(StrictModel):
    """Split-conformal interval for PDFF from out-of-fold residuals, symmetric in log(1 + PDFF)."""

    coverage: float = Field(gt=0, lt=1, description="Nominal coverage, e.g. 0.9.")
    space: Literal["log1p"] = "log1p"
    halfwidth: float = Field(ge=0, description="Half-width in log1p(PDFF %) units.")
    subjects: int = Field(ge=2)
    cv_coverage: float | None = Field(None, description="Cross-fitted coverage on the run's own subjects.")


class CrossFittedCoverage(StrictModel):
    """How often a statement covered the truth on the run's own subjects, each judged by calibration fitted on the
    other folds."""

    overall: float
    by_vendor: dict[str, float]
    by_band: dict[str, float] = Field(description="By true PDFF band (<5, 5-10, 10-15, >=15 %).")
    subjects: int


class ClassSets(StrictModel):
    """Conformal class sets on the calibrated p_fatty (edge_runtime.model.uncertainty): a definite call only when one
    class alone reaches the declared coverage."""

    coverage: float = Field(gt=0, lt=1, description="The coverage the bundle declares (and its threshold is at).")
    threshold: float = Field(ge=0, description="Largest 1 - p(class) a class may have and stay in the set.")
    scores: list[float] = Field(
        description="Sorted out-of-fold nonconformity scores, so [runtime.exam] coverage can choose another level."
    )
    method: str
    cv: CrossFittedCoverage | None = Field(None, description="Cross-fitted coverage of the sets.")
    cv_definite_share: float | None = Field(None, description="Share of subjects given a single class (CV).")
    cv_definite_accuracy: float | None = Field(None, description="How many of those single classes were right (CV).")


class CertifiedCalls(StrictModel):
    """Definite calls certified by conformal risk control on the run's cross-fitted subjects (model.uncertainty): a
    call is definite only where at most ``error`` of such calls are wrong, per class."""

    method: str
    error: float = Field(gt=0, lt=1, description="The largest share of wrong definite calls certified, per class.")
    subjects: int = Field(ge=0, description="The calibration subjects it rests on.")
    fatty_threshold: float | None = Field(None, description="Calibrated p_fatty at or above which fatty is definite.")
    normal_threshold: float | None = Field(None, description="Calibrated p_fatty at or below which normal is definite.")
    evidence: list[tuple[float, bool]] = Field(
        description="Each subject's cross-fitted calibrated p_fatty and whether it was fatty, sorted by p: "
        "[runtime.exam] definite_error certifies again from them at the site's level."
    )
    cv_definite_share: float | None = Field(None, description="Share of subjects given a definite call (cross-fitted).")
    cv_error: dict[str, float | None] = Field(
        default_factory=dict, description="Cross-fitted share of wrong definite calls, per class (None: no call)."
    )


class NormalisedPdffInterval(StrictModel):
    """A PDFF interval whose width follows the patient: in log(1 + PDFF), the ensemble's estimate after a linear
    recalibration, plus or minus multiplier x (the ensemble's spread + spread_floor)."""

    coverage: float = Field(gt=0, lt=1)
    multiplier: float = Field(ge=0, description="The conformal quantile of the normalised out-of-fold errors.")
    spread_floor: float = Field(gt=0, description="Added to the spread, so a confident ensemble is not overtrusted.")
    scores: list[float] = Field(description="Sorted out-of-fold normalised errors (another coverage, another q).")
    recalibration: tuple[float, float] = Field(description="(intercept, slope): log estimate -> a + b x log estimate.")
    cv: CrossFittedCoverage | None = None
    cv_median_width: float | None = Field(None, description="Median width of the cross-fitted intervals, pp.")
    band_scores: dict[str, list[float]] | None = Field(
        None,
        description="Per band of the recalibrated estimate (PDFF_BANDS), the sorted normalised errors of the subjects "
        "estimated in it, a band with too few merged with its neighbour: the interval's scale per band (Mondrian).",
    )
    cv_estimates: list[float] | None = Field(
        None, description="Sorted out-of-fold PDFF estimates, %: what drift compares a scanner's recent exams with."
    )


class ExamCalibration(StrictModel):
    """What turns per-pair outputs into a calibrated exam answer (docs/DESIGN.md, 'The exam-level answer')."""

    p_fatty: PlattCalibrator | None = Field(None, description="None: the run did not validate p_fatty (regress).")
    pdff_interval: PdffInterval | None = Field(None, description="None: the run did not validate PDFF (classify).")
    class_sets: ClassSets | None = Field(None, description="Conformal class sets (informative: `definite` decides).")
    definite: CertifiedCalls | None = Field(None, description="Certified definite calls; None: no call is definite.")
    pdff_normalised: NormalisedPdffInterval | None = Field(
        None, description="The patient-specific PDFF interval; None: the constant-width pdff_interval."
    )
    fatty_pdff: float = Field(FATTY_PDFF, gt=0, description="The PDFF line (%) the call and PDFF are checked against.")
    discordance: dict[str, float] = Field(
        default_factory=dict, description="CV shares of subjects whose call and PDFF disagree about the line."
    )


class EnsembleHead(StrictModel):
    file: str
    p_fatty: int = Field(description="Output tensor index of p_fatty.")
    pdff: int = Field(description="Output tensor index of PDFF.")


class EnsembleSpec(StrictModel):
    """The head as a small ensemble: files.head (trained on the training group) and heads bagged on subsamples of
    it; the bundle's answer is their mean, their spread the model's own uncertainty (edge_runtime.model.uncertainty)."""

    method: str
    subsample: float = Field(gt=0, le=1, description="Share of the training subjects each bagged head trained on.")
    heads: list[EnsembleHead] = Field(description="The bagged heads (files.head is the first member).")


class ScannerSpec(StrictModel):
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


class ViewGateSpec(StrictModel):
    """The view head: which of VIEW_CLASSES a frame shows, from the shared encoder's features."""

    classes: tuple[str, str, str] = VIEW_CLASSES
    feature_pooling: Literal["none", "grid2"] = Field(
        description="How the head pools the encoder's features (edge_runtime.model.gate.view_features): 'grid2' for "
        "the flatten encoder's 7x7 map, 'none' for the avg encoder's 512 features."
    )
    confidence_floor: float = Field(ge=0, le=1, description="Frames below it are not paired (gate_rejected).")
    cv_confusion: list[list[int]] = Field(description="Subject-level CV: rows true class, columns predicted.")
    cv_recall: dict[str, float] = Field(description="Per class, share of its frames predicted as it (CV).")
    cv_other_admitted: float = Field(ge=0, le=1, description="Share of other frames paired at the floor (CV).")
    cv_view_swapped: float = Field(
        ge=0, le=1, description="Share of view frames filed under the other view at the floor (CV)."
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


class SpeckleGuardSpec(StrictModel):
    """The guard's speckle part: how far a frame's speckle texture lies from the training frames' of its view."""

    statistics: tuple[str, ...] = Field(
        SPECKLE_STATISTICS, description="What edge_runtime.model.gate.speckle_texture gives."
    )
    method: str = Field(description="How the score is computed (Mahalanobis distance, shrunk covariance).")
    thresholds: dict[View, float] = Field(description="Per view, the distance above which a frame is flagged.")

    @field_validator("statistics")
    @classmethod
    def _known_statistics(cls, statistics: tuple[str, ...]) -> tuple[str, ...]:
        if tuple(statistics) != SPECKLE_STATISTICS:
            raise ValueError(f"speckle statistics {list(statistics)}, this runtime computes {list(SPECKLE_STATISTICS)}")
        return statistics


class GuardSpec(StrictModel):
    """The out-of-distribution guard: how far a frame's features and speckle lie from the training frames of its
    view (clipping is a rule and needs no fit)."""

    method: str = Field(description="How the score is computed (PCA Mahalanobis distance plus residual).")
    components: int = Field(ge=1)
    false_alarm_target: float = Field(gt=0, lt=1, description="Share of in-distribution frames flagged, by design.")
    thresholds: dict[View, float] = Field(description="Per view, the score above which a frame is flagged.")
    held_out_false_alarm: float | None = Field(
        None, ge=0, le=1, description="Share of the fidelity subjects' frames flagged (None: no fidelity subjects)."
    )
    speckle: SpeckleGuardSpec | None = Field(
        None, description="The speckle-texture part; none when fewer subjects than it needs were fitted."
    )
    scanner_centres: dict[str, int] = Field(
        default_factory=dict,
        description="Consoles a site adaptation centred the guard on (scanner profile -> local frames per view): "
        "their frames are measured from their own mean, on the same spread and thresholds, widened by at most "
        "2x for the console's own spread.",
    )


SiteMetric = Literal[
    "auc",
    "recall",
    "specificity",
    "balanced_accuracy",
    "r2",
    "mae",
    "abs_bias",
    "interval_coverage",
    "guard_share",
    "view_agreement",
]


class AcceptanceCriteria(StrictModel):
    """What a site's own labelled subjects must show before the bundle is used there (`trainer site-check`).
    Export derives them from the bundle's cross-validation (trainer.site.criteria); a site may give its own."""

    min_subjects: int = Field(20, ge=2, description="Fewer labelled local subjects: no verdict.")
    minimum: dict[SiteMetric, float] = Field(description="Each metric must be at least this.")
    maximum: dict[SiteMetric, float] = Field(description="Each metric must be at most this.")
    derived_from: str = Field(description="Where the bounds come from, in words.")


class SiteAdaptation(StrictModel):
    """How a bundle was adapted to one site (`trainer site-adapt`): from which parent, on what, with what result.
    Every `after` figure is nested: each local subject scored by an adaptation fitted without it."""

    site: str = Field(min_length=1)
    parent: str = Field(description="The parent bundle's name and version.")
    parent_sha256: str = Field(description="SHA-256 of the parent's bundle.json.")
    date: dt.datetime
    labelled_subjects: int = Field(ge=0)
    unlabelled_subjects: int = Field(ge=0)
    subject_id_sha256: list[str] = Field(description="SHA-256 of each local subject id (no ids leave the site).")
    adapted: list[str] = Field(description="What was refitted, e.g. model_error, guard, scanners.")
    before: dict[str, float | None] = Field(description="The parent bundle on the local subjects.")
    after: dict[str, float | None] = Field(description="The adaptation on the local subjects, nested CV.")
    criteria: AcceptanceCriteria | None = None
    passed: bool | None = Field(description="`after` meets the criteria; None: no labels to judge by.")
    note: str = Field("", description="What the adaptation can and cannot be trusted for, in words.")


class BundleMeta(StrictModel):
    """bundle.json: what the bedside needs to verify, load and describe a model; its hash is the bundle's id.
    Frozen once built: export assembles every part first, then builds this once."""

    model_config = ConfigDict(frozen=True)

    schema_id: Literal["fatty-liver-edge/bundle@1"] = Field(BUNDLE_SCHEMA, alias="schema")
    name: str = Field(min_length=1)
    version: str = Field(pattern=SEMVER_PATTERN)
    created: dt.datetime
    views: tuple[View, View] = VIEWS
    input: InputSpec
    features: FeatureSpec
    outputs: Outputs
    head_outputs: HeadOutputs
    files: BundleFiles
    quantization: Quantization
    calibration: CalibrationInfo
    training: TrainingInfo
    cv_metrics: CvMetrics
    export: dict[str, JsonScalar] = Field(
        description="The trainer's export settings as given (trainer.export.settings.ExportSettings), so anyone "
        "can redo the export; the bedside does not read them."
    )
    exam: ExamCalibration
    scanners: dict[str, ScannerSpec] = Field(
        description="The scanner profiles the model was trained on; frames from others are refused."
    )
    view_gate: ViewGateSpec | None = Field(None, description="None: frames must name their view (no 'auto').")
    guard: GuardSpec | None = Field(None, description="None: no out-of-distribution check (one encoder per view).")
    ensemble: EnsembleSpec | None = Field(None, description="None: files.head alone (no spread: no model error).")
    acceptance: AcceptanceCriteria | None = Field(
        None, description="A site's acceptance test (`trainer site-check`); None: the run had no CV figures to set it."
    )
    site: SiteAdaptation | None = Field(None, description="None: the bundle is as trained (not site-adapted).")
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
