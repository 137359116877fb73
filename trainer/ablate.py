"""`trainer ablate`: the paper's comparison in one table, every row on the same subject-level folds.

Rows: liver only, kidney-liver only, CLKL (frozen), CLKL fine-tuned, CLKL without augmentation.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig
from trainer.dataset import Cohort
from trainer.train import train_run

ROWS = ("liver", "kidney_liver", "clkl", "clkl_finetuned", "clkl_no_augmentation")


def ablation_configs(base: TrainConfig, finetune: str, finetune_epochs: int | None) -> dict[str, TrainConfig]:
    return {
        "liver": dataclasses.replace(base, views="liver"),
        "kidney_liver": dataclasses.replace(base, views="kidney_liver"),
        "clkl": dataclasses.replace(base, views="clkl"),
        "clkl_finetuned": dataclasses.replace(
            base, views="clkl", finetune=finetune, epochs=finetune_epochs or base.epochs
        ),
        "clkl_no_augmentation": dataclasses.replace(base, views="clkl", augment="none"),
    }


def run_ablation(
    cohort: Cohort,
    base: TrainConfig,
    out_dir: Path,
    skip: tuple[str, ...] = (),
    finetune: str = "block5",
    finetune_epochs: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    configs = ablation_configs(base, finetune, finetune_epochs)
    results: dict[str, Any] = {}
    folds_file: Path | None = None
    for name in ROWS:
        if name in skip:
            continue
        if progress:
            print(f"\n=== ablation row: {name} ===", flush=True)
        run_dir = out_dir / name
        report = train_run(cohort, configs[name], run_dir, folds_file, progress)
        folds_file = folds_file or run_dir / "folds.json"  # every later row reuses the first row's folds
        results[name] = {"config": dataclasses.asdict(configs[name]), **report}
    table = ablation_markdown(results)
    (out_dir / "ablation.md").write_text(table)
    (out_dir / "ablation.json").write_text(json.dumps(results, indent=2, default=str))
    _plot(out_dir / "ablation.png", results)
    return results


def _cell(report: dict[str, Any], key: str, pct: bool = False) -> str:
    value, ci = report["pooled"].get(key), report["ci95"].get(key)
    if value is None:
        return "n/a"
    scale, unit = (100, " %") if pct else (1, "")
    text = f"{value * scale:.1f}{unit}" if pct else f"{value:.3f}"
    if ci:
        text += f" [{ci[0] * scale:.{1 if pct else 2}f}, {ci[1] * scale:.{1 if pct else 2}f}]"
    return text


def ablation_markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Ablation (same folds for every row; 95 % bootstrap CIs over subjects)",
        "",
        "| setting | AUC | accuracy | precision | recall | specificity | R^2 | MAE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {_cell(r, 'auc')} | {_cell(r, 'accuracy', True)} | {_cell(r, 'precision', True)} | "
            f"{_cell(r, 'recall', True)} | {_cell(r, 'specificity', True)} | {_cell(r, 'r2')} | {_cell(r, 'mae')} |"
        )
    lines += ["", "Paper (CLKL, real patients): accuracy 80.1 %, precision 86.2 %, AUC 0.87, R^2 0.633.", ""]
    return "\n".join(lines)


def _plot(path: Path, results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    auc = [results[n]["pooled"].get("auc") or 0 for n in names]
    ci = [results[n]["ci95"].get("auc") or [a, a] for n, a in zip(names, auc, strict=True)]
    err = [[a - c[0] for a, c in zip(auc, ci, strict=True)], [c[1] - a for a, c in zip(auc, ci, strict=True)]]
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.barh(names, auc, xerr=err, color="#4c78a8", capsize=3)
    ax.axvline(0.87, color="grey", linestyle="--", label="paper CLKL AUC 0.87")
    ax.set(xlim=(0, 1), xlabel="ROC AUC (pooled, 95 % CI)", title="Ablation")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
