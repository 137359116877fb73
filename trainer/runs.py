"""Reading a finished run back: its config, folds, per-fold heads and the exact backbone it used."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trainer.config import TrainConfig


class RunError(ValueError):
    """A run directory is missing, incomplete, or not usable for the requested command."""


@dataclass
class Run:
    path: Path
    config: TrainConfig
    folds: list[list[str]]
    weights_id: str | None
    manifest: Path | None

    def head_path(self, fold: int) -> Path:
        return self.path / f"fold{fold}" / "head.h5"

    def fold_of(self, subject_id: str) -> int:
        for k, test in enumerate(self.folds):
            if subject_id in test:
                return k
        raise RunError(f"subject {subject_id!r} is not in run {self.path} (it has {sum(map(len, self.folds))})")


def open_run(path: str | Path) -> Run:
    path = Path(path)
    for name in ("config.json", "folds.json", "report.json"):
        if not (path / name).is_file():
            raise RunError(f"{path} is not a finished training run (no {name})")
    config = TrainConfig.load(path / "config.json")
    folds = json.loads((path / "folds.json").read_text())["folds"]
    timings = json.loads((path / "timings.json").read_text()) if (path / "timings.json").is_file() else {}
    manifest = config.extra.get("manifest")
    return Run(path, config, folds, timings.get("weights_id"), Path(manifest) if manifest else None)


def load_frozen_encoder(run: Run):
    """Rebuild the run's encoder and prove it is the same backbone (weights fingerprint) before using it."""
    from trainer.backbone import build_encoder, build_vgg19_base, weights_fingerprint

    if run.config.finetune is not None:
        raise RunError(f"{run.path} fine-tuned its backbone; this command supports frozen-backbone runs")
    base = build_vgg19_base(run.config.weights, run.config.seed)
    base.trainable = False
    fingerprint = weights_fingerprint(base)
    if run.weights_id and fingerprint != run.weights_id:
        raise RunError(
            f"backbone weights differ from the ones {run.path} was trained with "
            f"({fingerprint} vs {run.weights_id}); was the weights file changed?"
        )
    return build_encoder(base, run.config.pooling), fingerprint


def load_heads(run: Run) -> list:
    from trainer.tf_setup import keras

    heads = []
    for k in range(len(run.folds)):
        if not run.head_path(k).is_file():
            raise RunError(f"{run.head_path(k)} is missing")
        heads.append(keras.models.load_model(run.head_path(k), compile=False))
    return heads
