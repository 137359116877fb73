"""Empirical bias correction: remove the int8 encoder's systematic feature error inside the head.

Rounding the backbone's weights to int8 is a fixed perturbation, so part of the int8 encoder's feature
error is the same on every image (about half of it on the 90-subject phantom run). Through the head's
~50 000 input weights that shared part adds up to a constant shift of the p_fatty logit (+0.15 on that
run) that pushes borderline subjects across the threshold. The calibration subjects' images measure the
shift per feature (float minus int8 on the same images); the bundle's head subtracts it in its MinMax
layer, which costs nothing at the bedside. This is the "empirical bias correction" step of data-free
quantization (Nagel et al., ICCV 2019), applied where it is cheapest: at the head's input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clkl.head import minmax_layer
from clkl.tf_setup import keras


def feature_bias(float_features: np.ndarray, int8_features: np.ndarray) -> np.ndarray:
    """Mean (int8 - float) feature per position over the calibration images (rows: images)."""
    if float_features.shape != int8_features.shape or not len(float_features):
        raise ValueError(
            f"bias correction needs matching, non-empty feature arrays, got {float_features.shape} "
            f"and {int8_features.shape}"
        )
    diff = int8_features.astype(np.float64) - float_features.astype(np.float64)
    return diff.mean(axis=0).astype(np.float32)


def shift_head_inputs(head: keras.Model, bias_by_input: Sequence[np.ndarray]) -> keras.Model:
    """The same head (same weights) whose MinMax layer subtracts the encoder's bias from each view's features.

    bias_by_input follows the head's inputs (the views, in order); MinMax is (x - lo) / span, so moving lo
    by the bias makes (x_int8 - lo - bias) / span match the float head's (x_float - lo) / span on average.
    """
    offset = np.concatenate([np.asarray(b, dtype=np.float32).reshape(-1) for b in bias_by_input])

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name != "minmax":
            return layer.__class__.from_config(layer.get_config())
        config = layer.get_config()
        mean = np.asarray(config["mean"], dtype=np.float32).reshape(-1)
        if mean.shape != offset.shape:
            raise ValueError(f"bias covers {offset.size} features, the head's MinMax layer {mean.size}")
        return minmax_layer(config | {"mean": mean + offset})

    shifted = keras.models.clone_model(head, clone_function=clone)
    shifted.set_weights(head.get_weights())
    return shifted
