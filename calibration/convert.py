"""TFLite conversion: full-integer int8 encoder from a representative dataset, float head.

The encoder takes uint8 pixels (input scale 1, zero point 0: the converter sees float 0..255 during
calibration) and returns int8 features; the runtime dequantizes them for the head. The head is a few
hundred thousand multiply-adds, so it stays float: it keeps fidelity and costs well under a millisecond.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from clkl.tf_setup import keras, tf


def float_input_encoder(encoder: keras.Model) -> keras.Model:
    """The same encoder (shared weights) with a float32 input, as the int8 converter needs."""
    from clkl.encoder import build_encoder

    base = next(layer for layer in encoder.layers if layer.name.startswith("vgg19"))
    pooling = "flatten" if isinstance(encoder.get_layer("features"), keras.layers.Flatten) else "avg"
    return build_encoder(base, pooling, name=encoder.name + "_float_in", input_dtype="float32")


def quantizing_converter(
    model: keras.Model, samples: list[np.ndarray] | None, input_type=None, output_type=None
) -> tf.lite.TFLiteConverter:
    """A converter calibrated on samples (arrays without the batch axis) for int8 post-training quantization.


    With input/output types the graph is full-integer (int8 builtins only, integer input and output);
    without them it is the plain optimised graph the quantization debugger expects.

    Args:
        model: the float Keras model (float input).
        samples: representative inputs without the batch axis.
        input_type: the int8 graph's input type (None: the optimised graph the debugger expects).
        output_type: the int8 graph's output type.
    """
    if not samples:
        raise ValueError("int8 conversion needs a representative dataset")

    def representative() -> Iterator[list[np.ndarray]]:
        for sample in samples:
            yield [np.asarray(sample, dtype=np.float32)[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    if input_type is not None:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = input_type
        converter.inference_output_type = output_type
    return converter


def convert_encoder(encoder: keras.Model, samples: list[np.ndarray] | None, int8: bool) -> bytes:
    model = float_input_encoder(encoder)
    if not int8:
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()
    return convert_quietly(quantizing_converter(model, samples, tf.uint8, tf.int8))


@contextmanager
def no_input_statistics_warning() -> Iterator[None]:
    """The converter warns on every quantized graph that no input statistics were given: an old conversion path
    took them from the user. Here the ranges come from the representative dataset (or QAT's learnt ranges) and
    the encoder's uint8 input is raw pixels (scale 1, zero point 0), so the warning is only noise in exports."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected", category=UserWarning)
        yield


def convert_quietly(converter: tf.lite.TFLiteConverter) -> bytes:
    """converter.convert() without the input-statistics warning (no_input_statistics_warning)."""
    with no_input_statistics_warning():
        return converter.convert()


def convert_head(head: keras.Model) -> bytes:
    return tf.lite.TFLiteConverter.from_keras_model(head).convert()


def quantization_debug(encoder: keras.Model, samples: list[np.ndarray], top: int = 8) -> list[dict]:
    """TensorFlow Lite's quantization debugger: per-layer error of the int8 encoder, worst layers first."""
    import csv
    import io

    converter = quantizing_converter(float_input_encoder(encoder), samples)
    with no_input_statistics_warning():  # the debugger converts as it is built
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=converter.representative_dataset
        )
        debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    for row in rows:
        scale = float(row.get("scale") or 0) or 1.0
        row["rmse_over_scale"] = float(row.get("mean_squared_error") or 0) ** 0.5 / scale
    rows.sort(key=lambda r: r["rmse_over_scale"], reverse=True)
    keep = ("op_name", "tensor_name", "num_elements", "scale", "zero_point", "mean_squared_error", "rmse_over_scale")
    return [{k: r.get(k) for k in keep} for r in rows[:top]]
