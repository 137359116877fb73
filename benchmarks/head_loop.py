"""`benchmarks head-loop`: the kernel-form head loop against Keras' own fit, same cohort, same folds, same seed.

Either trains both (``--manifest``) or compares two finished runs (``--keras-run`` / ``--kernel-run``). Writes
the CV metrics side by side, whether each kernel-loop figure falls inside the Keras loop's 95 % bootstrap CI,
the training time per fold, and the per-fold training loss curves overlaid (head_loop.png).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from benchmarks.common import machine, write_reports

METRICS = ("auc", "accuracy", "precision", "recall", "specificity", "r2", "mae")


def train_both(manifest: str, out: Path, task: str, augment: str, epochs: int | None, cache: str) -> tuple[Path, Path]:
    from trainer.config import TrainConfig
    from trainer.train import load_labelled_cohort, train_run

    base = TrainConfig(weights="none", task=task, augment=augment, epochs=epochs, cache_dir=cache)
    cohort = load_labelled_cohort(manifest, harmonisation=base.harmonisation)
    runs = out / "keras", out / "kernel"
    train_run(cohort, base.with_changes(head_loop="keras"), runs[0])
    train_run(cohort, base.with_changes(head_loop="kernel"), runs[1], runs[0] / "folds.json")
    return runs


def _read(run: Path) -> dict[str, Any]:
    report = json.loads((run / "report.json").read_text())
    losses = [json.loads(h.read_text())["loss"] for h in sorted(run.glob("fold*/history.json"))]
    return {"report": report, "losses": losses, "folds": json.loads((run / "folds.json").read_text())["folds"]}


def compare(keras_run: Path, kernel_run: Path) -> dict[str, Any]:
    old, new = _read(keras_run), _read(kernel_run)
    if old["folds"] != new["folds"]:
        raise click.ClickException("the two runs were not trained on the same folds")
    rows = {}
    for metric in METRICS:
        value, ci = new["report"]["pooled"].get(metric), old["report"]["ci95"].get(metric)
        if value is None or ci is None:
            continue
        rows[metric] = {
            "keras": old["report"]["pooled"][metric],
            "keras_ci95": ci,
            "kernel": value,
            "kernel_ci95": new["report"]["ci95"].get(metric),
            "kernel_inside_keras_ci": ci[0] <= value <= ci[1],
        }
    seconds = {name: run["report"]["timings"]["folds_s"] for name, run in (("keras", old), ("kernel", new))}
    return {"metrics": rows, "fold_seconds": seconds, "losses": {"keras": old["losses"], "kernel": new["losses"]}}


def markdown(result: dict[str, Any], keras_run: Path, kernel_run: Path) -> str:
    lines = [
        "# Head loop: kernel-form SGD vs Keras fit (same cohort, folds, seed, initial weights)",
        "",
        f"Keras run `{keras_run}`, kernel run `{kernel_run}`. Machine: {result['machine']['cpu']}, "
        f"{result['machine']['cores']} cores, flags {' '.join(result['machine']['flags'])}.",
        "",
        "| metric (pooled) | Keras fit [95 % CI] | kernel loop [95 % CI] | kernel inside Keras CI |",
        "| --- | --- | --- | --- |",
    ]
    for metric, r in result["metrics"].items():
        k_ci, n_ci = r["keras_ci95"], r["kernel_ci95"] or [float("nan")] * 2
        lines.append(
            f"| {metric} | {r['keras']:.3f} [{k_ci[0]:.3f}, {k_ci[1]:.3f}] | {r['kernel']:.3f} "
            f"[{n_ci[0]:.3f}, {n_ci[1]:.3f}] | {'yes' if r['kernel_inside_keras_ci'] else 'NO'} |"
        )
    secs = result["fold_seconds"]
    lines += ["", f"Seconds per fold: Keras {', '.join(f'{s:.1f}' for s in secs['keras'])}; kernel "]
    lines[-1] += ", ".join(f"{s:.1f}" for s in secs["kernel"]) + "."
    lines += ["", "Training loss per fold, overlaid: head_loop.png.", ""]
    return "\n".join(lines)


def loss_plot(path: Path, losses: dict[str, list[list[float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (old, new) in enumerate(zip(losses["keras"], losses["kernel"], strict=True)):
        ax.plot(old, color=colors[k % len(colors)], lw=1.5, label=f"fold {k} Keras fit")
        ax.plot(new, color=colors[k % len(colors)], lw=1, ls="--", label=f"fold {k} kernel loop")
    ax.set(xlabel="epoch", ylabel="training loss", yscale="log", title="Training loss: Keras fit vs kernel loop")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command()
@click.option("--manifest", type=click.Path(dir_okay=False, exists=True), default=None, help="Train both loops.")
@click.option("--keras-run", type=click.Path(file_okay=False, exists=True), default=None, help="Or compare runs.")
@click.option("--kernel-run", type=click.Path(file_okay=False, exists=True), default=None)
@click.option("--task", type=click.Choice(["classify", "regress", "both"]), default="classify", show_default=True)
@click.option("--augment", type=click.Choice(["paper", "light", "none"]), default="light", show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=None, help="Default: the paper's for the task.")
@click.option("--cache-dir", default=".cache/features", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/head_loop")
def main(manifest, keras_run, kernel_run, task, augment, epochs, cache_dir, out_dir) -> None:
    """Kernel-form head loop vs Keras fit: CV metrics within CI, time per fold, loss curves overlaid."""
    out = Path(out_dir)
    if manifest:
        keras_run, kernel_run = train_both(manifest, out, task, augment, epochs, cache_dir)
    elif not (keras_run and kernel_run):
        raise click.UsageError("pass --manifest, or both --keras-run and --kernel-run")
    result = {**compare(Path(keras_run), Path(kernel_run)), "machine": machine()}
    text = markdown(result, Path(keras_run), Path(kernel_run))
    write_reports(out, "head_loop", result, text)
    loss_plot(out / "head_loop.png", result["losses"])
    click.echo(text)
