"""The head of Kim et al.: concatenated per-view features -> Dense(10) -> Dense(1).

Per-feature MinMax scaling (fitted on the training fold) is the head's first layer, so it is saved with
the model and travels into ``head.tflite``. The ``both`` task has two Dense(10) -> Dense(1) branches, one
sigmoid (p_fatty) and one linear (pdff): one backbone pass then serves both answers at the bedside.
"""

from __future__ import annotations

import numpy as np

from clkl.minmax import SPAN_FLOOR, fit_minmax
from clkl.tf_setup import keras

__all__ = ["SPAN_FLOOR", "build_head", "compile_head", "fit_minmax", "load_head", "minmax_layer"]


def _branch(x, units: int, seed: int, name: str, activation: str):
    hidden = keras.layers.Dense(
        units, activation="relu", kernel_initializer=keras.initializers.HeNormal(seed), name=f"{name}_dense10"
    )(x)
    return keras.layers.Dense(
        1, activation=activation, kernel_initializer=keras.initializers.GlorotUniform(seed + 1), name=name
    )(hidden)


def build_head(
    views: tuple[str, ...],
    feature_size: int,
    outputs: tuple[str, ...],
    minmax: tuple[np.ndarray, np.ndarray],
    seed: int,
    scalars: tuple[str, ...] = (),
) -> keras.Model:
    """Args:
    views: the views whose features are concatenated, in order.
    feature_size: features per view.
    outputs: 'p_fatty' (sigmoid) and/or 'pdff' (linear), one Dense(10) -> Dense(1) branch each.
    minmax: (min, range) per concatenated feature, fitted on the training fold.
    seed: initialiser seed.
    scalars: one-number inputs concatenated after the views (e.g. 'hri': trainer.hri_input).
    """
    inputs = [keras.Input((feature_size,), name=f"features_{v}") for v in views]
    inputs += [keras.Input((1,), name=name) for name in scalars]
    x = keras.layers.Concatenate(name="concat")(inputs) if len(inputs) > 1 else inputs[0]
    lo, span = minmax
    x = keras.layers.Normalization(mean=lo, variance=span**2, name="minmax")(x)
    outs = []
    for i, out in enumerate(outputs):
        activation = "sigmoid" if out == "p_fatty" else "linear"
        outs.append(_branch(x, 10, seed + 10 * i, out, activation))
    return keras.Model(inputs, outs, name="head")


def compile_head(model: keras.Model, outputs: tuple[str, ...], learning_rate: float, momentum: float) -> None:
    """SGD with Nesterov momentum as in the paper; clipnorm only guards the linear PDFF output from blow-ups.

    Args:
        model: the head (or a fine-tuning model ending in it).
        outputs: output names (binary cross-entropy for p_fatty, MSE for pdff).
        learning_rate: SGD learning rate.
        momentum: Nesterov momentum.
    """
    losses = {o: ("binary_crossentropy" if o == "p_fatty" else "mse") for o in outputs}
    metrics = {o: (["AUC"] if o == "p_fatty" else ["mae"]) for o in outputs}
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=True, clipnorm=5.0),
        loss=losses,
        metrics=metrics,
    )


def minmax_layer(config: dict) -> keras.layers.Layer:
    """The MinMax layer from its config, statistics as float32 arrays: as Python lists (HDF5 configs hold them
    so) TensorFlow tracks every feature as an object, and each SavedModel or TFLite export takes seconds."""
    config = dict(config)
    for key in ("mean", "variance"):
        config[key] = np.asarray(config[key], dtype=np.float32)
    return keras.layers.Normalization.from_config(config)


def load_head(path) -> keras.Model:
    """A head saved by the trainer (HDF5), ready to predict, convert or fine-tune."""
    saved = keras.models.load_model(path, compile=False)

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        return minmax_layer(config) if layer.name == "minmax" else layer.__class__.from_config(config)

    head = keras.models.clone_model(saved, clone_function=clone)
    head.set_weights(saved.get_weights())
    return head
