"""Reading a finished run back: its config, folds, per-fold heads and the exact backbone it used."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.errors import FattyLiverError
from edge_runtime.scanners.profiles import ScannerProfile, load_profiles, profiles_mapping
from trainer.config import TrainConfig

PROFILES_FILE = "profiles.json"  # the scanner profiles the run's images were cropped with
COHORT_FILE = "cohort.json"  # the run's subjects and the content digest of each image it trained on


class RunError(FattyLiverError):
    """A run directory is missing, incomplete, or not usable for the requested command."""


@dataclass
class Run:
    path: Path
    config: TrainConfig
    folds: list[list[str]]
    weights_id: str | None
    manifest: Path | None
    digests: dict[tuple[str, str], str]  # (subject_id, view) -> image digest
    cohort_kind: str  # "phantom" or "clinical"
    int8_sha256: str | None = None  # --features int8: SHA-256 of the run's encoder_int8.tflite

    @property
    def profiles(self) -> dict[str, ScannerProfile]:
        """The shipped profiles plus the ones the run was trained with."""
        return load_profiles(self.path / PROFILES_FILE)

    @property
    def scanners(self) -> dict[str, dict]:
        """The profiles of the scanners the run trained on, as recorded."""
        return json.loads((self.path / PROFILES_FILE).read_text())

    def head_path(self, fold: int) -> Path:
        return self.path / f"fold{fold}" / "head.h5"

    def fold_of(self, subject_id: str) -> int:
        for k, test in enumerate(self.folds):
            if subject_id in test:
                return k
        raise RunError(f"subject {subject_id!r} is not in run {self.path} (it has {sum(map(len, self.folds))})")


RUN_FILES = ("config.json", "folds.json", "report.json", COHORT_FILE, PROFILES_FILE)


def open_run(path: str | Path) -> Run:
    path = Path(path)
    for name in RUN_FILES:
        if not (path / name).is_file():
            raise RunError(f"{path} is not a finished training run (no {name})")
    config = TrainConfig.load(path / "config.json")
    folds = json.loads((path / "folds.json").read_text())["folds"]
    timings = json.loads((path / "timings.json").read_text()) if (path / "timings.json").is_file() else {}
    manifest = config.extra.get("manifest")
    recorded = json.loads((path / COHORT_FILE).read_text())
    digests = {(s, v): d for s, views in recorded["digests"].items() for v, d in views.items()}
    manifest_path = Path(manifest) if manifest else None
    return Run(
        path,
        config,
        folds,
        timings.get("weights_id"),
        manifest_path,
        digests,
        recorded["kind"],
        timings.get("int8_encoder_sha256"),
    )


def save_cohort_digests(path: Path, digests: dict[tuple[str, str], str], kind: str) -> None:
    """Record which images the run saw (so evaluate recognises them even under another subject id) and
    whether they were phantom screens or clinical images (the bedside display's banner says which)."""
    by_subject: dict[str, dict[str, str]] = {}
    for (subject, view), digest in digests.items():
        by_subject.setdefault(subject, {})[view] = digest
    (path / COHORT_FILE).write_text(json.dumps({"kind": kind, "digests": by_subject}, indent=1))


def save_profiles(path: Path, profiles: dict[str, ScannerProfile]) -> None:
    """Record the scanner profiles the run's images were cropped with (export copies them into the bundle)."""
    (path / PROFILES_FILE).write_text(json.dumps(profiles_mapping(profiles), indent=1))


def check_backbone(run: Run, fingerprint: str) -> None:
    """Refuse a backbone whose weights differ from the ones the run was trained (and validated) with."""
    if run.weights_id and fingerprint != run.weights_id:
        raise RunError(
            f"backbone weights differ from the ones {run.path} was trained with "
            f"({fingerprint} now vs {run.weights_id} in the run); was the weights file changed?"
        )


def load_heads(run: Run) -> list:
    from clkl.head import load_head

    heads = []
    for k in range(len(run.folds)):
        if not run.head_path(k).is_file():
            raise RunError(f"{run.head_path(k)} is missing")
        heads.append(load_head(run.head_path(k)))
    return heads
