"""Export step 4: the head the bundle ships, corrected for the int8 encoder, converted to TFLite.

With an int8 encoder the float head is first bias-corrected (the int8 encoder's systematic feature error,
measured on the calibration images, is removed in the head's MinMax layer); with ``--qat`` it is then
fine-tuned under fake-quantization on int8 features. TFLite renames outputs, so the converted head's output
tensors are matched to ``p_fatty`` and ``pdff`` by probing them against the Keras head.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from calibration.bias_correction import feature_bias, shift_head_inputs
from calibration.convert import convert_head
from calibration.qat import convert_qat_head, quantization_aware_head
from clkl.augment import apply_variant
from clkl.tf_setup import keras
from edge_runtime.contracts import VIEWS, BiasCorrection
from edge_runtime.model.bundle import head_input_indices
from edge_runtime.model.interpreter import ALL_CORES, make_interpreter
from edge_runtime.model.uncertainty import ensemble_mean
from trainer.config import ExportSettings
from trainer.dataset import Cohort
from trainer.export.conversion import ConvertedEncoders
from trainer.export.final_model import FinalModel

OUTPUTS = ("p_fatty", "pdff")


class ExportError(RuntimeError):
    """Export produced something inconsistent (a bug, not bad input): stop before writing a bundle."""


class HeadKind(StrEnum):
    """What the shipped head is: the float head as trained, corrected for an int8 encoder, trained on the int8
    encoder's own features, or fine-tuned quantization-aware."""

    FLOAT = "float32"
    BIAS_CORRECTED = "float32, bias-corrected for the int8 encoder"
    INT8_FEATURES = "float32, trained on the int8 encoder's own features (--features int8)"
    QUANTIZATION_AWARE = "quantization-aware"


@dataclass
class BedsideHead:
    """One shipped head, converted to TFLite."""

    blob: bytes
    interpreter: Any
    inputs: dict[str, int]  # view -> input tensor index
    outputs: dict[str, int]  # output name -> tensor index

    def run(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """p_fatty and pdff for every row of the features, through the TFLite head."""
        out: dict[str, list[float]] = {name: [] for name in OUTPUTS}
        for i in range(len(features[VIEWS[0]])):
            for view, index in self.inputs.items():
                self.interpreter.set_tensor(index, features[view][i : i + 1].astype(np.float32))
            self.interpreter.invoke()
            for name, index in self.outputs.items():
                out[name].append(float(self.interpreter.get_tensor(index).reshape(-1)[0]))
        return {k: np.asarray(v) for k, v in out.items()}


def _feature_bias(final: FinalModel, encoders: ConvertedEncoders) -> tuple[list[np.ndarray], BiasCorrection]:
    """The int8 encoder's mean feature error per view, measured on the calibration images."""
    stacked = np.stack(encoders.samples)
    bias = {}
    for view, name in encoders.files.items():
        if name not in bias:
            float_features = final.encoders[view].predict(stacked, batch_size=16, verbose=0)
            bias[name] = feature_bias(float_features, encoders.encode(view, encoders.samples))
    mean_bias = float(np.mean([np.abs(b).mean() for b in bias.values()]))
    return [bias[encoders.files[v]] for v in VIEWS], BiasCorrection(
        images=len(encoders.samples), mean_abs_feature_bias=mean_bias
    )


def _qat_pairs(cohort: Cohort, final: FinalModel, train_ids: list[str], cap: int) -> list[tuple[str, int]]:
    """(training subject, augmentation variant) pairs for --qat, at most cap of them."""
    pairs = [(s, k) for s in train_ids for k in range(len(final.config.variant_set))]
    if len(pairs) > cap:
        keep = np.random.default_rng(final.config.seed).permutation(len(pairs))[:cap]
        pairs = [pairs[i] for i in sorted(keep)]
    return pairs


def _quantization_aware(
    head: keras.Model, cohort: Cohort, final: FinalModel, encoders: ConvertedEncoders, train_ids: list[str], settings
) -> tuple[keras.Model, int]:
    """Fine-tune the corrected head on int8 features, distilling the float model's outputs on the same images;
    returns the head and how many (subject, variant) images it was fine-tuned on."""
    chosen = final.config.variant_set
    pairs = _qat_pairs(cohort, final, train_ids, settings.qat_images)
    index = {s: i for i, s in enumerate(cohort.ids)}
    int8_features = [
        encoders.encode(v, [apply_variant(cohort.image(s, v), chosen[k]) for s, k in pairs]) for v in VIEWS
    ]
    float_features = [np.stack([final.features[v][index[s], k] for s, k in pairs]) for v in VIEWS]
    teacher = final.head.predict(float_features, batch_size=256, verbose=0)
    config = final.config
    tuned = quantization_aware_head(
        head,
        int8_features,
        teacher,
        settings.qat_epochs,
        config.learning_rate,
        config.momentum,
        config.batch_size,
        config.seed,
    )
    return tuned, len(pairs)


def output_mapping(interpreter: Any, inputs: dict[str, int], keras_head: keras.Model, probe: dict) -> dict[str, int]:
    """Match the TFLite head's output tensors to names by running one probe through both heads.

    Args:
        interpreter: the converted head's interpreter.
        inputs: view -> its input tensor index.
        keras_head: the head it was converted from.
        probe: view -> features (the first row is used).
    """
    for view, index in inputs.items():
        interpreter.set_tensor(index, probe[view][:1].astype(np.float32))
    interpreter.invoke()
    raw = keras_head([probe[v][:1].astype(np.float32) for v in VIEWS], training=False)  # no tf.function per head
    expected = [np.asarray(r) for r in raw]
    mapping = {}
    for name, value in zip(OUTPUTS, expected, strict=True):
        diffs = {
            d["index"]: float(np.abs(interpreter.get_tensor(d["index"]).reshape(-1)[0] - value.reshape(-1)[0]))
            for d in interpreter.get_output_details()
        }
        mapping[name] = min(diffs, key=diffs.get)
    if len(set(mapping.values())) != len(OUTPUTS):
        raise ExportError("could not tell the head's p_fatty and pdff outputs apart")
    return mapping


@dataclass
class BedsideEnsemble:
    """The heads the bundle ships: its answer is their mean (edge_runtime.model.uncertainty.ensemble_mean)."""

    members: list[BedsideHead]  # the head on the whole training group first, then the bagged ones
    kind: HeadKind
    description: str
    bias: BiasCorrection | None

    def run(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = [m.run(features) for m in self.members]
        p, pdff = ensemble_mean(np.stack([o["p_fatty"] for o in outputs]), np.stack([o["pdff"] for o in outputs]))
        return {"p_fatty": p, "pdff": pdff}


def bedside_head(
    cohort: Cohort,
    final: FinalModel,
    encoders: ConvertedEncoders,
    train_ids: list[str],
    settings: ExportSettings,
    progress: bool,
) -> BedsideEnsemble:
    """The shipped heads: float, bias-corrected for an int8 encoder; with --qat the first one quantization-aware
    (the bagged ones stay bias-corrected float: their spread, not their rounding, is what they are for).

    Args:
        cohort: the run's preprocessed images (QAT encodes training images in int8).
        final: the float model being exported.
        encoders: the converted encoders (bias and QAT features come from them).
        train_ids: the export's training subjects.
        settings: int8 and --qat settings.
        progress: show progress bars.
    """
    heads, kind, bias = final.heads, HeadKind.FLOAT, None
    if final.int8_encoder is not None:
        kind = HeadKind.INT8_FEATURES
    elif settings.int8:
        shifts, bias = _feature_bias(final, encoders)
        heads = [shift_head_inputs(h, shifts) for h in heads]
        kind = HeadKind.BIAS_CORRECTED
    description = str(kind)
    if settings.qat:
        desc = f"quantization-aware head ({settings.qat_epochs} epochs)"
        with tqdm(total=1, desc=desc, disable=not progress) as bar:
            heads[0], n_pairs = _quantization_aware(heads[0], cohort, final, encoders, train_ids, settings)
            bar.update(1)
        kind = HeadKind.QUANTIZATION_AWARE
        description = (
            f"quantization-aware fine-tuned on {n_pairs} int8 feature pairs; p_fatty output layer int8, "
            "the PDFF branch and the wide Dense(10) layers float32"
        )
    probe = encoders.encode_views({v: [cohort.image(cohort.ids[0], v)] for v in VIEWS})
    members = [_converted(h, settings.qat and k == 0, probe) for k, h in enumerate(heads)]
    if len(members) > 1:
        description += f"; an ensemble of {len(members)} heads ({len(members) - 1} bagged on subsamples)"
    return BedsideEnsemble(members, kind, description, bias)


def _converted(head: keras.Model, quantization_aware: bool, probe: dict[str, np.ndarray]) -> BedsideHead:
    """One head as TFLite, its outputs matched to p_fatty and pdff."""
    blob = convert_qat_head(head) if quantization_aware else convert_head(head)
    interpreter = make_interpreter(blob, ALL_CORES)
    inputs = head_input_indices(interpreter, Path("head.tflite"))
    outputs = output_mapping(interpreter, inputs, head, probe)
    return BedsideHead(blob, interpreter, inputs, outputs)
