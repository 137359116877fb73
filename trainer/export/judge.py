"""Export step 5: judge the bedside path (TFLite encoder + TFLite head) against the float model.

On the run's held-out fidelity subjects, plus an independent labelled cohort when one is given (with 11
held-out subjects one flipped call is 9 %, so a 98 % agreement bar needs more subjects than a split gives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibration.convert import quantization_debug
from calibration.fidelity import FidelityGroupSizes, FidelityReport, GateFitReport, compare
from calibration.split import ExportSplit
from edge_runtime.contracts import VIEWS
from trainer.config import ExportSettings
from trainer.dataset import Cohort
from trainer.export.bedside_head import OUTPUTS, BedsideEnsemble
from trainer.export.conversion import ConvertedEncoders
from trainer.export.final_model import FinalModel

Outputs = dict[str, np.ndarray]


@dataclass
class FidelityGroup:
    """Subjects judged together: their truth, the float model's answers and the bedside path's answers."""

    subject_ids: list[str]
    pdff: np.ndarray
    float_out: Outputs
    bundle_out: Outputs


def held_out_group(
    cohort: Cohort, final: FinalModel, encoders: ConvertedEncoders, head: BedsideEnsemble, split: ExportSplit
) -> FidelityGroup:
    """Args:
    cohort: the run's preprocessed images.
    final: the float model (its answers on these subjects were computed when it was trained).
    encoders: the converted encoders.
    head: the shipped head.
    split: the fidelity subjects.
    """
    index = {s: i for i, s in enumerate(cohort.ids)}
    pdff = cohort.pdff()[[index[s] for s in split.fidelity]]
    features = encoders.encode_views({v: [cohort.image(s, v) for s in split.fidelity] for v in VIEWS})
    return FidelityGroup(list(split.fidelity), pdff, final.fidelity_outputs, head.run(features))


def independent_group(
    independent: Cohort, final: FinalModel, encoders: ConvertedEncoders, head: BedsideEnsemble
) -> FidelityGroup:
    """Args:
    independent: an independent labelled cohort.
    final: the float model.
    encoders: the converted encoders.
    head: the shipped head.
    """
    images = {v: [independent.image(s, v) for s in independent.ids] for v in VIEWS}
    float_features = [final.reference_features(v, np.stack(images[v])) for v in VIEWS]
    bundle_out = head.run(encoders.encode_views(images))
    return FidelityGroup(list(independent.ids), independent.pdff(), final.head_outputs(float_features), bundle_out)


def _compare(groups: list[FidelityGroup], final: FinalModel, encoders: ConvertedEncoders, settings: ExportSettings):
    def joined(attr: str) -> Outputs:
        return {k: np.concatenate([getattr(g, attr)[k] for g in groups]) for k in OUTPUTS}

    return compare(
        np.concatenate([g.pdff for g in groups]),
        joined("float_out"),
        joined("bundle_out"),
        settings.decision_threshold,
        final.config.fatty_threshold,
        (encoders.bytes_bundle, encoders.bytes_float),
    )


def judge_fidelity(
    groups: dict[str, FidelityGroup],
    final: FinalModel,
    encoders: ConvertedEncoders,
    head: BedsideEnsemble,
    settings: ExportSettings,
    context: tuple[FidelityGroupSizes, GateFitReport],
) -> FidelityReport:
    """fidelity.json: the bars judged on all groups together, each group's own figures, and how the head, the gate
    and the guard were made.

    Args:
        groups: "held_out" and, when given, "independent".
        final: the float model (its fatty threshold).
        encoders: the converted encoders (sizes; the debugger runs on the representative dataset).
        head: the shipped head (its kind and bias correction are reported).
        settings: decision threshold and debugger settings.
        context: the sizes of the export's subject groups, and what the gate fit did.
    """
    figures, per_subject = _compare(list(groups.values()), final, encoders, settings)
    by_group = (
        {name: _compare([g], final, encoders, settings)[0] for name, g in groups.items()} if len(groups) > 1 else {}
    )
    debugger = []
    if settings.int8 and settings.debugger:
        first = final.encoders[VIEWS[0]]
        debugger = quantization_debug(first, encoders.samples[: settings.debugger_images])
    return FidelityReport(
        **figures.model_dump(),
        per_subject=per_subject,
        groups=by_group,
        independent_manifest=settings.fidelity_manifest if len(groups) > 1 else None,
        head=head.description,
        bias_correction=head.bias,
        debugger_top_layers=debugger,
        subjects=context[0],
        gate=context[1],
    )
