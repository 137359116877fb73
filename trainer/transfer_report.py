"""The transfer report: a table and a plot of within-vendor vs across-vendor figures (trainer.transfer)."""

from __future__ import annotations

from typing import Any

from trainer.paper import paper_line
from trainer.report import metric_cell

WITHIN = "within-vendor CV"


def _row_table(setting: dict[str, Any]) -> list[str]:
    lines = [
        "| trained on -> tested on | train subjects | test subjects | AUC across | AUC within | specificity across | "
        "recall across | accuracy across | R^2 across |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    scored_columns = ("specificity", "recall", "accuracy", "r2")  # of the across prediction, after the AUCs
    for name, row in setting["rows"].items():
        across, within = row["across"], row["within"]
        cells = [name, row["n_train"], across["n_subjects"], metric_cell(across, "auc"), metric_cell(within, "auc")]
        cells += [metric_cell(across, key) for key in scored_columns]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    cv = setting[WITHIN]
    cells = [f"{WITHIN} (all vendors, pooled)", "", cv["n_subjects"], "", metric_cell(cv, "auc")]
    cells += [metric_cell(cv, key) for key in scored_columns]
    lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def mean_across_auc(setting: dict[str, Any]) -> float:
    """The mean AUC over the transfer rows: one number to rank appearance settings by."""
    values = [row["across"]["pooled"].get("auc") or 0.0 for row in setting["rows"].values()]
    return sum(values) / len(values)


def _study_table(results: dict[str, Any]) -> list[str]:
    settings = results["settings"]
    names = list(next(iter(settings.values()))["rows"])
    base = mean_across_auc(settings["none"]) if "none" in settings else None
    lines = [
        "## Appearance augmentation study (AUC across vendors; same features, rows and seeds)",
        "",
        "| appearance | " + " | ".join(names) + f" | mean across | change vs none | {WITHIN} |",
        "| --- | " + " | ".join("---" for _ in names) + " | --- | --- | --- |",
    ]
    for setting, scored in settings.items():
        aucs = [scored["rows"][n]["across"]["pooled"].get("auc") for n in names]
        mean = mean_across_auc(scored)
        change = "" if base is None else f"{mean - base:+.3f}"
        cells = " | ".join("n/a" if a is None else f"{a:.3f}" for a in aucs)
        lines.append(f"| {setting} | {cells} | {mean:.3f} | {change} | {metric_cell(scored[WITHIN], 'auc')} |")
    return lines


def transfer_section(results: dict[str, Any]) -> str:
    """The headline setting's transfer table as a section of another report (the ablation's)."""
    lines = [
        "## Across vendors (CLKL: trained without the test vendor vs within-vendor CV; plot transfer.png)",
        "",
        *_row_table(results["settings"][results["headline"]]),
        "",
    ]
    return "\n".join(lines)


def transfer_markdown(results: dict[str, Any]) -> str:
    headline = results["headline"]
    config = results["config"]
    lines = [
        "# Transfer across scanners",
        "",
        f"Weights `{config['weights']}`, augment `{config['augment']}`, appearance `{headline}`, task "
        f"`{config['task']}`, seed {config['seed']}. *Across*: trained without any subject of the test vendor. "
        f"*Within*: the same test subjects predicted by {config['folds']}-fold subject-level CV over every vendor. "
        "Brackets: 95 % bootstrap CIs over test subjects.",
        "",
        *_row_table(results["settings"][headline]),
        "",
    ]
    if len(results["settings"]) > 1:
        lines += [*_study_table(results), ""]
    lines += [paper_line(), ""]
    return "\n".join(lines)


def transfer_plot(path, results: dict[str, Any]) -> None:
    """Left: within vs across AUC per transfer row (headline setting). Right, with a study: mean across AUC per
    appearance setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = results["settings"]
    study = len(settings) > 1
    fig, axes = plt.subplots(1, 2 if study else 1, figsize=(12 if study else 7, 4.6), squeeze=False)
    _rows_panel(axes[0][0], settings[results["headline"]], results["headline"])
    if study:
        _study_panel(axes[0][1], settings)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _auc_and_error(summary: dict[str, Any]) -> tuple[float, list[float]]:
    auc = summary["pooled"].get("auc") or 0.0
    ci = summary["ci95"].get("auc") or [auc, auc]
    return auc, [auc - ci[0], ci[1] - auc]


def _rows_panel(ax, setting: dict[str, Any], headline: str) -> None:
    import numpy as np

    names = list(setting["rows"])
    y = np.arange(len(names))
    for offset, key, colour in ((-0.2, "within", "#9ecae9"), (0.2, "across", "#4c78a8")):
        pairs = [_auc_and_error(setting["rows"][n][key]) for n in names]
        err = np.array([p[1] for p in pairs]).T
        ax.barh(y + offset, [p[0] for p in pairs], 0.38, xerr=err, color=colour, capsize=2, label=key)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0.8, color="grey", linestyle="--", linewidth=1, label="AUC 0.80")
    ax.set(xlim=(0, 1), xlabel="ROC AUC (95 % CI)", title=f"Within vs across vendors (appearance: {headline})")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8)


def _study_panel(ax, settings: dict[str, Any]) -> None:
    names = list(settings)
    means = [mean_across_auc(settings[n]) for n in names]
    ax.barh(names, means, color=["#e45756" if n == "none" else "#54a24b" for n in names])
    if "none" in settings:
        ax.axvline(mean_across_auc(settings["none"]), color="#e45756", linestyle=":", linewidth=1)
    ax.invert_yaxis()
    ax.set(xlim=(0.5, 1), xlabel="mean AUC over transfer rows", title="Appearance augmentation families")
