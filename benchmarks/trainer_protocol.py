"""`benchmarks trainer-protocol`: the paper's full protocol, run end to end, timed stage by stage.

90 phantom subjects, the paper's 39-variant augmentation, 5 subject-level folds, both outputs (a classifier for
1000 epochs and a regressor for 500, sharing one extraction and the same folds), with float features and with
--features int8. Reported per feature kind: wall time of each stage (extraction, int8 calibration, each
fold's training split into Gram matrix and SGD loop, reports), the training loop's samples/s, and the ratio of
the naive SGD's matmul lower bound (its unavoidable forward and backward products over the 50 176-wide first
layer, timed in this run) to the time the kernel-form loop really took. Both CV reports sit side by side.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import machine, write_reports

TASKS = {"classify": 1000, "regress": 500}
METRICS = ("auc", "accuracy", "precision", "specificity", "r2", "mae")


def naive_epoch_seconds(n_rows: int, width: int, units: int = 10, repeats: int = 3) -> float:
    """Time of one epoch's unavoidable matmuls in plain SGD: X W (forward) and X^T dZ (backward), all rows."""
    rng = np.random.default_rng(0)
    x = rng.random((n_rows, width), dtype=np.float32)
    w = rng.random((width, units), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        z = x @ w
        _ = x.T @ z
        best = min(best, time.perf_counter() - started)
    return best


def peak_matmul_gflops(size: int = 3072) -> float:
    rng = np.random.default_rng(0)
    a, b = rng.random((size, size), dtype=np.float32), rng.random((size, size), dtype=np.float32)
    a @ b
    started = time.perf_counter()
    a @ b
    return 2 * size**3 / (time.perf_counter() - started) / 1e9


def _fold_timings(run: Path) -> list[dict[str, float]]:
    folds = []
    for history_file in sorted(run.glob("fold*/history.json")):
        h = json.loads(history_file.read_text())
        folds.append({"gram_s": h["gram_s"][0], "loop_s": h["loop_s"][0], "samples": h["samples"][0]})
    return folds


def run_features(cohort, base, out: Path, folds_file: Path | None, fresh: bool) -> dict:
    """One feature kind: extraction (and int8 calibration), then both tasks on the same folds."""
    from trainer.extraction import run_extraction
    from trainer.holdout import export_groups
    from trainer.train import train_run

    features = base.features
    cache = Path(base.cache_dir)
    if fresh and cache.exists():
        shutil.rmtree(cache)
    split = export_groups(cohort, base.fatty_threshold, base.seed, base.holdout_share)
    started = time.perf_counter()
    extraction = run_extraction(cohort, base, out / features, split, progress=True)
    stages: dict[str, Any] = {"extraction_s": time.perf_counter() - started, **extraction.timings}
    reports = {}
    for task, epochs in TASKS.items():
        run = out / features / task
        started = time.perf_counter()
        report = train_run(cohort, base.with_changes(task=task, epochs=epochs), run, folds_file, True, extraction)
        folds_file = folds_file or run / "folds.json"
        stages[f"{task}_s"] = time.perf_counter() - started
        stages[f"{task}_folds"] = _fold_timings(run)
        reports[task] = report
    return {"stages": stages, "reports": reports, "folds_file": str(folds_file)}


def loop_summary(result: dict, bound_epoch_s: float) -> dict[str, float]:
    """samples/s of the SGD loop, and the naive matmul bound over the time really spent training."""
    trained, samples, bound = 0.0, 0.0, 0.0
    for task, epochs in TASKS.items():
        for fold in result["stages"][f"{task}_folds"]:
            trained += fold["gram_s"] + fold["loop_s"]
            samples += fold["samples"] * epochs
            bound += bound_epoch_s * epochs * fold["samples"] / result["rows_measured"]
    loop_s = sum(f["loop_s"] for t in TASKS for f in result["stages"][f"{t}_folds"])
    return {
        "training_s": trained,
        "loop_samples_per_s": samples / loop_s,
        "naive_matmul_bound_s": bound,
        "bound_over_actual": bound / trained,
    }


def _cell(report: dict, key: str) -> str:
    value, ci = report["pooled"].get(key), report["ci95"].get(key)
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def markdown(summary: dict[str, Any]) -> str:
    kinds, cpu = list(summary["features"]), summary["machine"]
    lines = [
        "# The paper's full protocol (trainer-protocol)",
        "",
        f"{summary['subjects']} subjects, augmentation `{summary['augment']}`, {summary['folds']} folds, classify "
        f"{TASKS['classify']} + regress {TASKS['regress']} epochs, random-weight VGG19. Machine: "
        f"{cpu['cpu']}, {cpu['cores']} cores, flags {' '.join(cpu['flags'])}.",
        "",
        "| stage (wall seconds) | " + " | ".join(kinds) + " |",
        "| --- |" + " --- |" * len(kinds),
    ]
    stage_rows = [
        ("int8 calibration", "int8_calibration_s"),
        ("feature extraction", "features_s"),
        ("classify: all folds + report", "classify_s"),
        ("regress: all folds + report", "regress_s"),
        ("whole protocol", "total_s"),
    ]
    for label, key in stage_rows:
        cells = [f"{summary['features'][k]['stages'].get(key, 0.0):.1f}" for k in kinds]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| training loop | " + " | ".join(kinds) + " |", "| --- |" + " --- |" * len(kinds)]
    for label, key, fmt in (
        ("Gram + SGD, all folds and both tasks (s)", "training_s", "{:.1f}"),
        ("SGD loop samples/s", "loop_samples_per_s", "{:,.0f}"),
        ("naive SGD matmul lower bound (s)", "naive_matmul_bound_s", "{:.1f}"),
        ("bound / actual (bar >= 0.3)", "bound_over_actual", "{:.2f}"),
    ):
        lines.append(
            f"| {label} | " + " | ".join(fmt.format(summary["features"][k]["loop"][key]) for k in kinds) + " |"
        )
    lines += ["", "| metric (pooled, 95 % CI) | " + " | ".join(kinds) + " |", "| --- |" + " --- |" * len(kinds)]
    for metric in METRICS:
        task = "regress" if metric in ("r2", "mae") else "classify"
        cells = [_cell(summary["features"][k]["reports"][task], metric) for k in kinds]
        lines.append(f"| {task} {metric} | " + " | ".join(cells) + " |")
    lines += ["", f"Peak float32 matmul in this run: {summary['peak_gflops']:.0f} GFLOP/s.", ""]
    return "\n".join(lines)


@click.command()
@click.option("--subjects", type=click.IntRange(10), default=90, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--augment", type=click.Choice(["paper", "light", "none"]), default="paper", show_default=True)
@click.option("--features", "kinds", default="float,int8", show_default=True, help="Comma-separated: float,int8.")
@click.option("--folds", type=click.IntRange(2, 10), default=5, show_default=True)
@click.option("--fresh-cache/--reuse-cache", default=True, show_default=True, help="Time extraction from scratch.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/trainer_protocol")
def main(subjects: int, seed: int, augment: str, kinds: str, folds: int, fresh_cache: bool, out_dir: str) -> None:
    """Run and time the paper's full protocol; writes trainer_protocol.json/.md/.png."""
    from phantom.cohort import generate_cohort
    from trainer.config import TrainConfig
    from trainer.dataset import read_cohort

    out = Path(out_dir)
    started = time.perf_counter()
    generate_cohort(out / "cohort", subjects, seed)
    harmonisation = TrainConfig().harmonisation
    cohort = read_cohort(out / "cohort" / "manifest.csv", labelled_only=True, harmonisation=harmonisation)
    prepared_s = time.perf_counter() - started
    rows = round((1 - 1 / folds) * subjects) * (39 if augment == "paper" else 4 if augment == "light" else 1)
    bound_epoch_s = naive_epoch_seconds(rows, 2 * 25088)
    summary: dict[str, Any] = {"subjects": subjects, "augment": augment, "folds": folds, "machine": machine()}
    summary["features"] = {}
    summary.update(cohort_and_preprocessing_s=prepared_s, peak_gflops=peak_matmul_gflops())
    folds_file = None
    for kind in kinds.split(","):
        started = time.perf_counter()
        cache = str(out / f"cache-{kind}")
        base = TrainConfig(weights="none", augment=augment, features=kind, cache_dir=cache, folds=folds, seed=seed)
        result = run_features(cohort, base, out, folds_file, fresh_cache)
        result["stages"]["total_s"] = time.perf_counter() - started + prepared_s
        result["rows_measured"] = rows
        result["loop"] = loop_summary(result, bound_epoch_s)
        folds_file = Path(result["folds_file"])
        summary["features"][kind] = result
    write_reports(out, "trainer_protocol", summary, markdown(summary))
    stage_plot(out / "trainer_protocol.png", summary)
    click.echo(markdown(summary))


def stage_plot(path: Path, summary: dict[str, Any]) -> None:
    """Stacked bars: where the protocol's wall time goes, per feature kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = ("int8_calibration_s", "features_s", "classify_s", "regress_s")
    kinds = list(summary["features"])
    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    left = np.zeros(len(kinds))
    for stage in stages:
        widths = np.array([summary["features"][k]["stages"].get(stage, 0.0) / 60 for k in kinds])
        ax.barh(kinds, widths, left=left, label=stage.removesuffix("_s").replace("_", " "))
        left += widths
    ax.set(xlabel="minutes (wall)", title="Paper protocol: where the time goes")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
