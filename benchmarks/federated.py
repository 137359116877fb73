"""`benchmarks federated`: three phantom hospitals (PHILIPS-, GE- and CANON-like consoles) train together on Flower.

Each site is ``--subjects`` subjects of its own console, half of them fatty. The suite runs `trainer federated` in
the simulation runtime, then again once the sites' features are kept, and reports what a consortium would publish:
the pooled federated AUC against centralised training on the same folds, each site alone against federated on its
own held-out subjects, leave-one-site-out, and the seconds per round (every head of the study trains in a round).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from benchmarks.common import machine, write_reports
from trainer.config import FEDERATED_EPOCHS, FEDERATION_STRATEGIES, PERSONAL_EPOCHS

SITES = {"philips": "phantom-philips", "ge": "phantom-ge", "canon": "phantom-canon-1280x800"}


def _sites(root: Path, subjects: int, seed: int) -> dict[str, Path]:
    """Each site's cohort on its own console, made once and kept between runs of the suite."""
    from phantom.cohort import CohortForm, generate_cohort

    out = {}
    for k, (name, layout) in enumerate(SITES.items()):
        folder = root / f"{name}-{subjects}-{seed}"
        if not (folder / "manifest.csv").is_file():
            form = CohortForm(layouts=(layout,), other_frames=1, id_prefix=f"S{k}")
            generate_cohort(folder, subjects, seed=seed + k, prevalence=0.5, with_masks=False, form=form)
        out[name] = folder
    return out


def site_arguments(sites: dict[str, Path]) -> list[str]:
    """`trainer federated`'s arguments for phantom sites: each with its own manifest and its own consoles' profiles
    (no site reads another's files)."""
    args = []
    for name, folder in sites.items():
        args += [
            "--site",
            f"{name}={folder / 'manifest.csv'}",
            "--site-setting",
            f"{name}:profiles={folder}/profiles.json",
        ]
    return args


def _federated(sites: dict[str, Path], run: Path, options: list[str]) -> tuple[dict[str, Any], float]:
    """One `trainer federated` run: federated.json and its wall-clock seconds."""
    args = [sys.executable, "-m", "trainer.cli", "federated", "--out", str(run), *options, *site_arguments(sites)]
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise click.ClickException(f"trainer federated failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return json.loads((run / "federated.json").read_text()), time.perf_counter() - started


def markdown(result: dict[str, Any]) -> str:
    said = result["kept"]
    lines = [f"# Federated training, three phantom sites of {result['subjects']} subjects", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores; flags "
             f"{' '.join(result['machine']['flags'])}", f"Settings: {' '.join(result['options'])}", "",
             "| measure | federated | centralised |", "| --- | --- | --- |"]  # fmt: skip
    central = said.get("centralised") or {}
    for key in ("auc", "accuracy", "recall", "specificity", "r2", "mae"):
        lines.append(f"| {key} | {_f(said['federated'].get(key))} | {_f(central.get(key))} |")
    lines += ["", "| site | alone AUC | federated AUC | personalised AUC | centralised AUC | left out: AUC |",
              "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, site in sorted(said["sites"].items()):
        loso = (said["leave_one_site_out"].get(name) or {}).get("auc")
        pooled = (site.get("centralised") or {}).get("auc")
        own = (site.get("personalised") or {}).get("auc")
        lines.append(f"| {name} | {_f(site['alone'].get('auc'))} | {_f(site['federated'].get('auc'))} | "
                     f"{_f(own)} | {_f(pooled)} | {_f(loso)} |")  # fmt: skip
    lines += ["", f"Seconds per round, features kept: {said['seconds_per_round']:.1f} ({said['heads_per_round']} "
              f"heads per site and round); first run (features extracted) {result['first_s']:.0f} s, "
              f"kept {result['kept_s']:.0f} s in all.", f"Sites dropped: {said['dropped'] or 'none'}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@click.command()
@click.option("--subjects", type=click.IntRange(10), default=30, show_default=True, help="Subjects per site.")
@click.option("--rounds", type=click.IntRange(1), default=20, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=FEDERATED_EPOCHS, show_default=True,
              help="Local epochs per round.")  # fmt: skip
@click.option("--folds", type=click.IntRange(2), default=5, show_default=True)
@click.option("--personal-epochs", type=click.IntRange(0), default=PERSONAL_EPOCHS, show_default=True,
              help="Each site's fine-tuning of the federated head (0: none).")  # fmt: skip
@click.option("--weights", default="none", show_default=True, help="none, imagenet or a local weights file.")
@click.option("--strategy", type=click.Choice(FEDERATION_STRATEGIES), default="fedavgm", show_default=True)
@click.option("--seed", type=int, default=300, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/federated")
def main(subjects, rounds, epochs, folds, personal_epochs, weights, strategy, seed, out_dir) -> None:
    """Federated vs centralised vs each site alone on three phantom sites, and the seconds per round."""
    out = Path(out_dir)
    sites = _sites(out / "sites", subjects, seed)
    options = ["--rounds", str(rounds), "--epochs", str(epochs), "--folds", str(folds), "--weights", weights,
               "--strategy", strategy, "--personal-epochs", str(personal_epochs),
               "--augment", "none", "--appearance", "none",
               "--cache-dir", str(out / "cache")]  # fmt: skip
    first, first_s = _federated(sites, out / "first", options)
    kept, kept_s = _federated(sites, out / "kept", options)
    result = {"machine": machine(), "subjects": subjects, "options": options, "first": first, "kept": kept,
              "first_s": first_s, "kept_s": kept_s, "bar_round_s": 30}  # fmt: skip
    write_reports(out, "federated", result, markdown(result))
    click.echo(markdown(result))
