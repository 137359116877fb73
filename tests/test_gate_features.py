"""The gate's kept training features are read back only for the subjects and the severe looks they were made with:
a run exported by a release that taught other looks is encoded again, never mixed into a site's refit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.contracts import VIEWS
from trainer import gate_features
from trainer.gate_features import GateFeatures

LOOKS = (60.0, 120.0)


def _kept(looks: tuple[float, ...]) -> GateFeatures:
    rng = np.random.default_rng(0)
    ids = ["S1", "S2"]
    rows = rng.normal(size=(4 + 4 * len(looks), 6)).astype(np.float32)
    views = {v: rng.normal(size=(2, 6)).astype(np.float32) for v in VIEWS}
    groups = np.array(["S1", "S2"] * (len(rows) // 2))
    return GateFeatures(ids, views, rows, np.zeros(len(rows), np.int64), groups, looks)


def test_kept_features_come_back_only_for_their_subjects_and_looks(tmp_path: Path) -> None:
    path = gate_features.path_for(tmp_path, "ab" * 32)
    gate_features.save(_kept(LOOKS), path)
    back = gate_features.load(path, ["S1", "S2"], LOOKS)
    assert back is not None and back.looks == LOOKS and back.rows.shape == (12, 6)
    assert gate_features.load(path, ["S1", "S2"], (*LOOKS, 180.0)) is None  # a release teaching a third look
    gate_features.save(_kept((*LOOKS, 180.0)), path)
    assert gate_features.load(path, ["S1", "S2"], LOOKS) is None  # made by an experiment with another look


def test_features_kept_without_their_looks_are_encoded_again(tmp_path: Path) -> None:
    path = gate_features.path_for(tmp_path, "cd" * 32)
    kept = _kept(LOOKS)
    with open(path.parent.mkdir(parents=True) or path, "wb") as fh:  # the form an older export wrote
        np.savez_compressed(fh, ids=np.array(kept.ids), rows=kept.rows, labels=kept.labels, groups=kept.groups,
                            **{f"view_{v}": kept.views[v] for v in VIEWS})  # fmt: skip
    assert gate_features.load(path, kept.ids, LOOKS) is None
