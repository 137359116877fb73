"""Export steps 6-7: write the bundle through its declared contract, then load it the way the bedside does.

The run keeps a record of every export (``exports/<bundle name>.json``): the subjects of each group, in the
order fidelity.json lists them, and the settings. The bundle itself carries only a hash of who calibrated it,
never subject ids.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from calibration.fidelity import FidelityReport, markdown
from calibration.split import ExportSplit, subject_hash
from edge_runtime.contracts import (
    AcceptanceCriteria,
    BundleFiles,
    BundleMeta,
    CalibrationInfo,
    ClassOutput,
    CvMetrics,
    EnsembleHead,
    EnsembleSpec,
    ExamCalibration,
    FeatureSpec,
    GuardSpec,
    HeadOutputs,
    InputSpec,
    Outputs,
    PdffOutput,
    Quantization,
    QuantParams,
    TrainingInfo,
    ViewGateSpec,
)
from edge_runtime.model.bundle import Bundle, load_bundle, sha256_file
from edge_runtime.model.gate import GATE_FILE
from trainer.config import ExportSettings
from trainer.export.bedside_head import BedsideEnsemble, ExportError, HeadKind
from trainer.export.conversion import ConvertedEncoders
from trainer.export.final_model import FinalModel, validated_outputs
from trainer.export.gate import GateFit
from trainer.export.guard import SPECKLE_MIN_SUBJECTS
from trainer.model_error import load_model_error
from trainer.runs import Run
from trainer.site.criteria import default_criteria

FIDELITY_FILES = ("fidelity.json", "fidelity.md")
HEAD_FILE = "head.tflite"
ENSEMBLE_METHOD = "mean of logits and of log(1 + PDFF) over the heads; spread = their standard deviation"


def _encoder_kind(settings: ExportSettings, head: BedsideEnsemble) -> str:
    if not settings.int8:
        return "float32"
    if head.kind is HeadKind.INT8_FEATURES:
        return "int8 full-integer post-training quantization, calibrated when the run was trained"
    return "int8 full-integer post-training quantization"


def _quantization(encoders: ConvertedEncoders, head: BedsideEnsemble, settings: ExportSettings) -> Quantization:
    probe = next(iter(encoders.runners.values()))
    return Quantization(
        encoder=_encoder_kind(settings, head),
        input=QuantParams(scale=probe.input_quant.scale, zero_point=probe.input_quant.zero_point),
        output=QuantParams(scale=probe.output_quant.scale, zero_point=probe.output_quant.zero_point),
        head=head.description,
        bias_correction=head.bias,
        representative_samples=len(encoders.samples) if settings.int8 else 0,
    )


def _outputs(run: Run, settings: ExportSettings) -> Outputs:
    validated = validated_outputs(run.config.task)
    return Outputs(
        p_fatty=ClassOutput(
            threshold=settings.decision_threshold,
            meaning=f"probability that MRI-{run.config.threshold_text}",
            validated=validated["p_fatty"],
        ),
        pdff=PdffOutput(meaning="estimated MRI proton-density fat fraction", validated=validated["pdff"]),
    )


def _training(run: Run, final: FinalModel) -> TrainingInfo:
    return TrainingInfo(
        run=str(run.path),
        weights=final.config.weights,
        weights_id=run.weights_id,
        finetune=final.config.finetune,
        augment=final.config.augment,
        appearance=final.config.appearance,
        epochs=final.config.n_epochs,
        task=run.config.task,
        features=run.config.features,
        cohort=run.cohort_kind,
        subjects=_subjects(run),
        federation=run.config.extra.get("federation"),
    )


def _subjects(run: Run) -> int:
    """Subjects the run cross-validated: every site's, for a federated run."""
    federation = run.config.extra.get("federation")
    return sum(federation["subjects"].values()) if federation else sum(len(fold) for fold in run.folds)


def _calibration(split: ExportSplit) -> CalibrationInfo:
    return CalibrationInfo(
        subjects=len(split.calibration),
        subject_id_sha256=subject_hash(split.calibration),
        fidelity_subjects=len(split.fidelity),
        train_subjects=len(split.train),
        train_subject_id_sha256=subject_hash(split.train),
    )


@dataclass(frozen=True)
class ModelParts:
    """bundle.json's parts the model itself decides: everything but the gate, the guard, the files and their hashes."""

    name: str
    version: str
    created: dt.datetime
    input: InputSpec
    features: FeatureSpec
    outputs: Outputs
    head_outputs: HeadOutputs
    quantization: Quantization
    calibration: CalibrationInfo
    training: TrainingInfo
    cv_metrics: CvMetrics
    export: dict[str, Any]
    exam: ExamCalibration
    scanners: dict[str, Any]
    ensemble: EnsembleSpec | None
    acceptance: AcceptanceCriteria | None

    def as_fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def describe_bundle(
    run: Run,
    final: FinalModel,
    encoders: ConvertedEncoders,
    head: BedsideEnsemble,
    split: ExportSplit,
    settings,
    out: Path,
) -> ModelParts:
    """bundle.json's typed parts that the model itself decides; the gate, the guard, the files and their hashes
    join them when the bundle is written (:func:`write_bundle` builds BundleMeta once, from all of them).

    Args:
        run: the cross-validated run (its task decides which outputs are validated; its metrics are copied).
        final: the exported float model (pooling, epochs, weights).
        encoders: the converted encoders (files, tensor types, quantization parameters).
        head: the shipped head (output tensor indices, kind, bias correction).
        split: who trained, calibrated and judged the bundle (counts and hashes only).
        settings: the export settings, recorded whole.
        out: the bundle directory (its name is the default bundle name).
    """
    probe = next(iter(encoders.runners.values()))
    report = json.loads((run.path / "report.json").read_text())
    exam = load_model_error(run.path)
    return ModelParts(
        name=settings.name or out.name,
        version=settings.version,
        created=dt.datetime.now(dt.UTC).replace(microsecond=0),
        input=InputSpec(dtype=np.dtype(probe.input_dtype).name, harmonisation=final.config.harmonisation),
        features=FeatureSpec(
            size=int(probe.interpreter.get_output_details()[0]["shape"][-1]),
            dtype=np.dtype(probe.output_dtype).name,
            pooling=final.config.pooling,
        ),
        outputs=_outputs(run, settings),
        head_outputs=HeadOutputs(**head.members[0].outputs),
        quantization=_quantization(encoders, head, settings),
        calibration=_calibration(split),
        training=_training(run, final),
        cv_metrics=CvMetrics(
            task=run.config.task,
            pooled=report.get("pooled"),
            ci95=report.get("ci95"),
            fold_mean_sd=report.get("fold_mean_sd"),
        ),
        export=settings.model_dump(mode="json"),
        exam=exam,
        scanners=run.scanners,
        ensemble=_ensemble(head, final.config.ensemble_subsample),
        acceptance=default_criteria(report.get("pooled") or {}, interval_coverage(exam)),
    )


def interval_coverage(exam: ExamCalibration) -> float | None:
    """The PDFF interval's declared coverage, whichever interval the bundle states."""
    stated = exam.pdff_normalised or exam.pdff_interval
    return stated.coverage if stated is not None else None


def _ensemble(head: BedsideEnsemble, subsample: float) -> EnsembleSpec | None:
    """The bagged heads beside files.head, with their output indices; None for a single head."""
    if len(head.members) < 2:
        return None
    heads = [EnsembleHead(file=bag_file(m), **member.outputs) for m, member in enumerate(head.members[1:], start=1)]
    return EnsembleSpec(method=ENSEMBLE_METHOD, subsample=subsample, heads=heads)


def bag_file(member: int) -> str:
    return f"head_bag{member}.tflite"


def write_bundle(
    out: Path,
    parts: ModelParts,
    models: tuple[ConvertedEncoders, BedsideEnsemble],
    fidelity: FidelityReport,
    gate: GateFit,
) -> BundleMeta:
    """Every model and report file, then bundle.json with the SHA-256 of each (bundle.json is the root of trust).

    Args:
        out: the bundle directory.
        parts: bundle.json's parts from describe_bundle.
        models: the encoder file(s) and the head.
        fidelity: the fidelity report (JSON and Markdown).
        gate: the view gate and guard export fitted (arrays and bundle.json parts).
    """
    encoders, head = models
    out.mkdir(parents=True, exist_ok=True)
    for name, blob in encoders.blobs.items():
        (out / name).write_bytes(blob)
    (out / HEAD_FILE).write_bytes(head.members[0].blob)
    bags = [bag_file(m) for m in range(1, len(head.members))]
    for name, member in zip(bags, head.members[1:], strict=True):
        (out / name).write_bytes(member.blob)
    (out / FIDELITY_FILES[0]).write_text(fidelity.model_dump_json(indent=2))
    (out / FIDELITY_FILES[1]).write_text(markdown(fidelity) + gate_markdown(gate.view_gate, gate.guard))
    has_gate = gate.gate is not None and (gate.view_gate is not None or gate.guard is not None)
    if has_gate:
        (out / GATE_FILE).write_bytes(gate.gate.to_bytes())
    files = BundleFiles(
        encoder=encoders.files, head=HEAD_FILE, fidelity=FIDELITY_FILES[0], gate=GATE_FILE if has_gate else None
    )
    listed = sorted({*encoders.blobs, HEAD_FILE, *bags, *FIDELITY_FILES, *([GATE_FILE] if has_gate else [])})
    meta = BundleMeta(
        **parts.as_fields(),
        files=files,
        view_gate=gate.view_gate,
        guard=gate.guard,
        sha256={name: sha256_file(out / name) for name in listed},
    )
    meta.write(out / "bundle.json")
    return meta


def gate_markdown(view_gate: ViewGateSpec | None, guard: GuardSpec | None) -> str:
    """The view gate's cross-validated confusion and the guard's false alarms, for fidelity.md."""
    lines = []
    if view_gate is not None:
        gate = view_gate
        admitted = f"{100 * gate.cv_other_admitted:.1f} %"
        admitted += f"; view frames filed under the other view: {100 * gate.cv_view_swapped:.1f} %"
        lines += ["", "## View gate (subject-level CV on the bundle encoder's features)", ""]
        lines += [f"Confidence floor {gate.confidence_floor:.2f}; other frames admitted into pairing: {admitted}.", ""]
        lines += ["| true \\ predicted | " + " | ".join(gate.classes) + " |", "| --- | --- | --- | --- |"]
        for name, row in zip(gate.classes, gate.cv_confusion, strict=True):
            lines.append(f"| {name} | " + " | ".join(str(n) for n in row) + " |")
    if guard is not None:
        far = guard.held_out_false_alarm
        measured = f"{100 * far:.1f} %" if far is not None else "not measured (no fidelity subjects)"
        lines += ["", "## Out-of-distribution guard", ""]
        target = f"{100 * guard.false_alarm_target:.0f} %"
        lines.append(f"Target false alarms {target}; on the fidelity subjects {measured}.")
        if guard.speckle is not None:
            lines.append("Parts: features, speckle texture and clipping.")
        else:
            needs = f"it needs {SPECKLE_MIN_SUBJECTS} train and calibration subjects"
            lines.append(f"Parts: features and clipping; speckle texture not fitted ({needs}).")
    return "\n".join(lines) + ("\n" if lines else "")


def verify_bundle(out: Path, models: tuple[ConvertedEncoders, BedsideEnsemble], check_image: np.ndarray) -> Bundle:
    """Load the bundle as the bedside does and prove it computes exactly the features and answer export judged."""
    encoders, head = models
    bundle = load_bundle(out)
    features = {}
    for view in bundle.encoders:
        features[view] = bundle.encode(view, check_image)
        exported = encoders.encode(view, [check_image])[0]
        worst = float(np.max(np.abs(features[view] - exported)))
        if worst > 1e-6:
            raise ExportError(f"{out}: the bedside's {view} features differ from export's by up to {worst:g}")
    bedside = bundle.answer(features)
    judged = head.run({v: f[None] for v, f in features.items()})
    if abs(bedside.p_fatty - judged["p_fatty"][0]) > 1e-6 or abs(bedside.pdff - judged["pdff"][0]) > 1e-4:
        raise ExportError(f"{out}: the bedside's ensemble answers {bedside} where export judged {judged}")
    return bundle


def record_export(run: Run, bundle: Bundle, split: ExportSplit, fidelity_ids: list[str], settings) -> Path:
    """exports/<name>.json in the run: which subjects trained, calibrated and judged this bundle.

    Args:
        run: the exported run (the record lands in its exports/ folder).
        bundle: the verified bundle.
        split: who trained, calibrated and judged it.
        fidelity_ids: subject ids in the order of fidelity.json's per_subject list.
        settings: the export settings.
    """
    record = {
        "bundle": str(bundle.root),
        "sha": bundle.sha,
        "created": bundle.meta.created.isoformat(),
        "settings": settings.model_dump(mode="json"),
        "split": {"train": split.train, "calibration": split.calibration, "fidelity": split.fidelity},
        "fidelity_per_subject_ids": fidelity_ids,
    }
    path = run.path / "exports" / f"{bundle.name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return path
