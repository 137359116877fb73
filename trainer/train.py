"""`trainer train`: one configuration, cross-validated, reported."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig
from trainer.dataset import Cohort, read_cohort
from trainer.manifest import ManifestError
from trainer.runs import save_cohort_digests


def load_labelled_cohort(manifest_path: str | Path, progress: bool = True) -> Cohort:
    cohort = read_cohort(manifest_path, labelled_only=True, progress=progress)
    if len(cohort.subjects) < 4:
        found = f"only {len(cohort.subjects)} labelled subjects; training needs at least 4"
        raise ManifestError(Path(manifest_path), [found])
    return cohort


def train_run(
    cohort: Cohort, config: TrainConfig, out_dir: Path, folds_file: Path | None = None, progress: bool = True
) -> dict[str, Any]:
    """Cross-validate, record the cohort's image digests, write the report; returns report.json's content.

    Args:
        cohort: the labelled cohort.
        config: the configuration.
        out_dir: the run directory.
        folds_file: reuse another run's folds.json.
        progress: show progress bars.
    """
    from clkl.tf_setup import device_summary
    from trainer.crossval import run_cross_validation
    from trainer.report import collect_predictions, write_report

    started = time.perf_counter()
    outcomes, timings = run_cross_validation(cohort, config, out_dir, folds_file, progress)
    save_cohort_digests(out_dir, cohort.digests)
    rows = collect_predictions(cohort, outcomes)
    timings["total_s"] = time.perf_counter() - started
    timings["device"] = device_summary()
    report = write_report(out_dir, rows, config, {"timings": timings})
    (out_dir / "timings.json").write_text(json.dumps(timings, indent=2))
    return report
