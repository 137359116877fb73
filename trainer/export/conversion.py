"""Export step 3: the encoder(s) as TFLite, int8 calibrated on the calibration subjects' images.

The converted encoders are also wrapped in the runtime's own :class:`EncoderModel`, so every later step
(bias correction, QAT, fidelity) computes features exactly the way the bedside will.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from calibration.convert import convert_encoder
from calibration.split import ExportSplit, representative_dataset
from edge_runtime.contracts import VIEWS
from edge_runtime.model.bundle import EncoderModel
from edge_runtime.model.interpreter import ALL_CORES, make_interpreter
from trainer.config import ExportSettings
from trainer.dataset import Cohort
from trainer.export.final_model import FinalModel


@dataclass
class ConvertedEncoders:
    files: dict[str, str]  # view -> file name in the bundle
    blobs: dict[str, bytes]  # file name -> TFLite model
    runners: dict[str, EncoderModel]  # file name -> the bedside's encoder wrapper around that model
    bytes_float: int  # what the same encoder(s) take in float32, for the size bar
    samples: list[np.ndarray]  # the representative dataset the int8 ranges were calibrated on

    @property
    def bytes_bundle(self) -> int:
        return sum(len(b) for b in self.blobs.values())

    def encode(self, view: str, images: Sequence[np.ndarray]) -> np.ndarray:
        """Features of images as the bedside computes them (rows: images)."""
        runner = self.runners[self.files[view]]
        return np.stack([runner.encode(image) for image in images])

    def encode_views(self, images: dict[str, Sequence[np.ndarray]]) -> dict[str, np.ndarray]:
        return {v: self.encode(v, images[v]) for v in VIEWS}


def calibration_samples(cohort: Cohort, final: FinalModel, split: ExportSplit, settings: ExportSettings):
    """The representative dataset: calibration subjects' images (both views) and their augmented variants
    (for an int8-feature run, the very set its encoder was calibrated on at train time).

    Args:
        cohort: the run's preprocessed images.
        final: the exported model (its augmentation, seed, and whether its encoder is already int8).
        split: whose images calibrate.
        settings: the representative dataset's size.
    """
    images = [cohort.image(s, v) for s in split.calibration for v in VIEWS]
    size = final.config.int8_samples if final.int8_encoder is not None else settings.representative_samples
    return representative_dataset(
        images, final.config.augment, size, final.config.seed, final.config.appearance_families
    )


def _runners(blobs: dict[str, bytes]) -> dict[str, EncoderModel]:
    return {n: EncoderModel.from_interpreter(n, make_interpreter(b, num_threads=ALL_CORES)) for n, b in blobs.items()}


def _run_int8_encoder(final: FinalModel, samples: list[np.ndarray]) -> ConvertedEncoders:
    """An int8-feature run ships the encoder it was trained with, byte for byte (no second calibration)."""
    blobs = {"encoder.tflite": final.int8_encoder.model_bytes}
    bytes_float = len(convert_encoder(final.encoders[VIEWS[0]], None, False))
    return ConvertedEncoders(dict.fromkeys(VIEWS, "encoder.tflite"), blobs, _runners(blobs), bytes_float, samples)


def convert_encoders(
    cohort: Cohort, final: FinalModel, split: ExportSplit, settings: ExportSettings, progress: bool
) -> ConvertedEncoders:
    """One file when both views share the frozen encoder, one per view when fine-tuning made two.

    Args:
        cohort: the run's preprocessed images.
        final: the float model being exported.
        split: the calibration group is the representative dataset.
        settings: int8 or float, and the representative dataset's size.
        progress: show progress bars.
    """
    samples = calibration_samples(cohort, final, split, settings)
    if final.int8_encoder is not None:
        return _run_int8_encoder(final, samples)
    shared = len({id(e) for e in final.encoders.values()}) == 1
    files = {v: "encoder.tflite" if shared else f"encoder_{v}.tflite" for v in VIEWS}
    blobs: dict[str, bytes] = {}
    bytes_float = 0
    for view, name in files.items():
        if name in blobs:
            continue
        kind = "int8" if settings.int8 else "float"
        with tqdm(total=1, desc=f"converting {name} ({kind})", disable=not progress) as bar:
            blobs[name] = convert_encoder(final.encoders[view], samples, settings.int8)
            bar.update(1)
        float_blob = convert_encoder(final.encoders[view], None, False) if settings.int8 else blobs[name]
        bytes_float += len(float_blob)
    return ConvertedEncoders(files, blobs, _runners(blobs), bytes_float, samples)
