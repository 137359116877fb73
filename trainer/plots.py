"""Plots people would rather see than read: ROC, confusion matrix, PDFF scatter, Bland-Altman, loss curves."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve

from edge_runtime.contracts import P_FATTY_THRESHOLD
from trainer.config import TrainConfig


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def roc_plot(
    path: Path, pdff: np.ndarray, score: np.ndarray, threshold: float, title: str = "ROC (pooled over folds)"
) -> None:
    """ROC curves against PDFF >= threshold and PDFF >= 10 %.

    Args:
        path: PNG to write.
        pdff: MRI-PDFF per subject.
        score: the model's score per subject.
        threshold: PDFF (%) that defines fatty.
        title: what the curve is of.
    """
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for cut, style in ((threshold, "-"), (10.0, "--")):
        truth = pdff >= cut
        if 0 < truth.sum() < len(truth):
            fpr, tpr, _ = roc_curve(truth, score)
            ax.plot(fpr, tpr, style, label=f"PDFF >= {cut:g} %")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title)
    ax.legend(loc="lower right")
    _save(fig, path)


def confusion_plot(path: Path, matrix: list[list[int]]) -> None:
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.imshow(matrix, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=14)
    ax.set_xticks([0, 1], ["normal", "fatty"])
    ax.set_yticks([0, 1], ["normal", "fatty"])
    ax.set(xlabel="predicted", ylabel="truth (MRI-PDFF)", title="Confusion matrix")
    _save(fig, path)


def scatter_plot(path: Path, pdff: np.ndarray, predicted: np.ndarray) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(pdff, predicted, s=14, alpha=0.7)
    hi = float(max(pdff.max(), predicted.max(), 10))
    ax.plot([0, hi], [0, hi], "--", color="grey", label="identity")
    ax.set(xlabel="MRI-PDFF (%)", ylabel="predicted PDFF (%)", title="PDFF: predicted vs truth")
    ax.legend()
    _save(fig, path)


def bland_altman_plot(path: Path, pdff: np.ndarray, predicted: np.ndarray) -> None:
    mean, diff = (pdff + predicted) / 2, predicted - pdff
    bias, sd = float(diff.mean()), float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(mean, diff, s=14, alpha=0.7)
    for y, style, label in (
        (bias, "-", f"bias {bias:.2f}"),
        (bias + 1.96 * sd, "--", "+1.96 SD"),
        (bias - 1.96 * sd, "--", "-1.96 SD"),
    ):
        ax.axhline(y, linestyle=style, color="grey", label=label)
    ax.set(xlabel="mean of predicted and MRI-PDFF (%)", ylabel="predicted - MRI-PDFF (%)", title="Bland-Altman")
    ax.legend(fontsize=8)
    _save(fig, path)


def loss_plot(path: Path, run_dir: Path) -> None:
    """Each fold's training loss (a run without fold heads, a federated one, has none to draw)."""
    histories = sorted(run_dir.glob("fold*/history.json"))
    if not histories:
        return
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for hist_file in histories:
        loss = json.loads(hist_file.read_text()).get("loss", [])
        ax.plot(loss, label=hist_file.parent.name, lw=1)
    ax.set(xlabel="epoch", ylabel="training loss", title="Training loss per fold", yscale="log")
    ax.legend(fontsize=8)
    _save(fig, path)


def run_plots(out_dir: Path, arrays: dict[str, np.ndarray], config: TrainConfig) -> None:
    from trainer.metrics import confusion

    pdff = arrays["pdff"]
    score = arrays.get("p_fatty", arrays.get("pdff_pred"))
    cut = P_FATTY_THRESHOLD if "p_fatty" in arrays else config.fatty_threshold
    roc_plot(out_dir / "roc.png", pdff, score, config.fatty_threshold)
    confusion_plot(out_dir / "confusion.png", confusion(pdff, score, cut, config.fatty_threshold))
    if "pdff_pred" in arrays:
        scatter_plot(out_dir / "pdff_scatter.png", pdff, arrays["pdff_pred"])
        bland_altman_plot(out_dir / "bland_altman.png", pdff, arrays["pdff_pred"])
    loss_plot(out_dir / "loss.png", out_dir)


def risk_coverage_plot(path: Path, curve: list[tuple[float, float]], point: tuple[float, float]) -> None:
    """Accuracy of definite calls against the share of subjects given one, most confident first; the bundle's
    operating point (its class sets' cross-fitted share and accuracy) marked."""
    fig, ax = plt.subplots(figsize=(4.8, 4.0))
    ax.plot([c for c, _ in curve], [a for _, a in curve], color="tab:blue", label="most confident called first")
    ax.plot(*point, "o", color="tab:red", ms=7, label=f"class sets: {point[0]:.0%} called, {point[1]:.1%} right")
    ax.set(xlabel="share of subjects with a definite call", ylabel="accuracy of definite calls", ylim=(0.5, 1.01))
    ax.set_title("Risk-coverage (out-of-fold, cross-fitted)")
    ax.legend(fontsize=8, loc="lower left")
    _save(fig, path)


def reliability_plot(path: Path, probabilities: dict[str, list[float]], bins: int) -> None:
    """Observed fatty rate against mean predicted p_fatty per bin, raw and calibrated; dot area = subjects."""
    from trainer.model_error import reliability_bins

    y = np.asarray(probabilities["y"])
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfectly calibrated")
    for key, colour in (("raw", "tab:red"), ("calibrated", "tab:blue")):
        counts, mean_p, rate = zip(*reliability_bins(y, np.asarray(probabilities[key]), bins), strict=True)
        sizes = [12 * count for count in counts]
        ax.plot(mean_p, rate, color=colour, lw=1, marker="o", ms=4, label=f"{key} p_fatty")
        ax.scatter(mean_p, rate, s=sizes, color=colour, alpha=0.35)
    ax.set(xlabel="mean predicted p_fatty", ylabel="observed share fatty", xlim=(0, 1), ylim=(0, 1))
    ax.set_title("Reliability (out-of-fold)")
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)
