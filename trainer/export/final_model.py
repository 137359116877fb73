"""Export steps 1-2: check the run can be exported, hold out calibration and fidelity subjects, and train the
final two-output head on everyone else, exactly as the run was validated."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calibration.split import ExportSplit
from clkl.tf_setup import keras
from edge_runtime.contracts import VIEWS
from edge_runtime.model.uncertainty import ensemble_mean
from trainer.config import ExportSettings, TrainConfig
from trainer.crossval import bagged_heads, finetune_fold, fit_head_on_features, predict_outputs, predict_rows, targets
from trainer.dataset import Cohort
from trainer.extraction import extract, run_encoders
from trainer.features import FeatureEncoder, Int8Encoder
from trainer.holdout import export_groups, load_split
from trainer.runs import Run, RunError


def exportable(run: Run, settings: ExportSettings) -> Run:
    """The run, once it is known to make a bedside bundle; RunError says why not."""
    if run.config.views != "clkl":
        raise RunError(f"{run.path} trained views={run.config.views!r}; a bedside bundle needs a CLKL run")
    if run.config.hri:
        raise RunError(f"{run.path} trained its head with the hepatorenal index (--hri), which the bedside head "
                       "does not take: export a run without --hri")  # fmt: skip
    if run.manifest is None or not run.manifest.is_file():
        raise RunError(f"{run.path}: its manifest {run.manifest} is not available")
    if settings.qat and run.config.finetune is not None:
        raise RunError(f"{run.path} is fine-tuned; --qat supports frozen-backbone runs (the paper's CLKL model)")
    if run.config.features == "int8" and (settings.qat or not settings.int8):
        raise RunError(
            f"{run.path} trained its head on the int8 encoder's features: it exports that int8 encoder as is "
            "(no --qat, no --float)"
        )
    return run


def validated_outputs(task: str) -> dict[str, bool]:
    """Which bundle outputs the run's cross-validation actually validated (the bundle always has both)."""
    return {"p_fatty": task in ("classify", "both"), "pdff": task in ("regress", "both")}


def final_config(run: Run, settings: ExportSettings) -> TrainConfig:
    """The final head: both outputs (one backbone pass serves both at the bedside), trained for the epochs the
    run validated (the paper's 500 for a regress run, not the 1000 of a two-output run) unless overridden."""
    return run.config.with_changes(task="both", epochs=settings.epochs or run.config.n_epochs)


def hold_out(cohort: Cohort, run: Run, settings: ExportSettings) -> ExportSplit:
    """The groups the run recorded when it was trained (split.json), or, with explicit sizes, groups drawn anew
    at the run's seed. An int8-feature run must keep its own: its encoder was calibrated on them."""
    explicit = (settings.calibration_subjects, settings.fidelity_subjects)
    if explicit == (None, None):
        return load_split(run.path)
    if run.config.features == "int8":
        raise RunError(f"{run.path}: an int8-feature run exports with the groups its encoder was calibrated on")
    config = run.config
    return export_groups(cohort, config.fatty_threshold, config.seed, config.holdout_share, explicit)


@dataclass
class FinalModel:
    """The float model the bundle is made from, and its answers on the held-out fidelity subjects."""

    config: TrainConfig
    encoders: dict[str, keras.Model]  # view -> float encoder (one shared object for a frozen backbone)
    head: keras.Model
    features: dict[str, np.ndarray] | None  # the head's cached training features (frozen backbone), for --qat
    fidelity_outputs: dict[str, np.ndarray]  # the reference ensemble's p_fatty and pdff of the fidelity subjects
    feature_encoder: FeatureEncoder | None = None  # where the head's features come from (frozen backbone)
    bagged: list[keras.Model] = field(default_factory=list)  # heads bagged on subsamples of the training group

    @property
    def heads(self) -> list[keras.Model]:
        """The ensemble, the head trained on the whole training group first."""
        return [self.head, *self.bagged]

    @property
    def int8_encoder(self) -> Int8Encoder | None:
        """The run's own int8 encoder (--features int8): the bundle ships it as is."""
        return self.feature_encoder if isinstance(self.feature_encoder, Int8Encoder) else None

    def head_outputs(self, features: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The float ensemble's answer (edge_runtime.model.uncertainty.ensemble_mean) on both views' features."""
        x = {f"features_{v}": f for v, f in zip(VIEWS, features, strict=True)}
        return members_answer([predict_outputs(h, x, ("p_fatty", "pdff")) for h in self.heads])

    def reference_features(self, view: str, images: np.ndarray) -> np.ndarray:
        """The features the reference model sees: the float encoder's, or the run's int8 encoder's."""
        if self.int8_encoder is not None:
            return self.int8_encoder.features(self.int8_encoder.encode(images))
        return self.encoders[view].predict(images, batch_size=16, verbose=0)


def train_final_model(
    cohort: Cohort, run: Run, split: ExportSplit, settings: ExportSettings, progress: bool
) -> FinalModel:
    """Train the exported head on the training group; refuses a backbone that is not the run's.

    Args:
        cohort: the run's labelled subjects, preprocessed.
        run: the cross-validated run being exported.
        split: the training, calibration and fidelity groups.
        settings: the export settings (final epochs).
        progress: show progress bars.
    """
    config = final_config(run, settings)
    if run.config.extra.get("federation"):
        return _federated_final(cohort, run, split, config, progress)
    index = {s: i for i, s in enumerate(cohort.ids)}
    train_rows = np.array([index[s] for s in split.train])
    fidelity_rows = np.array([index[s] for s in split.fidelity])
    y = targets(cohort, config.outputs, config.fatty_threshold)
    if config.finetune is not None:
        return _finetuned_final(cohort, config, train_rows, fidelity_rows, y, progress)
    encoders = run_encoders(run)  # refuses a backbone (or int8 encoder) that is not the run's, before extracting
    feats = extract(cohort, config, encoders.features, progress)
    head, _ = fit_head_on_features(feats, y, train_rows, config, config.seed, "final head", progress)
    bagged = bagged_heads(feats, y, train_rows, config, (config.seed, "final bag"), progress)
    fidelity_outputs = members_answer([predict_rows(h, feats, fidelity_rows, config) for h in [head, *bagged]])
    float_encoders = dict.fromkeys(VIEWS, encoders.frozen.model)
    return FinalModel(config, float_encoders, head, feats, fidelity_outputs, encoders.features, bagged)


def members_answer(members: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Each member's p_fatty and pdff -> the ensemble's (one head: its own)."""
    p, pdff = ensemble_mean(np.stack([m["p_fatty"] for m in members]), np.stack([m["pdff"] for m in members]))
    return {"p_fatty": p, "pdff": pdff}


def _federated_final(cohort: Cohort, run: Run, split: ExportSplit, config: TrainConfig, progress: bool) -> FinalModel:
    """A federated run ships the head the federation trained on every site (trainer.federated.run): this box sees
    only the coordinating site's images, which calibrate and judge the int8 encoder as for any run."""
    from clkl.head import load_head
    from trainer.federated.run import FINAL_HEAD

    encoders = run_encoders(run)
    feats = extract(cohort, config, encoders.features, progress)
    head = load_head(run.path / FINAL_HEAD)
    fidelity_rows = np.array([cohort.ids.index(s) for s in split.fidelity])
    fidelity_outputs = members_answer([predict_rows(head, feats, fidelity_rows, config)])
    float_encoders = dict.fromkeys(VIEWS, encoders.frozen.model)
    return FinalModel(config, float_encoders, head, feats, fidelity_outputs, encoders.features, [])


def _finetuned_final(
    cohort: Cohort,
    config: TrainConfig,
    train_rows: np.ndarray,
    fidelity_rows: np.ndarray,
    y: dict[str, np.ndarray],
    progress: bool,
) -> FinalModel:
    """A fine-tuned run exports one encoder per view (each VGG19 branch was trained)."""
    model, predictions, _ = finetune_fold(cohort, train_rows, fidelity_rows, y, config, config.seed, progress)
    encoders = {v: model.get_layer(f"encoder_{v}") for v in VIEWS}
    return FinalModel(config, encoders, model.get_layer("head"), None, predictions)
