"""Which subjects train the exported model, which calibrate int8, and which judge float-vs-int8 fidelity.

Three disjoint groups, stratified by vendor and class: calibration images are never used to judge fidelity,
and neither group trains the exported model. The subject-id hash of the calibration group is written into
bundle.json so anyone can check which subjects calibrated a bundle without shipping the ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split


@dataclass(frozen=True)
class ExportSplit:
    train: list[str]
    calibration: list[str]
    fidelity: list[str]

    def check_disjoint(self) -> None:
        groups = [set(self.train), set(self.calibration), set(self.fidelity)]
        for i in range(3):
            for j in range(i + 1, 3):
                if groups[i] & groups[j]:
                    raise AssertionError("export split groups overlap")


def _stratified_take(ids: list[str], strata: list[str], n: int, seed: int) -> tuple[list[str], list[str]]:
    if n <= 0:
        return [], list(ids)
    if n >= len(ids):
        raise ValueError(f"cannot hold out {n} of {len(ids)} subjects")
    counts = {s: strata.count(s) for s in set(strata)}
    stratify = strata if min(counts.values()) >= 2 and n >= len(counts) else None
    taken, rest = train_test_split(ids, train_size=n, stratify=stratify, random_state=seed)
    return sorted(taken), sorted(rest)


def export_split(
    ids: list[str], vendors: list[str], fatty: list[bool], n_calibration: int, n_fidelity: int, seed: int
) -> ExportSplit:
    strata = [f"{v}|{int(f)}" for v, f in zip(vendors, fatty, strict=True)]
    calibration, rest = _stratified_take(ids, strata, n_calibration, seed)
    rest_strata = [strata[ids.index(s)] for s in rest]
    fidelity, train = _stratified_take(rest, rest_strata, n_fidelity, seed + 1)
    if len(train) < 4:
        raise ValueError(f"only {len(train)} subjects left to train the exported model; hold out fewer")
    split = ExportSplit(train, calibration, fidelity)
    split.check_disjoint()
    return split


def subject_hash(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def representative_images(images: list[np.ndarray], variants, max_samples: int, seed: int) -> list[np.ndarray]:
    """Calibration images plus their augmented variants, capped: int8 ranges must cover what the bedside sees."""
    from trainer.augment import apply_variant

    samples = [apply_variant(im, v) for im in images for v in variants]
    if len(samples) > max_samples:
        order = np.random.default_rng(seed).permutation(len(samples))[:max_samples]
        samples = [samples[i] for i in sorted(order)]
    # The uint8 input must calibrate to the full 0..255 range (scale 1, zero point 0): otherwise the brightest
    # echoes a calibration set happens not to contain would be clipped at the bedside. One black and one white
    # pixel in the top corners (outside the sector on every B-mode crop) pin the range without moving the
    # activation ranges of the layers behind it.
    pinned = []
    for sample in samples:
        sample = sample.copy()
        sample[0, 0] = 0
        sample[0, -1] = 255
        pinned.append(sample)
    return pinned
