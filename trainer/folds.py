"""Subject-level, stratified k-fold splits: both views of a subject always land on the same side.

Strata are vendor x class, so every fold holds the same share of PHILIPS and GE images and of fatty
subjects, as in Kim et al. Splits are saved in the run directory and can be reused by another run.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from edge_runtime.errors import FattyLiverError


class FoldError(FattyLiverError):
    """Folds that cannot be made or do not partition the cohort's subjects."""


def make_folds(ids: list[str], vendors: list[str], fatty: list[bool], n_folds: int, seed: int) -> list[list[str]]:
    """Returns the test subjects of each fold.

    Args:
        ids: subject ids.
        vendors: one vendor per subject.
        fatty: one class per subject.
        n_folds: number of folds.
        seed: shuffling seed.
    """
    strata = [f"{v}|{int(f)}" for v, f in zip(vendors, fatty, strict=True)]
    smallest = min(Counter(strata).values())
    if smallest < n_folds:
        # StratifiedKFold would warn and leave some folds without a stratum; say what to do instead.
        raise FoldError(
            f"{n_folds}-fold stratification needs at least {n_folds} subjects per vendor x class stratum; "
            f"the smallest has {smallest} ({dict(Counter(strata))}). Use fewer folds or more subjects."
        )
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    order = np.asarray(ids)
    return [sorted(order[test].tolist()) for _, test in splitter.split(order, strata)]


def save_folds(path: Path, folds: list[list[str]]) -> None:
    path.write_text(json.dumps({"folds": folds}, indent=1))


def load_folds(path: Path, ids: list[str]) -> list[list[str]]:
    folds = json.loads(Path(path).read_text())["folds"]
    flat = [s for f in folds for s in f]
    if sorted(flat) != sorted(ids) or len(flat) != len(set(flat)):
        raise FoldError(f"{path}: folds do not partition this manifest's subjects exactly once each")
    return folds


def train_ids(folds: list[list[str]], k: int) -> list[str]:
    return [s for j, f in enumerate(folds) if j != k for s in f]


def fold_rows(folds: list[list[str]], ids: list[str]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(fold, training row indices, test row indices) into ids, for each fold; a subject on both sides is an
    error (the cross-validation engine and trainer transfer's within-vendor CV both iterate this way)."""
    index = {s: i for i, s in enumerate(ids)}
    for k, test in enumerate(folds):
        rows = np.array([index[s] for s in train_ids(folds, k)])
        test_rows = np.array([index[s] for s in test])
        if set(rows) & set(test_rows):
            raise FoldError(f"fold {k}: a subject is on both sides of the fold")
        yield k, rows, test_rows
