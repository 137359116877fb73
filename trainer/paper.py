"""The figures Kim et al. 2021 report for CLKL, each with how it was computed, so every comparison says so.

The paper's AUC is the mean over its five folds and its R^2 comes from one fold; this project's reports give
figures pooled over all subjects (each predicted once, by the fold that held it out) and the mean over folds.
Putting a pooled figure next to a fold mean without saying so would compare different things.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PaperFigure:
    metric: str  # key in this project's metric dictionaries
    label: str
    value: float
    percent: bool
    how: str  # how the paper computed it

    def text(self) -> str:
        shown = f"{100 * self.value:.1f} %" if self.percent else f"{self.value:g}"
        return f"{self.label} {shown} ({self.how})"


PAPER_CLKL = (
    PaperFigure("accuracy", "accuracy", 0.801, True, "5-fold CV"),
    PaperFigure("precision", "precision", 0.862, True, "5-fold CV"),
    PaperFigure("auc", "AUC", 0.87, False, "mean of 5 folds"),
    PaperFigure("r2", "R^2", 0.633, False, "one fold"),
)


def paper_line() -> str:
    return "Paper (Kim et al. 2021, CLKL, real patients): " + ", ".join(f.text() for f in PAPER_CLKL) + "."


def _ours(value: float | None, percent: bool) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f} %" if percent else f"{value:.3f}"


def comparison_table(summary: dict[str, Any]) -> list[str]:
    """Markdown rows: this run pooled, this run's mean over folds, and the paper's figure with its method."""
    n = summary["n_subjects"]
    lines = [
        f"| metric | this run, pooled over all {n} subjects | this run, mean over folds +/- SD | paper |",
        "| --- | --- | --- | --- |",
    ]
    for figure in PAPER_CLKL:
        pooled = summary["pooled"].get(figure.metric)
        mean_sd = summary["fold_mean_sd"].get(figure.metric)
        folds = "n/a" if not mean_sd else f"{_ours(mean_sd[0], figure.percent)} +/- {_ours(mean_sd[1], figure.percent)}"
        lines.append(f"| {figure.metric} | {_ours(pooled, figure.percent)} | {folds} | {figure.text()} |")
    return lines
