"""Frozen-backbone feature cache: every augmented variant's VGG19 features, computed once, reused forever.

With a frozen backbone the paper's 39 variants are a fixed set, so their features do not depend on the
fold, the task, the view setting or the epoch. Keys are the image content hash, the variant name and the
backbone weights fingerprint (and pooling), so a changed image or different weights can never hit a stale
entry. Stored as float16 .npy files (half the disk; far below the int8 resolution the bundle later uses).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from clkl.augment import Variant, apply_variant


def image_key(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:24]


class FeatureCache:
    def __init__(self, root: str | Path, encoder, weights_id: str, pooling: str, batch_size: int = 16):
        self.root = Path(root) / f"vgg19-{weights_id}-{pooling}"
        self.encoder = encoder
        self.batch_size = batch_size
        self.hits = 0
        self.misses = 0
        self._fn = None

    def _path(self, key: str, variant: Variant) -> Path:
        return self.root / key[:2] / f"{key}_{variant.name}.npy"

    def _encode(self, batch: np.ndarray) -> np.ndarray:
        from clkl.tf_setup import tf

        if self._fn is None:
            self._fn = tf.function(lambda x: self.encoder(x, training=False), reduce_retracing=True)
        return self._fn(tf.constant(batch)).numpy()

    def features(
        self, images: Sequence[np.ndarray], variants: Sequence[Variant], desc: str = "extracting features"
    ) -> np.ndarray:
        """Array (len(images), len(variants), n_features) float32; only missing entries run the backbone."""
        keys = [image_key(im) for im in images]
        todo = [(i, j) for i, k in enumerate(keys) for j, v in enumerate(variants) if not self._path(k, v).exists()]
        self.misses += len(todo)
        self.hits += len(images) * len(variants) - len(todo)
        with tqdm(total=len(todo), desc=desc, unit="img", disable=not todo) as bar:
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start : start + self.batch_size]
                batch = np.stack([apply_variant(images[i], variants[j]) for i, j in chunk])
                for (i, j), feat in zip(chunk, self._encode(batch), strict=True):
                    path = self._path(keys[i], variants[j])
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(".tmp.npy")
                    np.save(tmp, feat.astype(np.float16))
                    tmp.replace(path)  # atomic: an interrupted run never leaves a truncated entry
                bar.update(len(chunk))
        out = [[np.load(self._path(k, v)).astype(np.float32) for v in variants] for k in keys]
        return np.asarray(out, dtype=np.float32)
