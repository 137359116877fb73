"""The head of Kim et al.: concatenated per-view features -> Dense(10) -> Dense(1).

Per-feature MinMax scaling (fitted on the training fold) is the head's first layer, so it is saved with
the model and travels into ``head.tflite``. The ``both`` task has two Dense(10) -> Dense(1) branches, one
sigmoid (p_fatty) and one linear (pdff): one backbone pass then serves both answers at the bedside.
"""

from __future__ import annotations

import numpy as np

from trainer.tf_setup import keras

SPAN_FLOOR = 0.1  # of the median span of the features that vary


def fit_minmax(features: np.ndarray, span_floor: float = SPAN_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """(min, range) per feature, fitted on the training fold.

    Constant features get range 1 (they map to 0, not NaN). Features that barely vary are scaled by at least
    ``span_floor`` x the median range: otherwise a feature that moved by a hair in training would be blown
    up hundreds of times, and with it the int8 encoder's rounding noise at the bedside (it flipped 2 of 11
    held-out calls before this floor; see docs/DESIGN.md).
    """
    lo = features.min(axis=0)
    span = features.max(axis=0) - lo
    varying = span > 1e-12
    floor = span_floor * float(np.median(span[varying])) if varying.any() else 0.0
    span = np.where(varying, np.maximum(span, floor), 1.0)
    return lo.astype(np.float32), span.astype(np.float32)


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
) -> keras.Model:
    inputs = [keras.Input((feature_size,), name=f"features_{v}") for v in views]
    x = keras.layers.Concatenate(name="concat")(inputs) if len(inputs) > 1 else inputs[0]
    lo, span = minmax
    x = keras.layers.Normalization(mean=lo, variance=span**2, name="minmax")(x)
    outs = []
    for i, out in enumerate(outputs):
        activation = "sigmoid" if out == "p_fatty" else "linear"
        outs.append(_branch(x, 10, seed + 10 * i, out, activation))
    return keras.Model(inputs, outs, name="head")


def compile_head(model: keras.Model, outputs: tuple[str, ...], learning_rate: float, momentum: float) -> None:
    """SGD with Nesterov momentum as in the paper; clipnorm only guards the linear PDFF output from blow-ups."""
    losses = {o: ("binary_crossentropy" if o == "p_fatty" else "mse") for o in outputs}
    metrics = {o: (["AUC"] if o == "p_fatty" else ["mae"]) for o in outputs}
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=True, clipnorm=5.0),
        loss=losses,
        metrics=metrics,
    )
