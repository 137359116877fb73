"""The first stage of a frozen-backbone run: every image's features, from the cache or from the encoder.

``--features float`` (the paper's): the frozen Keras VGG19. ``--features int8``: the int8 TFLite encoder a
bundle will ship, calibrated first on the run's calibration group (:mod:`trainer.int8_encoder`). Either way
the features of every augmented variant are computed once, cached, and shared by every fold, both outputs
and every ablation row that uses the same folds.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calibration.split import ExportSplit
from clkl.augment import Variant
from clkl.encoder import build_encoder, build_vgg19_base, set_trainable, weights_fingerprint
from clkl.tf_setup import keras
from trainer.config import TrainConfig
from trainer.dataset import Cohort
from trainer.features import FeatureCache, FeatureEncoder, FloatEncoder, Int8Encoder
from trainer.int8_encoder import ENCODER_FILE, calibrate_int8_encoder
from trainer.runs import Run, RunError, check_backbone


@dataclass
class FrozenEncoder:
    """The frozen float VGG19 encoder of a configuration and the fingerprint of its weights."""

    model: keras.Model
    weights_id: str


def frozen_encoder(config: TrainConfig) -> FrozenEncoder:
    base = build_vgg19_base(config.weights, config.seed)
    set_trainable(base, None)
    return FrozenEncoder(build_encoder(base, config.pooling), weights_fingerprint(base))


@dataclass
class Extraction:
    features: dict[str, np.ndarray]  # view -> (subjects, variants, features); variant 0 is the identity
    variants: tuple[Variant, ...]
    encoder: FeatureEncoder
    weights_id: str  # the float backbone's fingerprint (the int8 encoder is converted from it)
    timings: dict[str, float] = field(default_factory=dict)

    def for_config(self, config: TrainConfig) -> dict[str, np.ndarray]:
        """The views and augmentation variants a configuration trains on (ablation rows share one extraction)."""
        wanted = config.variant_set
        missing = [v.name for v in wanted if v not in self.variants]
        if missing or any(v not in self.features for v in config.view_names):
            raise RunError(f"shared features lack {config.views} / {missing}: extract for the widest row first")
        columns = [self.variants.index(v) for v in wanted]
        return {v: self.features[v][:, columns] for v in config.view_names}

    def record(self, run_dir: Path) -> dict[str, str]:
        """What a run must remember of its encoder; an int8 encoder's file is saved in the run too."""
        recorded = {"weights_id": self.weights_id}
        if isinstance(self.encoder, Int8Encoder):
            if not (run_dir / ENCODER_FILE).is_file():
                (run_dir / ENCODER_FILE).write_bytes(self.encoder.model_bytes)
            recorded["int8_encoder_sha256"] = self.encoder.sha256
        return recorded


def extract(cohort: Cohort, config: TrainConfig, encoder: FeatureEncoder, progress: bool) -> dict[str, np.ndarray]:
    """View -> (subjects, variants, features) of every augmented variant, through the cache.

    Args:
        cohort: the subjects whose views are encoded.
        config: augmentation, views and cache directory.
        encoder: the float or int8 encoder; its name keys the cache.
        progress: print cache hits and misses.
    """
    cache = FeatureCache(config.cache_dir, encoder)
    chosen = config.variant_set
    feats = {
        view: cache.features([cohort.image(s, view) for s in cohort.ids], chosen, desc=f"features {view}")
        for view in config.view_names
    }
    if progress:
        print(f"feature cache: {cache.hits} hits, {cache.misses} computed ({cache.root})")
    return feats


def run_extraction(
    cohort: Cohort, config: TrainConfig, run_dir: Path, split: ExportSplit, progress: bool
) -> Extraction:
    """Features for a new run: the float encoder's, or (--features int8) the int8 encoder's after calibrating it.

    Args:
        cohort: the run's labelled cohort.
        config: the run's configuration (features, weights, augmentation, cache directory).
        run_dir: where an int8 encoder is saved.
        split: the run's groups (the calibration group calibrates an int8 encoder).
        progress: show progress.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    frozen = frozen_encoder(config)
    encoder: FeatureEncoder = FloatEncoder(frozen.model, frozen.weights_id, config.pooling)
    if config.features == "int8":
        encoder = calibrate_int8_encoder(cohort, config, frozen.model, split, run_dir, progress)
        timings["int8_calibration_s"] = time.perf_counter() - started
    started = time.perf_counter()
    feats = extract(cohort, config, encoder, progress)
    timings["features_s"] = time.perf_counter() - started
    return Extraction(feats, config.variant_set, encoder, frozen.weights_id, timings)


@dataclass
class RunEncoders:
    """A finished run's encoders: the float one (Grad-CAM, conversion) and the one its features came from."""

    frozen: FrozenEncoder
    features: FeatureEncoder


def run_encoders(run: Run) -> RunEncoders:
    """Rebuild a run's encoders and prove they are the ones it was trained with (weights and int8 file hashes)."""
    if run.config.finetune is not None:
        raise RunError(f"{run.path} fine-tuned its backbone; this command supports frozen-backbone runs")
    frozen = frozen_encoder(run.config)
    check_backbone(run, frozen.weights_id)
    if run.config.features == "float":
        return RunEncoders(frozen, FloatEncoder(frozen.model, frozen.weights_id, run.config.pooling))
    path = run.path / ENCODER_FILE
    if not path.is_file():
        raise RunError(f"{run.path} trained on int8 features but its {ENCODER_FILE} is missing")
    blob = path.read_bytes()
    if run.int8_sha256 and hashlib.sha256(blob).hexdigest() != run.int8_sha256:
        raise RunError(f"{path} changed since the run was trained (SHA-256 differs from timings.json)")
    return RunEncoders(frozen, Int8Encoder(blob, run.config.pooling))
