"""The view gate's and the guard's training features, kept in the run beside its export records.

Export encodes every training frame through the bundle's int8 encoder to fit the gate: the views, the
severe-attenuation looks and the other frames. `trainer site-adapt` refits the same gate on those frames plus the
site's, so export keeps them in ``RUN/gate_features/<encoder SHA-256 prefix>.npz`` and site-adapt reads them
instead of encoding the run's frames again (the longest part of an adaptation on a 2-core box). The file is keyed
by the encoder that made the features, and names the subjects and the severe looks it holds: features from another
encoder, of other subjects, or of looks this release no longer teaches are never mixed in. The run is
training-side data; bundles never carry it.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.contracts import VIEWS

FOLDER = "gate_features"


@dataclass(frozen=True)
class GateFeatures:
    """Encoder features of the subjects the gate was fitted on, as the bedside computes them."""

    ids: list[str]  # train + calibration subjects: the rows of each view's array
    views: dict[str, np.ndarray]  # view -> (subjects, F)
    rows: np.ndarray  # (frames, F): every frame the view head learns from
    labels: np.ndarray  # (frames,): view class index
    groups: np.ndarray  # (frames,): the subject of each frame
    looks: tuple[float, ...]  # the severe-attenuation looks among the rows (trainer.export.gate.SEVERE_LOOKS)


def path_for(run_path: Path, encoder_sha256: str) -> Path:
    return Path(run_path) / FOLDER / f"{encoder_sha256[:16]}.npz"


def encoder_sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def save(features: GateFeatures, path: Path) -> None:
    """Written beside its final name and renamed, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as fh:
        np.savez_compressed(
            fh,
            ids=np.array(features.ids),
            rows=features.rows.astype(np.float32),
            labels=features.labels,
            groups=np.array(features.groups),
            looks=np.array(features.looks, np.float64),
            **{f"view_{v}": features.views[v].astype(np.float32) for v in VIEWS},
        )
    os.replace(partial, path)


def load(path: Path, ids: list[str], looks: tuple[float, ...]) -> GateFeatures | None:
    """The kept features when the file exists, reads whole and holds exactly these subjects at these looks; else None
    (the caller encodes the frames again and says so)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            kept = GateFeatures(
                ids=[str(s) for s in data["ids"]],
                views={v: data[f"view_{v}"] for v in VIEWS},
                rows=data["rows"],
                labels=data["labels"],
                groups=np.array([str(s) for s in data["groups"]]),
                looks=tuple(float(v) for v in data["looks"]),
            )
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return kept if kept.ids == list(ids) and kept.looks == tuple(looks) else None
