"""Run configuration: the paper's protocol as defaults, every knob overridable, validated, saved with every run.

This is the single source of the training defaults and choices: ``trainer train`` and ``trainer ablate`` build
their options from these fields (default, allowed values and help text), so a default changes in one place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from clkl.appearance import FAMILIES, KEPT_FAMILIES, look_names
from clkl.augment import Variant, variants
from clkl.minmax import SPAN_FLOOR
from edge_runtime.contracts import (
    DEFINITE_ERROR,
    FATTY_PDFF,
    P_FATTY_THRESHOLD,
    SEMVER_PATTERN,
    Harmonisation,
    StrictModel,
    View,
    validation_problems,
)
from edge_runtime.errors import ConfigError

VIEW_SETS: dict[str, tuple[View, ...]] = {
    "clkl": ("liver", "kidney_liver"),
    "liver": ("liver",),
    "kidney_liver": ("kidney_liver",),
}
PAPER_EPOCHS = {"classify": 1000, "regress": 500, "both": 1000}
HOLDOUT_SHARE = 0.12  # share of a run's subjects in each of its calibration and fidelity groups
REPRESENTATIVE_SAMPLES = 300  # images (and augmented variants) an int8 encoder is calibrated on
FINETUNE_CHOICES = ("all", "block1", "block2", "block3", "block4", "block5")
FEDERATION_STRATEGIES = ("fedavgm", "fedavg", "fedprox", "fedadam")  # trainer.federated.aggregation
FEDERATED_EPOCHS = 50  # local epochs per round: 20 rounds of 50 are the paper's 1000 epochs
PERSONAL_EPOCHS = 0  # off: fine-tuning at the paper's learning rate does not beat a site's own head (DESIGN.md)


def appearance_families(value: str) -> tuple[str, ...]:
    """'none' -> (), 'all' -> every family, 'gain,tgc' -> ('gain', 'tgc'); an unknown family is a ValueError."""
    if value in ("", "none"):
        return ()
    families = tuple(FAMILIES) if value == "all" else tuple(dict.fromkeys(f.strip() for f in value.split(",")))
    look_names(families)
    return families


HRI_SCALAR = "hri"  # the head's one-number input for the hepatorenal index (trainer.hri_input)


class TrainConfig(StrictModel):
    """One cross-validated configuration (Kim et al. 2021 defaults)."""

    views: Literal["clkl", "liver", "kidney_liver"] = Field("clkl", description="Which views feed the model.")
    task: Literal["classify", "regress", "both"] = Field(
        "classify", description="classify: PDFF >= threshold (sigmoid); regress: PDFF (linear); both: two outputs."
    )
    weights: str = Field("imagenet", description="imagenet | none | PATH to VGG19 no-top .h5")
    augment: Literal["paper", "light", "none"] = Field(
        "paper", description="paper: 39 rotation/flip variants; light: 4; none: the image only."
    )
    appearance: str = Field(
        ",".join(KEPT_FAMILIES),
        description="Appearance augmentation families (clkl.appearance), comma-separated, 'all' or 'none': "
        "looks of scanners and operators (gain, tgc, grey_map, dynamic_range, speckle, noise, zoom, jpeg). "
        "The default six add 12 variants per image (docs/DESIGN.md, 'Across scanners').",
    )
    harmonisation: Harmonisation = Field(
        "sector_median",
        description="Scanner harmonisation, preprocess_frame's last step (the bundle records it, so the bedside "
        "does the same): sector_median scales grey levels so the sector's median echo sits at one level.",
    )
    epochs: int | None = Field(None, ge=1, description="Default: 1000 classify, 500 regress, 1000 both.")
    finetune: str | None = Field(None, description="Unfreeze the backbone: 'all' or from a block (block1..block5).")
    hri: bool = Field(
        False,
        description="Give the head the kidney-liver image's hepatorenal index beside the features (evaluation: "
        "ablate and transfer compare it; export refuses it, the bedside head takes features only).",
    )
    pooling: Literal["flatten", "avg"] = Field("flatten", description="How the last VGG19 feature map is flattened.")
    folds: int = Field(5, ge=2, le=20, description="Subject-level cross-validation folds.")
    seed: int = 0
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD with Nesterov momentum, as in the paper.")
    strategy: Literal["auto", "default", "mirrored", "multiworker"] = Field(
        "auto", description="tf.distribute strategy; auto mirrors across GPUs when there are several."
    )
    cache_dir: str = Field(".cache/features", description="Frozen-feature cache.")
    fatty_threshold: float = Field(FATTY_PDFF, gt=0, lt=100, description="MRI-PDFF (%) that defines fatty.")
    minmax_floor: float = Field(
        SPAN_FLOOR, ge=0, lt=1, description="Feature MinMax range floor, share of the median range (0 = paper)."
    )
    bootstrap: int = Field(1000, ge=10, description="Bootstrap resamples for the 95 % CIs.")
    features: Literal["float", "int8"] = Field(
        "float",
        description="float: the Keras VGG19's features (the paper's); int8: the bundle's int8 encoder's, calibrated "
        "first on the run's calibration group.",
    )
    int8_samples: int = Field(
        REPRESENTATIVE_SAMPLES, ge=8, description="--features int8: images the int8 encoder is calibrated on."
    )
    holdout_share: float = Field(
        HOLDOUT_SHARE,
        gt=0,
        lt=0.5,
        description="Share of subjects in each of the calibration and fidelity groups.",
    )
    profiles: str | None = Field(
        None, description="Scanner profiles file (JSON or TOML) for the manifest's scanners, added to the shipped ones."
    )
    ensemble: int = Field(
        4,
        ge=0,
        le=16,
        description="Heads bagged on subsamples beside each head (per fold in CV, and in the bundle): their spread "
        "is the model's own uncertainty, from which the exam's class sets and PDFF intervals are calibrated.",
    )
    ensemble_subsample: float = Field(
        0.8, gt=0.3, lt=1, description="Share of training subjects each bagged head sees."
    )
    class_coverage: float = Field(
        0.95,
        gt=0.5,
        lt=1,
        description="Coverage of the exam's conformal class sets (stated beside a call; definite_error decides it).",
    )
    definite_error: float = Field(
        DEFINITE_ERROR,
        gt=0,
        lt=0.5,
        description="The largest share of wrong definite calls, per class, that the run must certify before any call "
        "is definite (Learn-then-Test on the cross-fitted subjects; [runtime.exam] definite_error may ask more).",
    )
    head_loop: Literal["kernel", "keras"] = Field(
        "kernel",
        description="How the frozen-backbone head trains: kernel (the same SGD in kernel form, fast) or keras (fit).",
    )
    extra: dict[str, Any] = Field(default_factory=dict, description="Provenance: the manifest path, etc.")

    @field_validator("finetune")
    @classmethod
    def _known_depth(cls, value: str | None) -> str | None:
        if value is not None and value not in FINETUNE_CHOICES:
            raise ValueError(f"finetune takes 'all' or one of block1..block5, got {value!r}")
        return value

    @field_validator("appearance")
    @classmethod
    def _known_families(cls, value: str) -> str:
        appearance_families(value)  # raises, naming the unknown family
        return value

    @model_validator(mode="after")
    def _hri_needs_the_kidney_and_features(self) -> TrainConfig:
        if self.hri and ("kidney_liver" not in self.view_names or self.finetune is not None):
            got = f"views {self.views}, finetune {self.finetune}"
            raise ValueError(f"hri needs the kidney-liver view and a frozen backbone (views clkl or kidney_liver, no "
                             f"finetune); got {got}")  # fmt: skip
        return self

    @property
    def appearance_families(self) -> tuple[str, ...]:
        return appearance_families(self.appearance)

    @property
    def variant_set(self) -> tuple[Variant, ...]:
        """Every training variant: the geometric set of `augment`, then one per appearance look."""
        return variants(self.augment, self.appearance_families)

    @property
    def view_names(self) -> tuple[View, ...]:
        return VIEW_SETS[self.views]

    @property
    def head_scalars(self) -> tuple[str, ...]:
        """The head's one-number inputs after the views' features (trainer.hri_input)."""
        return (HRI_SCALAR,) if self.hri else ()

    @property
    def n_epochs(self) -> int:
        return self.epochs if self.epochs is not None else PAPER_EPOCHS[self.task]

    @property
    def outputs(self) -> tuple[str, ...]:
        return {"classify": ("p_fatty",), "regress": ("pdff",), "both": ("p_fatty", "pdff")}[self.task]

    @property
    def threshold_text(self) -> str:
        return f"PDFF >= {self.fatty_threshold:g} %"

    def with_changes(self, **changes: Any) -> TrainConfig:
        """A validated copy with some fields changed (ablation rows, the export's final head)."""
        return build_config(**{**self.model_dump(), **changes})

    def save(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2))

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        except ValidationError as exc:
            raise ConfigError(f"{path}: {validation_problems(exc)}") from None


class ExportSettings(StrictModel):
    """Every knob of ``trainer export``; its options are built from these fields and bundle.json records them."""

    int8: bool = Field(True, description="Full-integer int8 encoder (--float ships the float32 encoder).")
    calibration_subjects: int | None = Field(
        None, ge=1, description="Draw the calibration group anew with this many subjects (default: the run's)."
    )
    fidelity_subjects: int | None = Field(
        None, ge=1, description="Draw the fidelity group anew with this many subjects (default: the run's)."
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


def build_config(**fields: Any) -> TrainConfig:
    """TrainConfig from keyword fields; a ConfigError lists every bad field at once."""
    try:
        return TrainConfig(**fields)
    except ValidationError as exc:
        raise ConfigError(f"training configuration: {validation_problems(exc)}") from None
