"""Frozen-backbone feature cache: every augmented variant's encoder features, computed once, reused forever.

With a frozen backbone the paper's 39 variants are a fixed set, so their features do not depend on the
fold, the task, the view setting or the epoch. Keys are the image content hash, the variant name and the
encoder's own identity, so a changed image or a different encoder can never hit a stale entry.

Two encoders make features:
- :class:`FloatEncoder`, the Keras VGG19 (the paper's): stored as float16 (half the disk; far below the
  int8 resolution the bundle later uses), identified by its weights fingerprint and pooling;
- :class:`Int8Encoder`, the int8 TFLite encoder a bundle ships (``trainer train --features int8``): stored
  as its int8 output codes and dequantized exactly as the bedside runtime does, so the head trains on the
  very numbers the bedside computes; identified by the SHA-256 of the model file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from clkl.augment import Variant, apply_variant
from edge_runtime.model.bundle import EncoderModel
from edge_runtime.model.interpreter import ALL_CORES, make_interpreter


def image_key(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:24]


class FeatureEncoder(Protocol):
    cache_name: str  # the cache folder: names the encoder exactly
    batch_size: int

    def encode(self, batch: np.ndarray) -> np.ndarray:
        """Stored form of a batch of uint8 images' features (rows: images)."""

    def features(self, stored: np.ndarray) -> np.ndarray:
        """float32 features from their stored form."""


class FloatEncoder:
    """The float Keras encoder (the paper's frozen VGG19), batched through one tf.function."""

    batch_size = 16

    def __init__(self, model, weights_id: str, pooling: str):
        self.model = model
        self.cache_name = f"vgg19-{weights_id}-{pooling}"
        self._fn = None

    def encode(self, batch: np.ndarray) -> np.ndarray:
        from clkl.tf_setup import tf

        if self._fn is None:
            self._fn = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        return self._fn(tf.constant(batch)).numpy().astype(np.float16)

    def features(self, stored: np.ndarray) -> np.ndarray:
        return stored.astype(np.float32)


class Int8Encoder:
    """The int8 TFLite encoder, run by the bedside's own EncoderModel (all cores)."""

    batch_size = 16

    def __init__(self, model_bytes: bytes, pooling: str, threads: int | None = None):
        self.model_bytes = model_bytes
        self.sha256 = hashlib.sha256(model_bytes).hexdigest()
        self.cache_name = f"int8-{self.sha256[:16]}-{pooling}"
        threads = threads or ALL_CORES
        self.runner = EncoderModel.from_interpreter("encoder", make_interpreter(model_bytes, threads))

    def encode(self, batch: np.ndarray) -> np.ndarray:
        return np.stack([self.runner.codes(image) for image in batch])

    def features(self, stored: np.ndarray) -> np.ndarray:
        return self.runner.features(stored)


class FeatureCache:
    def __init__(self, root: str | Path, encoder: FeatureEncoder):
        self.root = Path(root) / encoder.cache_name
        self.encoder = encoder
        self.hits = 0
        self.misses = 0

    def _path(self, key: str, variant: Variant) -> Path:
        return self.root / key[:2] / f"{key}_{variant.name}.npy"

    def _store(self, path: Path, stored: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, stored)
        tmp.replace(path)  # atomic: an interrupted run never leaves a truncated entry

    def features(
        self, images: Sequence[np.ndarray], variants: Sequence[Variant], desc: str = "extracting features"
    ) -> np.ndarray:
        """Array (len(images), len(variants), n_features) float32; only missing entries run the encoder."""
        keys = [image_key(im) for im in images]
        todo = [(i, j) for i, k in enumerate(keys) for j, v in enumerate(variants) if not self._path(k, v).exists()]
        self.misses += len(todo)
        self.hits += len(images) * len(variants) - len(todo)
        step = self.encoder.batch_size
        with tqdm(total=len(todo), desc=desc, unit="img", disable=not todo) as bar:
            for start in range(0, len(todo), step):
                chunk = todo[start : start + step]
                batch = np.stack([apply_variant(images[i], variants[j]) for i, j in chunk])
                for (i, j), stored in zip(chunk, self.encoder.encode(batch), strict=True):
                    self._store(self._path(keys[i], variants[j]), stored)
                bar.update(len(chunk))
        stored = np.asarray([[np.load(self._path(k, v)) for v in variants] for k in keys])
        return self.encoder.features(stored).astype(np.float32)
