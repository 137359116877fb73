"""Float vs int8 on held-out subjects: does quantization change what the clinician is told?"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field
from sklearn.metrics import roc_auc_score

from edge_runtime.contracts import BiasCorrection, StrictModel

# docs/ARCHITECTURE.md performance bars for an int8 bundle against its float model.
BARS = {"class_agreement_min": 0.98, "auc_drop_max": 0.01, "pdff_mad_max": 0.5, "encoder_size_ratio_max": 0.27}


class FidelityFigures(StrictModel):
    """The bedside path against the float model on one group of held-out subjects, and the bars it misses."""

    n_subjects: int
    class_agreement: float
    auc_float: float | None = Field(description="None when the group holds one class only.")
    auc_int8: float | None
    auc_drop: float | None
    p_fatty_max_abs_diff: float
    pdff_mean_abs_diff: float
    pdff_max_abs_diff: float
    encoder_bytes: int
    float_encoder_bytes: int
    encoder_size_ratio: float
    bars: dict[str, float] = Field(default_factory=lambda: dict(BARS))
    misses: list[str]
    meets_bars: bool


class FidelitySubject(StrictModel):
    pdff: float
    p_float: float
    p_int8: float
    pdff_float: float
    pdff_int8: float


class DebuggerLayer(StrictModel):
    """One layer of TensorFlow Lite's quantization debugger: how far int8 moves it, relative to its scale."""

    tensor_name: str
    op_name: str
    num_elements: int | None = None
    scale: float | None = None
    zero_point: int | None = None
    mean_squared_error: float | None = None
    rmse_over_scale: float


class GuardFitReport(StrictModel):
    fitted_subjects: int
    fidelity_frames: int
    speckle: str | None = Field(None, description="Why the speckle part was not fitted, when it was not.")


class GateFitReport(StrictModel):
    """What export fitted of the view gate and the guard, and why a part was left out."""

    guard: GuardFitReport | None = None
    view_gate: str | None = Field(None, description="Why no view gate was fitted, when none was.")
    skipped: str | None = Field(None, description="Why neither was fitted (one encoder per view).")


class FidelityGroupSizes(StrictModel):
    train: int
    calibration: int
    fidelity: int
    independent: int


class FidelityReport(FidelityFigures):
    """fidelity.json: the bars judged on every held-out group together, each group's own figures, and how the
    bundle's head, bias correction, gate and guard came to be."""

    per_subject: list[FidelitySubject]
    groups: dict[str, FidelityFigures] = Field(default_factory=dict)
    independent_manifest: str | None = None
    head: str
    bias_correction: BiasCorrection | None = None
    debugger_top_layers: list[DebuggerLayer] = Field(default_factory=list)
    subjects: FidelityGroupSizes
    gate: GateFitReport


def compare(
    pdff_truth: np.ndarray,
    float_out: dict[str, np.ndarray],
    quant_out: dict[str, np.ndarray],
    threshold: float,
    fatty_pdff: float,
    encoder_bytes: tuple[int, int],
) -> tuple[FidelityFigures, list[FidelitySubject]]:
    """Agreement, AUC drop, PDFF differences, size ratio and the bars missed; and the figures per subject.

    Args:
        pdff_truth: MRI-PDFF per subject.
        float_out: the float model's p_fatty and pdff per subject.
        quant_out: the bundle's p_fatty and pdff per subject.
        threshold: p_fatty decision threshold.
        fatty_pdff: PDFF (%) that defines fatty.
        encoder_bytes: the bundle's and the float encoder's sizes.
    """
    truth = pdff_truth >= fatty_pdff
    both = 0 < truth.sum() < len(truth)
    auc_float = float(roc_auc_score(truth, float_out["p_fatty"])) if both else None
    auc_quant = float(roc_auc_score(truth, quant_out["p_fatty"])) if both else None
    pdff_diff = np.abs(float_out["pdff"] - quant_out["pdff"])
    figures: dict[str, Any] = {
        "n_subjects": len(truth),
        "class_agreement": float(np.mean((float_out["p_fatty"] >= threshold) == (quant_out["p_fatty"] >= threshold))),
        "auc_float": auc_float,
        "auc_int8": auc_quant,
        "auc_drop": (auc_float - auc_quant) if both else None,
        "p_fatty_max_abs_diff": float(np.max(np.abs(float_out["p_fatty"] - quant_out["p_fatty"]))),
        "pdff_mean_abs_diff": float(pdff_diff.mean()),
        "pdff_max_abs_diff": float(pdff_diff.max()),
        "encoder_bytes": encoder_bytes[0],
        "float_encoder_bytes": encoder_bytes[1],
        "encoder_size_ratio": encoder_bytes[0] / encoder_bytes[1],
    }
    misses = _misses(figures)
    per_subject = [
        FidelitySubject(pdff=float(t), p_float=float(pf), p_int8=float(pq), pdff_float=float(df), pdff_int8=float(dq))
        for t, pf, pq, df, dq in zip(
            pdff_truth, float_out["p_fatty"], quant_out["p_fatty"], float_out["pdff"], quant_out["pdff"], strict=True
        )
    ]
    return FidelityFigures(**figures, misses=misses, meets_bars=not misses), per_subject


def _misses(report: dict[str, Any]) -> list[str]:
    misses = []
    if report["class_agreement"] < BARS["class_agreement_min"]:
        misses.append(f"class agreement {report['class_agreement']:.3f} < {BARS['class_agreement_min']}")
    if report["auc_drop"] is not None and report["auc_drop"] > BARS["auc_drop_max"]:
        misses.append(f"AUC drop {report['auc_drop']:.4f} > {BARS['auc_drop_max']}")
    if report["pdff_mean_abs_diff"] > BARS["pdff_mad_max"]:
        misses.append(f"PDFF mean abs difference {report['pdff_mean_abs_diff']:.3f} > {BARS['pdff_mad_max']} pp")
    if report["encoder_size_ratio"] > BARS["encoder_size_ratio_max"]:
        misses.append(
            f"encoder size {report['encoder_size_ratio']:.1%} of float > {BARS['encoder_size_ratio_max']:.0%}"
        )
    return misses


def markdown(report: FidelityReport) -> str:
    def fmt(v: Any) -> str:
        return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    keys = (
        "n_subjects",
        "class_agreement",
        "auc_float",
        "auc_int8",
        "auc_drop",
        "p_fatty_max_abs_diff",
        "pdff_mean_abs_diff",
        "pdff_max_abs_diff",
        "encoder_size_ratio",
    )
    titles = {"held_out": "run's held-out subjects", "independent": "independent cohort"}
    names = ["all held-out", *(titles.get(g, g) for g in report.groups)]
    columns = [report, *report.groups.values()]
    lines = ["# int8 vs float fidelity (held-out subjects)", ""]
    lines += ["| measure | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    lines += [f"| {k} | " + " | ".join(fmt(getattr(c, k)) for c in columns) + " |" for k in keys]
    lines += ["", "Meets the bars." if report.meets_bars else "MISSES: " + "; ".join(report.misses), ""]
    lines += [f"Head: {report.head}.", ""]
    if report.bias_correction is not None:
        bias = report.bias_correction
        lines += [
            f"Bias correction: int8 feature error measured on {bias.images} calibration images "
            f"(mean |bias| {bias.mean_abs_feature_bias:.2e}) and removed in the head's MinMax layer.",
            "",
        ]
    if report.debugger_top_layers:
        lines += ["Quantization debugger, worst layers (RMSE / scale):", ""]
        lines += [f"- {r.tensor_name} ({r.op_name}): {r.rmse_over_scale:.3f}" for r in report.debugger_top_layers]
    return "\n".join(lines) + "\n"
