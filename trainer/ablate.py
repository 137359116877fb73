"""`trainer ablate`: the paper's comparison in one table, every row on the same subject-level folds.

Rows: liver only, kidney-liver only, CLKL (frozen), CLKL fine-tuned, CLKL without augmentation (neither
rotations nor appearance looks), a CLKL head retrained with the hepatorenal index as one more input
(trainer.hri_input), and the index alone and beside CLKL's answer (trainer.hri_rows, on CLKL's folds and
out-of-fold answers). Each row is also scored per vendor and per PDFF band. As in the paper, the rows are
classifiers by default and the fine-tuned row trains every layer; the table states the depth that was fine-tuned.
With two or more vendors the report adds the CLKL row across vendors (trained without the test vendor), next to its
within-vendor CV.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_runtime.contracts import PDFF_BAND_NAMES
from trainer.config import TrainConfig
from trainer.dataset import Cohort
from trainer.hri_rows import HRI_ROWS, hri_ablation_rows
from trainer.paper import paper_line
from trainer.report import metric_cell
from trainer.train import train_run
from trainer.transfer_report import transfer_section

ROWS = ("liver", "kidney_liver", "clkl", "clkl_finetuned", "clkl_no_augmentation", "clkl_hri_head", *HRI_ROWS)


def ablation_configs(base: TrainConfig, finetune: str, finetune_epochs: int | None) -> dict[str, TrainConfig]:
    return {
        "liver": base.with_changes(views="liver"),
        "kidney_liver": base.with_changes(views="kidney_liver"),
        "clkl": base.with_changes(views="clkl"),
        "clkl_finetuned": base.with_changes(views="clkl", finetune=finetune, epochs=finetune_epochs or base.epochs),
        "clkl_no_augmentation": base.with_changes(views="clkl", augment="none", appearance="none"),
        "clkl_hri_head": base.with_changes(views="clkl", hri=True),
    }


def row_label(name: str, config: TrainConfig) -> str:
    if config.finetune is None:
        return name
    depth = "all layers" if config.finetune == "all" else f"from {config.finetune}"
    return f"{name} ({depth})"


def _shared_extraction(cohort: Cohort, clkl: TrainConfig, out_dir: Path, rows: list[str], progress: bool):
    """One extraction (both views, every variant) that every frozen-backbone row reads its features from."""
    from trainer.extraction import run_extraction
    from trainer.holdout import export_groups

    if all(name == "clkl_finetuned" for name in rows):
        return None
    split = export_groups(cohort, clkl.fatty_threshold, clkl.seed, clkl.holdout_share)
    return run_extraction(cohort, clkl, out_dir, split, progress)


def run_ablation(
    cohort: Cohort,
    base: TrainConfig,
    out_dir: Path,
    skip: tuple[str, ...] = (),
    finetune: str = "all",
    finetune_epochs: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every row of the paper's ablation on the same folds; writes ablation.md/.json/.png.

    Args:
        cohort: the labelled cohort, preprocessed once for every row.
        base: the configuration every row starts from (task, weights, augmentation, epochs...).
        out_dir: one run directory per row is made inside it.
        skip: row names to leave out.
        finetune: depth of the fine-tuned row: 'all' (the paper's) or 'blockN'.
        finetune_epochs: epochs of the fine-tuned row (default: the base's).
        progress: show progress bars.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    configs = ablation_configs(base, finetune, finetune_epochs)
    rows = [name for name in ROWS if name not in skip]
    shared = _shared_extraction(cohort, configs["clkl"], out_dir, rows, progress)
    results: dict[str, Any] = {}
    folds_file: Path | None = None
    for name in [n for n in rows if n in configs]:
        if progress:
            print(f"\n=== ablation row: {name} ===", flush=True)
        run_dir = out_dir / name
        extraction = shared if configs[name].finetune is None else None
        report = train_run(cohort, configs[name], run_dir, folds_file, progress, extraction)
        folds_file = folds_file or run_dir / "folds.json"  # every later row reuses the first row's folds
        results[name] = {"config": configs[name].model_dump(), **report}
    hri_basis = None
    if "clkl" in results and any(name in rows for name in HRI_ROWS):
        scored, hri_basis = hri_ablation_rows(
            cohort, read_predictions(out_dir / "clkl" / "predictions.csv"), configs["clkl"]
        )
        results |= {name: row for name, row in scored.items() if name in rows}
    table = ablation_markdown(results) + groups_section(results) + (hri_section(hri_basis) if hri_basis else "")
    _plot(out_dir / "ablation.png", results)
    across = _across_vendors(cohort, configs["clkl"], shared, out_dir) if shared is not None else None
    if across is not None:
        table += "\n" + transfer_section(across)
        results = {**results, "across_vendors": across}
    (out_dir / "ablation.md").write_text(table)
    results = {**results, "hri_basis": hri_basis} if hri_basis else results
    (out_dir / "ablation.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def _across_vendors(cohort: Cohort, clkl: TrainConfig, shared, out_dir: Path) -> dict[str, Any] | None:
    """The CLKL row across vendors (trainer.transfer's rows on the shared features), when there are two or more
    vendors: the paper's theme is different scanners, and cross-validation alone mixes them in every fold."""
    from trainer.transfer import score_setting, transfer_rows
    from trainer.transfer_report import transfer_plot

    if len(set(cohort.vendors())) < 2:
        return None
    scored = score_setting(cohort, shared.for_config(clkl), clkl, transfer_rows(cohort.vendors()))
    across = {"headline": clkl.appearance, "config": clkl.model_dump(), "settings": {clkl.appearance: scored}}
    transfer_plot(out_dir / "transfer.png", across)
    return across


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """A run's predictions.csv back as rows (numbers as numbers)."""
    import csv

    rows = list(csv.DictReader(path.read_text().splitlines()))
    numeric = {"fold": int, "pdff": float, "p_fatty": float, "pdff_pred": float}
    return [{k: numeric[k](v) if k in numeric else v for k, v in r.items()} for r in rows]


def hri_section(basis: dict[str, Any]) -> str:
    """What the HRI rows rest on, and HRI alone on a vendor it was not fitted on."""
    lines = [
        "## The hepatorenal index",
        "",
        f"Measured on {basis['measured']} of {basis['subjects']} subjects' kidney-liver images (the others get their "
        "training fold's median). `clkl_hri` combines CLKL's out-of-fold answer with log(HRI) in each fold: a "
        "second-level fit, not a head retrained on features.",
        "",
        "| HRI alone, fitted without | AUC | accuracy | R^2 |",
        "| --- | --- | --- | --- |",
    ]
    for vendor, m in basis["across_vendors"].items():
        cells = [("-" if m.get(k) is None else f"{m[k]:.3f}") for k in ("auc", "accuracy", "r2")]
        lines.append(f"| {vendor} | {' | '.join(cells)} |")
    return "\n".join([*lines, ""])


def _cells(metrics: dict[str, Any] | None, keys: tuple[str, ...]) -> list[str]:
    metrics = metrics or {}
    percent = {"accuracy"}
    return [
        "-" if metrics.get(k) is None else f"{100 * metrics[k]:.0f} %" if k in percent else f"{metrics[k]:.2f}"
        for k in keys
    ]


def groups_section(results: dict[str, Any]) -> str:
    """Every row per vendor (AUC, accuracy, R^2) and per true PDFF band (subjects, accuracy, MAE): a mean can hide
    a scanner or a grade that does badly."""
    vendors = sorted({v for r in results.values() for v in r.get("by_vendor", {})})
    head = " | ".join(f"{v} AUC | {v} accuracy | {v} R^2" for v in vendors)
    lines = ["", "## Per vendor and per PDFF band (pooled out of fold)", "", f"| setting | {head} |",
             "| --- |" + " --- |" * (3 * len(vendors))]  # fmt: skip
    for name, r in results.items():
        cells = [c for v in vendors for c in _cells(r.get("by_vendor", {}).get(v), ("auc", "accuracy", "r2"))]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    head = " | ".join(f"{b} n | {b} accuracy | {b} MAE" for b in PDFF_BAND_NAMES)
    lines += ["", f"| setting | {head} |", "| --- |" + " --- |" * (3 * len(PDFF_BAND_NAMES))]
    for name, r in results.items():
        groups = r.get("by_band", {})
        cells = [c for b in PDFF_BAND_NAMES for c in _band_cells(groups.get(b))]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join([*lines, "", ""])


def _band_cells(metrics: dict[str, Any] | None) -> list[str]:
    if not metrics:
        return ["0", "-", "-"]
    return [str(int(metrics["n"])), *_cells(metrics, ("accuracy", "mae"))]


def _fold_mean(report: dict[str, Any], key: str) -> str:
    mean_sd = report.get("fold_mean_sd", {}).get(key)
    return "n/a" if not mean_sd else f"{mean_sd[0]:.3f} +/- {mean_sd[1]:.3f}"


def ablation_markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Ablation (same folds for every row)",
        "",
        "Figures are pooled over all subjects (each predicted once, by the fold that held it out) with 95 % "
        "bootstrap CIs over subjects; the AUC is also given as the mean over folds, which is how the paper "
        "reports it.",
        "",
        "| setting | task | AUC | AUC mean over folds | accuracy | precision | recall | specificity | R^2 | MAE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        config = TrainConfig.model_validate(r["config"])
        lines.append(
            f"| {row_label(name, config)} | {config.task} | {metric_cell(r, 'auc')} | {_fold_mean(r, 'auc')} | "
            f"{metric_cell(r, 'accuracy')} | {metric_cell(r, 'precision')} | {metric_cell(r, 'recall')} | "
            f"{metric_cell(r, 'specificity')} | {metric_cell(r, 'r2')} | {metric_cell(r, 'mae')} |"
        )
    lines += ["", paper_line(), ""]
    return "\n".join(lines)


def _plot(path: Path, results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row_label(n, TrainConfig.model_validate(results[n]["config"])) for n in results]
    auc = [r["pooled"].get("auc") or 0 for r in results.values()]
    ci = [r["ci95"].get("auc") or [a, a] for r, a in zip(results.values(), auc, strict=True)]
    err = [[a - c[0] for a, c in zip(auc, ci, strict=True)], [c[1] - a for a, c in zip(auc, ci, strict=True)]]
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.barh(names, auc, xerr=err, color="#4c78a8", capsize=3)
    ax.axvline(0.87, color="grey", linestyle="--", label="paper CLKL AUC 0.87 (mean of 5 folds)")
    ax.set(xlim=(0, 1), xlabel="ROC AUC (pooled, 95 % CI)", title="Ablation")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
