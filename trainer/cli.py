"""`trainer` command: validate manifests, train and ablate the CLKL protocol, explain, evaluate, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from trainer.config import TrainConfig


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train, evaluate and export fatty-liver models (Kim et al. 2021 CLKL protocol)."""


@main.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def validate(manifest: str, as_json: bool) -> None:
    """Check a manifest and every image it names; list all problems (exit 1) or summarise (exit 0)."""
    from trainer.manifest import ManifestError, load_manifest

    try:
        loaded = load_manifest(manifest)
    except ManifestError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(1) from None
    summary = loaded.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{manifest}: OK")
    click.echo(f"  subjects:   {summary['subjects']} ({summary['images']} images)")
    click.echo(f"  views:      {summary['views']}")
    click.echo(f"  vendors:    {summary['vendors']}")
    click.echo(f"  labelled:   {summary['labelled']}  unlabelled: {summary['unlabelled']}")
    if summary["fatty_share"] is not None:
        lo, hi = summary["pdff_range"]
        click.echo(f"  fatty:      {summary['fatty_share']:.1%} (PDFF >= 5 %)   PDFF range {lo:.1f}-{hi:.1f} %")


def protocol_options(fn):
    """Options shared by train and ablate: the paper's protocol, each knob overridable."""
    options = [
        click.option(
            "--weights", default="imagenet", show_default=True, help="imagenet | none | PATH to VGG19 no-top .h5"
        ),
        click.option("--augment", type=click.Choice(["paper", "light", "none"]), default="paper", show_default=True),
        click.option("--epochs", type=click.IntRange(1), default=None, help="Default: 1000 classify, 500 regress."),
        click.option("--pooling", type=click.Choice(["flatten", "avg"]), default="flatten", show_default=True),
        click.option("--folds", "n_folds", type=click.IntRange(2, 20), default=5, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True),
        click.option("--lr", "learning_rate", type=float, default=1e-4, show_default=True),
        click.option("--strategy", type=click.Choice(["auto", "default", "mirrored", "multiworker"]), default="auto"),
        click.option("--cache-dir", default=".cache/features", show_default=True, help="Frozen-feature cache."),
        click.option("--bootstrap", type=click.IntRange(10), default=1000, show_default=True),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _config(**kw) -> TrainConfig:

    from trainer.config import TrainConfig

    n_folds = kw.pop("n_folds")
    weights = kw["weights"]
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise click.BadParameter(
            f"weights file not found: {weights} (expected 'imagenet', 'none' or a path)", param_hint="--weights"
        )
    try:
        return TrainConfig(folds=n_folds, **kw)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _print_summary(report: dict, label: str) -> None:
    pooled, ci = report["pooled"], report["ci95"]
    parts = []
    for key in ("accuracy", "precision", "auc", "r2", "mae"):
        if pooled.get(key) is not None:
            interval = ci.get(key)
            parts.append(f"{key} {pooled[key]:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""))
    click.echo(f"{label}: " + ", ".join(parts))


@main.command()
@click.option("--manifest", type=click.Path(dir_okay=False), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--views", type=click.Choice(["clkl", "liver", "kidney_liver"]), default="clkl", show_default=True)
@click.option("--task", type=click.Choice(["classify", "regress", "both"]), default="classify", show_default=True)
@click.option("--finetune", default=None, help="Unfreeze the backbone: 'all' or from a block (block1..block5).")
@click.option("--folds-file", type=click.Path(dir_okay=False), default=None, help="Reuse another run's folds.json.")
@protocol_options
def train(manifest: str, out_dir: str, folds_file: str | None, **kw) -> None:
    """Cross-validate one configuration; writes config, folds, per-fold heads, predictions, report and plots."""

    from trainer.train import train_run

    config = _config(**kw)
    config.extra["manifest"] = str(Path(manifest).resolve())
    cohort = _load(manifest)
    report = _guard(lambda: train_run(cohort, config, Path(out_dir), Path(folds_file) if folds_file else None))
    click.echo((Path(out_dir) / "report.md").read_text())
    _print_summary(report, f"{config.views} {config.task}")
    click.echo(f"run directory: {out_dir}")


def _load(manifest: str):
    from trainer.manifest import ManifestError
    from trainer.train import load_labelled_cohort

    try:
        return load_labelled_cohort(manifest)
    except (ManifestError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _guard(fn):
    """Known, explainable failures become one clear message instead of a traceback."""
    from trainer.backbone import WeightsError

    try:
        return fn()
    except (WeightsError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--manifest", type=click.Path(dir_okay=False), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--task", type=click.Choice(["classify", "regress", "both"]), default="both", show_default=True)
@click.option("--finetune", "finetune_from", default="block5", show_default=True, help="Fine-tuning row: all|blockN.")
@click.option("--finetune-epochs", type=click.IntRange(1), default=None, help="Epochs of the fine-tuning row.")
@click.option("--skip", multiple=True, help="Leave out a row (liver, kidney_liver, clkl, clkl_finetuned, ...).")
@protocol_options
def ablate(manifest: str, out_dir: str, finetune_from: str, finetune_epochs: int | None, skip: tuple[str, ...], **kw):
    """The paper's comparison: liver vs kidney-liver vs CLKL, CLKL fine-tuned, CLKL without augmentation."""

    from trainer.ablate import ROWS, run_ablation

    unknown = set(skip) - set(ROWS)
    if unknown:
        raise click.BadParameter(f"unknown row(s) {sorted(unknown)}; rows are {', '.join(ROWS)}", param_hint="--skip")
    config = _config(**kw)
    config.extra["manifest"] = str(Path(manifest).resolve())
    cohort = _load(manifest)
    _guard(lambda: run_ablation(cohort, config, Path(out_dir), skip, finetune_from, finetune_epochs))
    click.echo((Path(out_dir) / "ablation.md").read_text())


@main.command()
@click.option("--run", "run_dir", type=click.Path(file_okay=False, exists=True), required=True)
@click.option("--subject", "subject_id", required=True)
@click.option("--manifest", type=click.Path(dir_okay=False), default=None, help="Default: the run's manifest.")
@click.option("--nsamples", type=click.IntRange(50), default=400, show_default=True, help="SHAP coalitions.")
def explain(run_dir: str, subject_id: str, manifest: str | None, nsamples: int) -> None:
    """Grad-CAM heatmaps and SHAP attributions over both views of one subject, as PNG overlays."""
    from trainer.explain import explain_subject
    from trainer.manifest import ManifestError
    from trainer.runs import RunError

    try:
        result = explain_subject(run_dir, subject_id, manifest, nsamples=nsamples)
    except (RunError, ManifestError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"subject {subject_id} (test subject of fold {result['fold']}, MRI-PDFF {result['pdff']})")
    for name, info in result["outputs"].items():
        share = ", ".join(f"{v} {s:+.3f}" for v, s in info["shap_per_view"].items())
        click.echo(f"  {name} = {info['value']:.3f}; SHAP by view: {share}; overlay {info['png']}")


@main.command()
@click.option("--run", "run_dir", type=click.Path(file_okay=False, exists=True), required=True)
@click.option("--manifest", type=click.Path(dir_okay=False), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None)
def evaluate(run_dir: str, manifest: str, out_dir: str | None) -> None:
    """Apply a trained run to another cohort: metrics where PDFF exists, reader agreement where it does not."""

    from trainer.evaluate import evaluate_run
    from trainer.manifest import ManifestError
    from trainer.runs import RunError

    try:
        result = evaluate_run(run_dir, manifest, Path(out_dir) if out_dir else None)
    except (RunError, ManifestError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({k: v for k, v in result.items() if k != "out_dir"}, indent=2))
    click.echo(f"written to {result['out_dir']}")


@main.command()
@click.option("--run", "run_dir", type=click.Path(file_okay=False, exists=True), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Bundle directory.")
@click.option("--int8/--float", "int8", default=True, show_default=True, help="Full-integer encoder, or float.")
@click.option(
    "--calibration-subjects", "n_calibration", type=click.IntRange(1), default=None, help="Default: 12 % of subjects."
)
@click.option(
    "--fidelity-subjects", "n_fidelity", type=click.IntRange(1), default=None, help="Default: 12 % of subjects."
)
@click.option(
    "--samples",
    "max_samples",
    type=click.IntRange(8),
    default=300,
    show_default=True,
    help="Representative-dataset size (calibration images and their augmented variants).",
)
@click.option("--epochs", type=click.IntRange(1), default=None, help="Final head epochs (default: the run's).")
@click.option("--version", default="1.0.0", show_default=True, help="Bundle version (semver).")
@click.option("--name", default=None, help="Bundle name (default: the output folder's name).")
@click.option("--debugger/--no-debugger", default=True, show_default=True, help="Per-layer quantization error.")
@click.option("--allow-fidelity-miss", is_flag=True, help="Write the bundle and exit 0 even if bars are missed.")
@click.option(
    "--qat",
    is_flag=True,
    help="Fine-tune the head on the int8 encoder's features under tfmot fake-quantization (p_fatty output in int8).",
)
@click.option("--qat-epochs", type=click.IntRange(1), default=100, show_default=True)
@click.option(
    "--qat-images",
    type=click.IntRange(8),
    default=400,
    show_default=True,
    help="Training (subject, augmentation) images encoded in int8 for --qat.",
)
@click.option(
    "--fidelity-manifest",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="An independent labelled cohort (e.g. a fresh phantom seed) added to the held-out fidelity subjects, "
    "so agreement is judged on enough subjects to mean something.",
)
def export(run_dir: str, out_dir: str, **kw) -> None:
    """Export a CLKL run as a verified bedside bundle (int8 encoder, bias-corrected head, fidelity report)."""
    from trainer.export import FidelityMiss, export_bundle
    from trainer.runs import RunError

    try:
        result = export_bundle(run_dir, out_dir, **kw)
    except FidelityMiss as exc:
        click.echo((Path(out_dir) / "fidelity.md").read_text(), err=True)
        raise click.ClickException(
            f"int8 bundle misses the fidelity bars: {exc} (see {out_dir}/fidelity.md; --allow-fidelity-miss to accept)"
        ) from None
    except (RunError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo((Path(out_dir) / "fidelity.md").read_text())
    click.echo(f"bundle {result['bundle']} (sha {result['sha']}) written and verified in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
