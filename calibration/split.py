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

from edge_runtime.errors import FattyLiverError


class SplitError(FattyLiverError):
    """The cohort cannot be split into disjoint training, calibration and fidelity groups."""


@dataclass(frozen=True)
class ExportSplit:
    train: list[str]
    calibration: list[str]
    fidelity: list[str]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "calibration": len(self.calibration), "fidelity": len(self.fidelity)}

    def check_disjoint(self) -> None:
        named = {"train": set(self.train), "calibration": set(self.calibration), "fidelity": set(self.fidelity)}
        names = list(named)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                shared = named[a] & named[b]
                if shared:
                    raise SplitError(f"export groups {a} and {b} share subject(s) {sorted(shared)}")


def _stratified_take(ids: list[str], strata: list[str], n: int, seed: int) -> tuple[list[str], list[str]]:
    if n <= 0:
        return [], list(ids)
    if n >= len(ids):
        raise SplitError(f"cannot hold out {n} of {len(ids)} subjects")
    counts = {s: strata.count(s) for s in set(strata)}
    stratify = strata if min(counts.values()) >= 2 and n >= len(counts) else None
    taken, rest = train_test_split(ids, train_size=n, stratify=stratify, random_state=seed)
    return sorted(taken), sorted(rest)


def export_split(
    ids: list[str], vendors: list[str], fatty: list[bool], n_calibration: int, n_fidelity: int, seed: int
) -> ExportSplit:
    """Hold out a calibration and a fidelity group, each stratified by vendor x class; the rest trains.

    Args:
        ids, vendors, fatty: one entry per subject.
        n_calibration, n_fidelity: group sizes.
        seed: the split's random seed (the run's, so an export is reproducible).
    """
    strata = [f"{v}|{int(f)}" for v, f in zip(vendors, fatty, strict=True)]
    calibration, rest = _stratified_take(ids, strata, n_calibration, seed)
    rest_strata = [strata[ids.index(s)] for s in rest]
    fidelity, train = _stratified_take(rest, rest_strata, n_fidelity, seed + 1)
    if len(train) < 4:
        raise SplitError(f"only {len(train)} subjects left to train the exported model; hold out fewer")
    split = ExportSplit(train, calibration, fidelity)
    split.check_disjoint()
    return split


def subject_hash(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def representative_dataset(
    images: list[np.ndarray], augment: str, max_samples: int, seed: int, appearance: tuple[str, ...] = ()
) -> list[np.ndarray]:
    """The int8 representative dataset: calibration images with the run's augmentation variants (the light
    set when the run has none: the bedside sees rotated and mirrored anatomy too) and appearance looks.

    Args:
        images: the calibration subjects' preprocessed images (both views).
        augment: the run's augmentation name (none, light or paper).
        max_samples: cap on the representative dataset's size.
        seed: which samples are kept when capping.
        appearance: the run's appearance families (clkl.appearance): their looks widen the int8 ranges too.
    """
    from clkl.augment import variants

    chosen = variants(augment if augment != "none" else "light", appearance)
    return representative_images(images, chosen, max_samples, seed)


def representative_images(images: list[np.ndarray], variants, max_samples: int, seed: int) -> list[np.ndarray]:
    """Calibration images plus their augmented variants, capped: int8 ranges must cover what the bedside sees.

    Args:
        images: the calibration subjects' preprocessed images (both views).
        variants: clkl.augment variants to add (the run's augmentation).
        max_samples: cap on the representative dataset's size.
        seed: which samples are kept when capping.
    """
    from clkl.augment import apply_variant

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
