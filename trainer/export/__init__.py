"""`trainer export`: a cross-validated run becomes a verified bedside bundle.

The whole flow is :func:`export_bundle`, one step per line; each step lives in its own module:

1. hold out calibration and fidelity subjects, and train the final head on the rest (``final_model``);
2. convert the encoder to int8, calibrated on the calibration subjects' images (``conversion``);
3. correct the head for the int8 encoder, optionally fine-tune it quantization-aware (``bedside_head``);
4. fit the view gate and the out-of-distribution guard on the bundle encoder's features (``gate``);
5. judge the bedside path against the float model on held-out subjects (``judge``);
6. write the files, then bundle.json once, from every typed part; load the bundle as the bedside does
   (``writer``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from calibration.fidelity import FidelityGroupSizes, FidelityReport
from edge_runtime.contracts import VIEWS
from edge_runtime.errors import FattyLiverError
from trainer import gate_features
from trainer.config import ExportSettings
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
    fidelity: FidelityReport
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
    profiles, harmonisation = run.profiles, run.config.harmonisation
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
    gate = fit_gate(cohort, encoders, split)
    groups = {"held_out": held_out_group(cohort, final, encoders, head, split)}
    if independent is not None:
        groups["independent"] = independent_group(independent, final, encoders, head)
    sizes = FidelityGroupSizes(**split.sizes(), independent=len(independent.ids) if independent else 0)
    fidelity = judge_fidelity(groups, final, encoders, head, settings, (sizes, gate.report))
    parts = describe_bundle(run, final, encoders, head, split, settings, out)
    write_bundle(out, parts, (encoders, head), fidelity, gate)
    bundle = verify_bundle(out, (encoders, head), cohort.image(split.fidelity[0], "liver"))
    record = record_export(run, bundle, split, [s for g in groups.values() for s in g.subject_ids], settings)
    if gate.features is not None:
        encoder = encoders.blobs[encoders.files[VIEWS[0]]]
        gate_features.save(gate.features, gate_features.path_for(run.path, gate_features.encoder_sha256(encoder)))
    if not fidelity.meets_bars and not settings.allow_fidelity_miss:
        raise FidelityMiss("; ".join(fidelity.misses))
    return ExportResult(out, bundle.sha, fidelity, record, time.perf_counter() - started)
