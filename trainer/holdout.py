"""Which subjects will train, calibrate and judge a run's bundle, decided when the run is trained.

The calibration and fidelity groups (each ``holdout_share`` of the subjects, stratified by vendor x class)
are drawn once, when the run is trained, and saved as ``split.json``. ``trainer train --features int8``
calibrates its int8 encoder on the calibration group before any feature is extracted, and ``trainer export``
uses the same groups, so the encoder a bundle ships is the one the head was trained with.
"""

from __future__ import annotations

import json
from pathlib import Path

from calibration.split import ExportSplit, SplitError, export_split
from trainer.dataset import Cohort

SPLIT_FILE = "split.json"
MIN_HOLDOUT = 2  # subjects in each of the calibration and fidelity groups, at least


def export_groups(
    cohort: Cohort,
    fatty_threshold: float,
    seed: int,
    share: float,
    sizes: tuple[int | None, int | None] = (None, None),
) -> ExportSplit:
    """Training, calibration and fidelity groups of the cohort's labelled subjects.

    Args:
        cohort: the run's labelled cohort.
        fatty_threshold: PDFF (%) that defines fatty (the groups are stratified by it).
        seed: the run's seed.
        share: share of the subjects in each held-out group, unless sizes say otherwise.
        sizes: explicit (calibration, fidelity) group sizes; None takes the share.
    """
    default = max(MIN_HOLDOUT, round(share * len(cohort.ids)))
    fatty = list(cohort.pdff() >= fatty_threshold)
    n_calibration, n_fidelity = (size or default for size in sizes)
    return export_split(cohort.ids, cohort.vendors(), fatty, n_calibration, n_fidelity, seed)


def save_split(run_dir: Path, split: ExportSplit) -> None:
    groups = {"train": split.train, "calibration": split.calibration, "fidelity": split.fidelity}
    (run_dir / SPLIT_FILE).write_text(json.dumps(groups, indent=1))


def load_split(run_dir: Path) -> ExportSplit:
    """The run's recorded groups; a SplitError when the run has none or they are unreadable."""
    path = run_dir / SPLIT_FILE
    if not path.is_file():
        raise SplitError(f"{path} is missing: {run_dir} is not a complete training run")
    try:
        groups = json.loads(path.read_text())
        split = ExportSplit(groups["train"], groups["calibration"], groups["fidelity"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SplitError(f"{path}: not a split record ({exc})") from exc
    split.check_disjoint()
    return split
