"""`benchmarks federated`: three phantom hospitals (PHILIPS-, GE- and CANON-like consoles) train together on Flower.

Each site is ``--subjects`` subjects of its own console, half of them fatty. The suite runs `trainer federated` in
the simulation runtime, then again once the sites' features are kept, and reports what a consortium would publish:
the pooled federated AUC against centralised training on the same folds, each site alone against federated on its
own held-out subjects, leave-one-site-out, and the seconds per round (every head of the study trains in a round).

A site of 30 subjects has 225 fatty-normal pairs, so its AUC moves by 0.01 when two pairs swap: one cohort cannot
say whether a site gains by joining. ``--draws N`` repeats the study on N independent cohorts (data seeds ``seed``
to ``seed + N - 1``) and reports, per site, on how many draws federated training matched or beat the site alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

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


def draw_summary(seed: int, said: dict[str, Any]) -> dict[str, Any]:
    """One draw's figures: pooled AUC and R², and each site's AUC alone, federated, centralised and personalised."""
    central = said.get("centralised") or {}
    sites = {
        name: {scope: (site.get(scope) or {}).get("auc") for scope in ("alone", "federated", "centralised",
                                                                        "personalised")}
        for name, site in said["sites"].items()
    }  # fmt: skip
    return {"seed": seed, "auc": said["federated"].get("auc"), "centralised_auc": central.get("auc"),
            "r2": said["federated"].get("r2"), "centralised_r2": central.get("r2"), "sites": sites}  # fmt: skip


def site_record(draws: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per site over the draws: mean AUC alone and federated, the draws where federated >= alone, the worst gain."""
    out = {}
    for name in sorted(draws[0]["sites"]):
        alone = np.array([d["sites"][name]["alone"] for d in draws], float)
        federated = np.array([d["sites"][name]["federated"] for d in draws], float)
        gain = federated - alone
        out[name] = {"alone": float(alone.mean()), "federated": float(federated.mean()), "gain": float(gain.mean()),
                     "worst_gain": float(gain.min()), "met": int((gain >= 0).sum()), "draws": len(draws)}  # fmt: skip
    return out


def draws_markdown(result: dict[str, Any]) -> list[str]:
    """Every draw's pooled and per-site AUCs, then each site's record over the draws."""
    names = list(result["record"])  # sorted by site_record
    lines = ["", f"## {len(result['draws'])} independent draws (data seeds)", "",
             "| seed | pooled AUC federated / centralised | pooled R² federated / centralised | "
             + " | ".join(f"{n}: alone -> federated" for n in names) + " |",
             "| --- | --- | --- |" + " --- |" * len(names)]  # fmt: skip
    for d in result["draws"]:
        cells = [f"{_f(d['sites'][n]['alone'])} -> {_f(d['sites'][n]['federated'])}" for n in names]
        lines.append(f"| {d['seed']} | {_f(d['auc'])} / {_f(d['centralised_auc'])} | {_f(d['r2'])} / "
                     f"{_f(d['centralised_r2'])} | " + " | ".join(cells) + " |")  # fmt: skip
    lines += ["", "| site | mean AUC alone | mean AUC federated | mean gain | worst gain | draws federated >= alone |",
              "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, r in result["record"].items():
        lines.append(f"| {name} | {_f(r['alone'])} | {_f(r['federated'])} | {r['gain']:+.3f} | "
                     f"{r['worst_gain']:+.3f} | {r['met']} of {r['draws']} |")  # fmt: skip
    return lines


def draws_plot(path: Path, draws: list[dict[str, Any]]) -> None:
    """Each site's AUC alone and federated, one line per draw: the gain of joining, and its spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(draws[0]["sites"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.6), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, name in zip(axes, names, strict=True):
        for d in draws:
            site = d["sites"][name]
            ax.plot([0, 1], [site["alone"], site["federated"]], marker="o", alpha=0.8, label=f"seed {d['seed']}")
        ax.set(xticks=[0, 1], xticklabels=["alone", "federated"], xlim=(-0.3, 1.3), title=f"{name}-like site")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("AUC, the site's held-out subjects")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Joining the federation, draw by draw")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    if len(result["draws"]) > 1:
        lines += draws_markdown(result)
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
@click.option("--seed", type=int, default=300, show_default=True, help="The first draw's data seed.")
@click.option(
    "--draws",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Independent cohorts (data seeds seed, seed + 1, ...); the first also times a kept-features run.",
)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/federated")
def main(subjects, rounds, epochs, folds, personal_epochs, weights, strategy, seed, draws, out_dir) -> None:
    """Federated vs centralised vs each site alone on three phantom sites, and the seconds per round."""
    out = Path(out_dir)
    sites = _sites(out / "sites", subjects, seed)
    options = ["--rounds", str(rounds), "--epochs", str(epochs), "--folds", str(folds), "--weights", weights,
               "--strategy", strategy, "--personal-epochs", str(personal_epochs),
               "--augment", "none", "--appearance", "none",
               "--cache-dir", str(out / "cache")]  # fmt: skip
    first, first_s = _federated(sites, out / "first", options)
    kept, kept_s = _federated(sites, out / "kept", options)
    summaries = [draw_summary(seed, kept)]
    for later in range(seed + 1, seed + draws):
        click.echo(f"draw {later - seed + 1} of {draws} (data seed {later})")
        said, _ = _federated(_sites(out / "sites", subjects, later), out / f"draw-{later}", options)
        summaries.append(draw_summary(later, said))
    result = {"machine": machine(), "subjects": subjects, "options": options, "first": first, "kept": kept,
              "first_s": first_s, "kept_s": kept_s, "bar_round_s": 30, "draws": summaries,
              "record": site_record(summaries)}  # fmt: skip
    write_reports(out, "federated", result, markdown(result))
    draws_plot(out / "federated_draws.png", summaries)
    click.echo(markdown(result))
