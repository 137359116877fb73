"""The one place TensorFlow is imported: the Keras 2 API (tf-keras) must be selected before the import.

tensorflow-model-optimization 0.8 (quantization-aware training) only accepts tf_keras models, so the whole
trainer uses ``tf_keras``. Import ``tf`` and ``keras`` from here, never ``tensorflow`` directly.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
import tf_keras as keras

__all__ = ["choose_strategy", "keras", "tf"]


def choose_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """auto: mirrored across GPUs when there is more than one, else the default (one GPU or the CPU)."""
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown strategy {name!r}; expected auto, default, mirrored or multiworker")


def device_summary() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    return f"{len(gpus)} GPU(s)" if gpus else "CPU only"
