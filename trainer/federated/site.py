"""One site of a federation: its own images, features and folds, and the only work done on them. Nothing here leaves
the site but what the messages carry: per-feature ranges, head weights and their example counts, and the scores of
its own held-out subjects (for the pooled metrics and the exam calibration every run writes).

The head is the paper's, trained by the run's kernel-form SGD from the global weights for the local epochs
(FedProx adds its proximal pull towards the global weights). Features are extracted and cached as in any run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import FattyLiverError
from trainer.config import TrainConfig
from trainer.dataset import Cohort

SETTINGS_THAT_MUST_AGREE = (
    *("views", "weights", "augment", "appearance", "harmonisation", "pooling", "features"),
    *("fatty_threshold", "minmax_floor", "task", "learning_rate", "momentum", "batch_size"),
)


class SiteError(FattyLiverError):
    """A site cannot take part as asked (the message names the site and why)."""


def settings_fingerprint(config: TrainConfig) -> str:
    """What every site of a federation must share, hashed: two sites that differ train different models."""
    chosen = {k: getattr(config, k) for k in SETTINGS_THAT_MUST_AGREE}
    return hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cohort_digest(manifest: Path) -> str:
    """The site's manifest as it stands, hashed: a study's cohort is fixed once it begins, and a site whose manifest
    changes mid-study leaves it rather than train on other subjects (a deployed site reloads per message)."""
    return hashlib.sha256(Path(manifest).read_bytes()).hexdigest()[:16]


def site_hash(name: str) -> str:
    """A site's name as the bundle records it (a consortium may not want its members named)."""
    return hashlib.sha256(name.encode()).hexdigest()[:12]


@dataclass
class SiteData:
    """A site's labelled subjects, their features of every training variant, and its own folds."""

    name: str
    config: TrainConfig
    cohort: Cohort
    features: dict[str, np.ndarray]  # view -> (subjects, variants, F)
    folds: np.ndarray  # each subject's fold (same k across sites: fold k is every site's k-th part)
    y: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        pdff = self.cohort.pdff().astype(np.float32)
        self.y = {"p_fatty": (pdff >= self.config.fatty_threshold).astype(np.float32), "pdff": pdff}
        self.y = {o: self.y[o] for o in self.config.outputs}

    def rows(self, fold: int, held_out: bool) -> np.ndarray:
        """Subjects of one fold (held out) or all but it (training); fold -1: every subject."""
        if fold < 0:
            return np.arange(len(self.folds)) if not held_out else np.array([], int)
        return np.flatnonzero((self.folds == fold) == held_out)

    def x(self, rows: np.ndarray) -> np.ndarray:
        """Every variant of these subjects, both views concatenated (what a head trains on)."""
        views = self.config.view_names
        n = self.features[views[0]].shape[1]
        return np.concatenate([self.features[v][rows].reshape(len(rows) * n, -1) for v in views], axis=1)

    def ranges(self, fold: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature minimum and maximum of the training rows: all the federated MinMax needs from a site."""
        x = self.x(self.rows(fold, held_out=False))
        return x.min(axis=0), x.max(axis=0)

    def scores(self, head: Any, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The head's answers for these subjects (their un-augmented images) and the truth they are judged by;
        ``head`` maps rows of both views' features to outputs (trainer.federated.local.forward)."""
        x = np.concatenate([self.features[v][rows, 0] for v in self.config.view_names], axis=1)
        out = head(x) if len(rows) else {}
        return {
            "p_fatty": np.asarray(out.get("p_fatty", []), np.float64),
            "pdff_pred": np.asarray(out.get("pdff", []), np.float64),
            "pdff": self.cohort.pdff()[rows],
            "vendor": [str(v) for v in np.array(self.cohort.vendors())[rows]],
        }


def site_folds(cohort: Cohort, n_folds: int, seed: int, fatty_threshold: float) -> np.ndarray:
    """Each subject's fold, stratified within the site by vendor and class (fewer folds than a class: refused).

    Args:
        cohort: the site's labelled subjects.
        n_folds: folds of the federated cross-validation.
        seed: the run's seed.
        fatty_threshold: MRI-PDFF (%) at which a subject counts as fatty.
    """
    from trainer.folds import FoldError, make_folds

    fatty = [bool(p >= fatty_threshold) for p in cohort.pdff()]
    try:
        folds = make_folds(cohort.ids, cohort.vendors(), fatty, n_folds, seed)
    except FoldError as exc:
        raise SiteError(str(exc)) from None
    where = {sid: k for k, fold in enumerate(folds) for sid in fold}
    return np.array([where[s] for s in cohort.ids])


def load_site(name: str, manifest: Path, config: TrainConfig, n_folds: int, profiles: str | None) -> SiteData:
    """A site's labelled subjects and features, read once and kept beside the site's feature cache (a deployed
    site answers each message in a new process); a SiteError naming the site when it has none to train on.

    Args:
        name: the site's name in the federation.
        manifest: its own manifest (only this site's process opens it).
        config: the run's settings as this site holds them.
        n_folds: folds of the federated cross-validation.
        profiles: a scanner profiles file for the site's consoles.
    """
    from edge_runtime.scanners.profiles import load_profiles
    from trainer.dataset import read_cohort
    from trainer.manifest import load_manifest

    if config.features != "float":
        raise SiteError(f"site {name}: federated runs take float features (an int8 encoder is calibrated per run)")
    kept = _kept(name, manifest, config, n_folds)
    if kept is not None:  # the features are kept: the subjects are all it needs of the manifest
        rows = load_manifest(manifest, load_profiles(profiles), check_images=False)
        cohort = Cohort([s for s in rows.subjects.values() if s.pdff is not None], {}, config.harmonisation)
    else:
        cohort = read_cohort(manifest, load_profiles(profiles), labelled_only=True, progress=False,
                             harmonisation=config.harmonisation)  # fmt: skip
    if len(cohort.subjects) == 0:
        raise SiteError(f"site {name}: {manifest} has no labelled subjects (MRI-PDFF); it cannot train")
    folds = site_folds(cohort, n_folds, config.seed, config.fatty_threshold)
    if kept is not None:
        return SiteData(name, config, cohort, kept, folds)
    from trainer.extraction import extract, frozen_encoder  # TensorFlow: only when the features are not kept
    from trainer.features import FloatEncoder

    frozen = frozen_encoder(config)
    features = extract(cohort, config, FloatEncoder(frozen.model, frozen.weights_id, config.pooling), False)
    np.savez(_kept_path(name, manifest, config, n_folds), **features)
    return SiteData(name, config, cohort, features, folds)


def _kept_path(name: str, manifest: Path, config: TrainConfig, n_folds: int) -> Path:
    """The site's features of this run, keyed by its settings and its manifest's content."""
    key = hashlib.sha256(f"{settings_fingerprint(config)}|{n_folds}|{Path(manifest).read_bytes().hex()}".encode())
    return Path(config.cache_dir) / f"site-{name}-{key.hexdigest()[:16]}.npz"


def _kept(name: str, manifest: Path, config: TrainConfig, n_folds: int) -> dict[str, np.ndarray] | None:
    path = _kept_path(name, manifest, config, n_folds)
    if not path.is_file():
        return None
    with np.load(path) as saved:
        return {view: saved[view] for view in saved.files}
