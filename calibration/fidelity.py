"""Float vs int8 on held-out subjects: does quantization change what the clinician is told?"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

# docs/ARCHITECTURE.md performance bars for an int8 bundle against its float model.
BARS = {"class_agreement_min": 0.98, "auc_drop_max": 0.01, "pdff_mad_max": 0.5, "encoder_size_ratio_max": 0.27}


def compare(
    pdff_truth: np.ndarray,
    float_out: dict[str, np.ndarray],
    quant_out: dict[str, np.ndarray],
    threshold: float,
    fatty_pdff: float,
    encoder_bytes: int,
    float_encoder_bytes: int,
) -> dict[str, Any]:
    """The fidelity report: agreement, AUC drop, PDFF differences, size ratio, per subject, and the bars missed.

    Args:
        pdff_truth: MRI-PDFF per subject.
        float_out: the float model's p_fatty and pdff per subject.
        quant_out: the bundle's p_fatty and pdff per subject.
        threshold: p_fatty decision threshold.
        fatty_pdff: PDFF (%) that defines fatty.
        encoder_bytes: the bundle's encoder size.
        float_encoder_bytes: the float encoder's size.
    """
    truth = pdff_truth >= fatty_pdff
    both = 0 < truth.sum() < len(truth)
    auc_float = float(roc_auc_score(truth, float_out["p_fatty"])) if both else None
    auc_quant = float(roc_auc_score(truth, quant_out["p_fatty"])) if both else None
    pdff_diff = np.abs(float_out["pdff"] - quant_out["pdff"])
    report: dict[str, Any] = {
        "n_subjects": len(truth),
        "class_agreement": float(np.mean((float_out["p_fatty"] >= threshold) == (quant_out["p_fatty"] >= threshold))),
        "auc_float": auc_float,
        "auc_int8": auc_quant,
        "auc_drop": (auc_float - auc_quant) if both else None,
        "p_fatty_max_abs_diff": float(np.max(np.abs(float_out["p_fatty"] - quant_out["p_fatty"]))),
        "pdff_mean_abs_diff": float(pdff_diff.mean()),
        "pdff_max_abs_diff": float(pdff_diff.max()),
        "encoder_bytes": encoder_bytes,
        "float_encoder_bytes": float_encoder_bytes,
        "encoder_size_ratio": encoder_bytes / float_encoder_bytes,
        "bars": BARS,
        "per_subject": [
            {
                "pdff": float(t),
                "p_float": float(pf),
                "p_int8": float(pq),
                "pdff_float": float(df),
                "pdff_int8": float(dq),
            }
            for t, pf, pq, df, dq in zip(
                pdff_truth,
                float_out["p_fatty"],
                quant_out["p_fatty"],
                float_out["pdff"],
                quant_out["pdff"],
                strict=True,
            )
        ],
    }
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
    report["misses"] = misses
    report["meets_bars"] = not misses
    return report


def markdown(report: dict[str, Any]) -> str:
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
    groups = report.get("groups") or {}
    titles = {"held_out": "run's held-out subjects", "independent": "independent cohort"}
    names = ["all held-out", *(titles.get(g, g) for g in groups)]
    columns = [report, *groups.values()]
    lines = ["# int8 vs float fidelity (held-out subjects)", ""]
    lines += ["| measure | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    lines += [f"| {k} | " + " | ".join(fmt(c.get(k)) for c in columns) + " |" for k in keys]
    lines += ["", "Meets the bars." if report["meets_bars"] else "MISSES: " + "; ".join(report["misses"]), ""]
    if report.get("head"):
        lines += [f"Head: {report['head']}.", ""]
    if report.get("bias_correction"):
        bias = report["bias_correction"]
        lines += [
            f"Bias correction: int8 feature error measured on {bias['images']} calibration images "
            f"(mean |bias| {bias['mean_abs_feature_bias']:.2e}) and removed in the head's MinMax layer.",
            "",
        ]
    if report.get("debugger_top_layers"):
        lines += ["Quantization debugger, worst layers (RMSE / scale):", ""]
        lines += [
            f"- {r['tensor_name']} ({r['op_name']}): {r['rmse_over_scale']:.3f}" for r in report["debugger_top_layers"]
        ]
    return "\n".join(lines) + "\n"
