"""`trainer train --features int8`: calibrate the bedside's int8 encoder first, then train on its features.

The int8 encoder is converted from the run's frozen float encoder with the calibration group's images as the
representative dataset (the same recipe export uses), saved in the run as ``encoder_int8.tflite``, and every
training feature is extracted through it. Export then ships exactly this file: the head has been trained on
the numbers the bedside computes, so there is no float/int8 gap left to correct.
"""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from calibration.convert import convert_encoder
from calibration.split import ExportSplit, representative_dataset
from clkl.tf_setup import keras
from edge_runtime.contracts import VIEWS
from trainer.config import TrainConfig
from trainer.dataset import Cohort
from trainer.features import Int8Encoder

ENCODER_FILE = "encoder_int8.tflite"


def calibrate_int8_encoder(
    cohort: Cohort, config: TrainConfig, float_encoder: keras.Model, split: ExportSplit, run_dir: Path, progress: bool
) -> Int8Encoder:
    """Convert the frozen encoder to int8 on the calibration subjects' images; saves it in the run.

    Args:
        cohort: the run's preprocessed images.
        config: pooling, augmentation, seed and the representative dataset's size.
        float_encoder: the frozen float encoder being converted.
        split: the run's groups (the calibration group calibrates).
        run_dir: where encoder_int8.tflite is written.
        progress: show progress.
    """
    images = [cohort.image(s, v) for s in split.calibration for v in VIEWS]
    samples = representative_dataset(
        images, config.augment, config.int8_samples, config.seed, config.appearance_families
    )
    with tqdm(total=1, desc=f"calibrating the int8 encoder ({len(samples)} images)", disable=not progress) as bar:
        blob = convert_encoder(float_encoder, samples, int8=True)
        bar.update(1)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ENCODER_FILE).write_bytes(blob)
    return Int8Encoder(blob, config.pooling)
