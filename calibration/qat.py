"""Quantization-aware fine-tuning of the head with tensorflow-model-optimization (``trainer export --qat``).

Post-training quantization leaves the head trained on float features while the bedside feeds it int8
ones. ``--qat`` fine-tunes the head on what the bedside will really see: the int8 encoder's features of
the training subjects' images, with tfmot's fake-quantization on the classification branch. Only layers
whose input tfmot quantizes convert to int8: the branch's Dense(10) -> Dense(1) output. Two parts stay
float32 on purpose. The wide Dense(10) layers: their input is the MinMax-scaled feature vector, and rounding
those 50 176 values to 8 bits again would add back the very noise this step is there to absorb. The PDFF
branch: PDFF is open-ended, and an int8 output range learnt from the training subjects silently capped an
independent phantom subject at 13.5 % (float model 24.8 %). The targets are the float model's own
outputs on the same images (distillation), because the goal is agreement with the float model, not a new
model: the clinical validation (the cross-validation report) belongs to the float model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from calibration.convert import convert_quietly
from clkl.tf_setup import keras, tf


def _tfmot():
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError as exc:  # pragma: no cover - part of the [train] extra
        raise RuntimeError("--qat needs tensorflow-model-optimization (pip install -e '.[train]')") from exc
    return tfmot


def quantization_aware_head(
    head: keras.Model,
    int8_features: Sequence[np.ndarray],
    teacher_outputs: Sequence[np.ndarray],
    epochs: int,
    learning_rate: float,
    momentum: float,
    batch_size: int,
    seed: int,
) -> keras.Model:
    """Fine-tune a copy of ``head`` (classification layers fake-quantized) so that on int8 features it

    reproduces the float model's outputs. Inputs follow the head's inputs; outputs follow the head's outputs.

    Args:
        head: the (bias-corrected) float head.
        int8_features: per view, int8 encoder features of the training images.
        teacher_outputs: the float model's outputs on the same images (the targets).
        epochs: fine-tuning epochs.
        learning_rate: SGD learning rate (the paper's).
        momentum: Nesterov momentum.
        batch_size: batch size.
        seed: shuffling seed.
    """
    qat = _tfmot().quantization.keras

    def annotate(layer: keras.layers.Layer) -> keras.layers.Layer:
        clone = layer.__class__.from_config(layer.get_config())
        quantize = isinstance(layer, keras.layers.Dense) and layer.name.startswith("p_fatty")
        return qat.quantize_annotate_layer(clone) if quantize else clone

    annotated = keras.models.clone_model(head, clone_function=annotate)
    annotated.set_weights(head.get_weights())
    with qat.quantize_scope():
        model = qat.quantize_apply(annotated)
    losses = ["binary_crossentropy" if "p_fatty" in name else "mse" for name in model.output_names]
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=True, clipnorm=5.0), loss=losses
    )
    keras.utils.set_random_seed(seed)
    model.fit(
        [np.asarray(f, dtype=np.float32) for f in int8_features],
        [np.asarray(t, dtype=np.float32).reshape(-1, 1) for t in teacher_outputs],
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=0,
    )
    return model


def convert_qat_head(model: keras.Model) -> bytes:
    """TFLite head with the int8 layers and ranges learnt under fake-quantization; float in and out."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return convert_quietly(converter)
