"""The image encoder: uint8 B-mode crop (INPUT_SHAPE) -> VGG19 convolutional features.

The same Keras model extracts the training features and becomes ``encoder.tflite``, so the bedside sees
exactly what the head was trained on. The only scaling inside it is VGG's own: ImageNet VGG19 expects BGR
pixels on 0..255 with the ImageNet mean removed. The mean is one constant offset layer; the channel order is
folded into the first convolution's kernel (exact, padding included), so the encoder takes RGB and the int8
graph has no channel shuffle.

There is no pixel MinMax here. ImageNet weights expect 0..255, and on a B-mode crop a fitted pixel range is
0..255 anyway (black sector background, saturated speckle). The paper's MinMax step is applied to the
features, per feature, fitted on the training fold, as the head's first layer (:mod:`clkl.head`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from clkl.tf_setup import keras
from edge_runtime.contracts import FEATURE_MAP, INPUT_SHAPE
from edge_runtime.errors import FattyLiverError

IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)
VGG_BLOCKS = ("block1", "block2", "block3", "block4", "block5")
FEATURE_SIZE = {"flatten": int(np.prod(FEATURE_MAP)), "avg": FEATURE_MAP[2]}


class WeightsError(FattyLiverError):
    """The requested backbone weights cannot be loaded (missing file, wrong shapes, no network)."""


def build_vgg19_base(weights: str, seed: int, name: str = "vgg19") -> keras.Model:
    """weights: 'imagenet' (Keras download, cached in ~/.keras), 'none' (random, seeded) or a local .h5 path."""
    keras.utils.set_random_seed(seed)
    if weights == "imagenet":
        try:
            base = keras.applications.VGG19(include_top=False, weights="imagenet", input_shape=INPUT_SHAPE)
        except Exception as exc:  # the download is the only thing that fails here: say so plainly
            raise WeightsError(
                f"could not load ImageNet VGG19 weights ({exc}). Offline? Pass --weights PATH to a local "
                "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
            ) from exc
        _flip_first_kernel_to_rgb(base)
    elif weights == "none":
        base = keras.applications.VGG19(include_top=False, weights=None, input_shape=INPUT_SHAPE)
    else:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"backbone weights file not found: {path} (expected 'imagenet', 'none' or a path)")
        base = keras.applications.VGG19(include_top=False, weights=None, input_shape=INPUT_SHAPE)
        try:
            base.load_weights(str(path))
        except Exception as exc:
            raise WeightsError(f"{path}: not VGG19 no-top weights ({exc})") from exc
        _flip_first_kernel_to_rgb(base)
    base._name = name
    return base


def _flip_first_kernel_to_rgb(base: keras.Model) -> None:
    """Caffe-trained VGG kernels expect BGR; reversing the first kernel's input channels makes them take RGB."""
    conv = base.get_layer("block1_conv1")
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel[:, :, ::-1, :].copy(), bias])


def set_trainable(base: keras.Model, finetune: str | None) -> None:
    """None: frozen (the paper's transfer learning). 'all': everything. 'blockN': blockN and deeper."""
    if finetune is None:
        base.trainable = False
        return
    if finetune != "all" and finetune not in VGG_BLOCKS:
        raise ValueError(f"--finetune takes 'all' or one of {', '.join(VGG_BLOCKS)}, got {finetune!r}")
    base.trainable = True
    first = 0 if finetune == "all" else VGG_BLOCKS.index(finetune)
    for layer in base.layers:
        block = layer.name.split("_")[0]
        layer.trainable = block in VGG_BLOCKS and VGG_BLOCKS.index(block) >= first


def build_encoder(base: keras.Model, pooling: str, name: str = "encoder", input_dtype: str = "uint8") -> keras.Model:
    """uint8 image -> feature vector (flatten of the last pooling layer, or global average).


    input_dtype="float32" builds the same network (shared weights) for the int8 converter, which calibrates
    on float pixel values 0..255 and then exposes a uint8 input.

    Args:
        base: the VGG19 convolutional base.
        pooling: 'flatten' (the paper's, 25 088 features) or 'avg' (512).
        name: the Keras model's name.
        input_dtype: 'uint8' (training, bedside) or 'float32' (the int8 converter's calibration input).
    """
    if pooling not in FEATURE_SIZE:
        raise ValueError(f"pooling must be one of {', '.join(FEATURE_SIZE)}, got {pooling!r}")
    image = keras.Input(INPUT_SHAPE, dtype=input_dtype, name="image")
    x = keras.layers.Rescaling(1.0, offset=[-m for m in IMAGENET_MEAN_RGB], name="vgg_normalise")(image)
    x = base(x)
    x = (
        keras.layers.Flatten(name="features")(x)
        if pooling == "flatten"
        else keras.layers.GlobalAveragePooling2D(name="features")(x)
    )
    return keras.Model(image, x, name=name)


def weights_fingerprint(model: keras.Model) -> str:
    """Identifies the exact backbone weights, so cached features are never reused across different weights."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()[:16]
