"""`trainer train`: one configuration, cross-validated, reported.

A run is: the export groups (``split.json``, decided now so an int8 encoder can be calibrated on them), the
features (cached; shared when an ablation passes them in), the folds, one head per fold, and the report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.errors import ConfigError
from edge_runtime.scanners.profiles import load_profiles
from trainer.config import TrainConfig
from trainer.dataset import Cohort, read_cohort
from trainer.holdout import export_groups, save_split
from trainer.manifest import ManifestError
from trainer.runs import save_cohort_digests, save_profiles

if TYPE_CHECKING:
    from trainer.extraction import Extraction


def load_labelled_cohort(
    manifest_path: str | Path, progress: bool = True, profiles: str | None = None, *, harmonisation: str
) -> Cohort:
    """The manifest's labelled subjects, read with the shipped scanner profiles plus a profiles file, through
    preprocess_frame with the run's harmonisation.

    Args:
        manifest_path: manifest.csv.
        progress: show a progress bar.
        profiles: a scanner profiles file for scanners beyond the shipped ones.
        harmonisation: the run's TrainConfig.harmonisation.
    """
    known = load_profiles(profiles)
    cohort = read_cohort(manifest_path, known, labelled_only=True, progress=progress, harmonisation=harmonisation)
    if len(cohort.subjects) < 4:
        found = f"only {len(cohort.subjects)} labelled subjects; training needs at least 4"
        raise ManifestError(Path(manifest_path), [found])
    return cohort


def require_harmonisation(cohort: Cohort, config: TrainConfig) -> None:
    """A cohort preprocessed with another harmonisation than the run's would train a model the bedside cannot
    reproduce: refuse it by name."""
    if cohort.harmonisation != config.harmonisation:
        raise ConfigError(
            f"the cohort was preprocessed with harmonisation {cohort.harmonisation!r} but the run asks for "
            f"{config.harmonisation!r}; read it with load_labelled_cohort(..., harmonisation=config.harmonisation)"
        )


def train_run(
    cohort: Cohort,
    config: TrainConfig,
    out_dir: Path,
    folds_file: Path | None = None,
    progress: bool = True,
    extraction: Extraction | None = None,
) -> dict[str, Any]:
    """Cross-validate, record what the run saw, write the report and the exam calibration; returns report.json.

    Args:
        cohort: the labelled cohort.
        config: the configuration.
        out_dir: the run directory.
        folds_file: reuse another run's folds.json.
        progress: show progress bars.
        extraction: features already extracted for this cohort (ablation rows share one extraction).
    """
    from clkl.tf_setup import device_summary
    from trainer.crossval import run_cross_validation
    from trainer.extraction import run_extraction
    from trainer.model_error import write_model_error
    from trainer.report import collect_predictions, write_report

    started = time.perf_counter()
    require_harmonisation(cohort, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    split = export_groups(cohort, config.fatty_threshold, config.seed, config.holdout_share)
    save_split(out_dir, split)
    save_cohort_digests(out_dir, cohort.digests, cohort.kind)
    save_profiles(out_dir, cohort.profiles)
    timings: dict[str, Any] = {"features": config.features}
    features = None
    if config.finetune is None:
        extraction = extraction or run_extraction(cohort, config, out_dir, split, progress)
        features = extraction.for_config(config)
        timings.update(extraction.timings, **extraction.record(out_dir))
    outcomes = run_cross_validation(cohort, config, out_dir, features, folds_file, progress)
    timings["folds_s"] = [o.seconds for o in outcomes]
    rows = collect_predictions(cohort, outcomes)
    timings["total_s"] = time.perf_counter() - started
    timings["device"] = device_summary()
    report = write_report(out_dir, rows, config, {"timings": timings})
    write_model_error(out_dir, rows, config)
    (out_dir / "timings.json").write_text(json.dumps(timings, indent=2))
    return report
