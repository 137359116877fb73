"""`trainer export`: a cross-validated run becomes a verified bedside bundle.

The whole flow is :func:`export_bundle`, one step per line; each step lives in its own module:

1. hold out calibration and fidelity subjects, and train the final head on the rest (``final_model``);
2. convert the encoder to int8, calibrated on the calibration subjects' images (``conversion``);
3. correct the head for the int8 encoder, optionally fine-tune it quantization-aware (``bedside_head``);
4. judge the bedside path against the float model on held-out subjects (``judge``);
5. fit the view gate and the out-of-distribution guard on the bundle encoder's features (``gate``);
6. write bundle.json through the declared contract, load the bundle as the bedside does (``writer``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.errors import FattyLiverError
from edge_runtime.schema import ExportSettings
from trainer.dataset import read_cohort
from trainer.export.bedside_head import bedside_head
from trainer.export.conversion import convert_encoders
from trainer.export.final_model import exportable, hold_out, train_final_model
from trainer.export.gate import fit_gate
from trainer.export.judge import held_out_group, independent_group, judge_fidelity
from trainer.export.writer import describe_bundle, record_export, verify_bundle, write_bundle
from trainer.runs import open_run

__all__ = ["ExportResult", "FidelityMiss", "export_bundle"]


class FidelityMiss(FattyLiverError):
    """The int8 bundle misses the fidelity bars (the bundle is still written, for inspection)."""


@dataclass
class ExportResult:
    bundle: Path
    sha: str
    fidelity: dict[str, Any]
    record: Path  # the run's record of this export (which subjects trained, calibrated and judged it)
    seconds: float


def export_bundle(
    run_dir: str | Path, out_dir: str | Path, settings: ExportSettings, progress: bool = True
) -> ExportResult:
    """Export a run as a bundle; raises FidelityMiss (after writing) when the int8 bars are missed.

    Args:
        run_dir: a finished CLKL run.
        out_dir: the bundle directory to write.
        settings: every export knob; recorded in bundle.json.
        progress: show progress bars.
    """
    started, out = time.perf_counter(), Path(out_dir)
    run = exportable(open_run(run_dir), settings)
    profiles = run.profiles
    harmonisation = run.config.harmonisation
    independent = (
        read_cohort(settings.fidelity_manifest, profiles, True, harmonisation=harmonisation)
        if settings.fidelity_manifest
        else None
    )
    cohort = read_cohort(run.manifest, profiles, labelled_only=True, progress=progress, harmonisation=harmonisation)
    split = hold_out(cohort, run, settings)
    final = train_final_model(cohort, run, split, settings, progress)
    encoders = convert_encoders(cohort, final, split, settings, progress)
    head = bedside_head(cohort, final, encoders, split.train, settings, progress)
    groups = {"held_out": held_out_group(cohort, final, encoders, head, split)}
    if independent is not None:
        groups["independent"] = independent_group(independent, final, encoders, head)
    fidelity = judge_fidelity(groups, final, encoders, head, settings)
    fidelity["subjects"] = {**split.sizes(), "independent": len(independent.ids) if independent else 0}
    gate = fit_gate(cohort, encoders, split)
    fidelity["gate"] = gate.report
    meta = describe_bundle(run, final, encoders, head, split, settings, out)
    meta.view_gate, meta.guard = gate.view_gate, gate.guard
    write_bundle(out, meta, encoders, head, fidelity, gate.gate)
    bundle = verify_bundle(out, encoders, cohort.image(split.fidelity[0], "liver"))
    record = record_export(run, bundle, split, [s for g in groups.values() for s in g.subject_ids], settings)
    if not fidelity["meets_bars"] and not settings.allow_fidelity_miss:
        raise FidelityMiss("; ".join(fidelity["misses"]))
    return ExportResult(out, bundle.sha, fidelity, record, time.perf_counter() - started)
