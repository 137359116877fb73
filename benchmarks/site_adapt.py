"""`benchmarks site-adapt`: a new scanner adopted in an afternoon, timed and scored on subjects never used.

A CANON-like site (a console and a look the parent bundle never saw) of ``--adapt`` + ``--test`` subjects. Each of
``--draws`` draws takes ``--adapt`` labelled subjects (half fatty) to adapt on and judges on all the others, so the
spread between draws (which 12 patients a site happens to have) is seen beside each figure. Per draw the suite
adapts twice, keeping the parent's heads and retraining them, scores each with `trainer site-check` and measures how
much of a shifted-appearance cohort each adapted guard still flags, on the parent's consoles (``shifted_flagged``)
and on the site's own (``shifted_site_flagged``: the look changed, the console did not); the first draw also times
`trainer site-adapt` and, with ``--unlabelled``, adapts on the same exams without MRI-PDFF.
"""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import machine, write_reports
from edge_runtime.contracts import FATTY_PDFF, PDFF_BAND_NAMES
from phantom.layouts import CLASSIC_LAYOUTS

CANON = "phantom-canon-1280x800"
SHIFTED_SUBJECTS = 40
LOWER_IS_BETTER = ("mae", "abs_bias", "guard_share")
FIGURES = ("balanced_accuracy", "auc", "r2", "mae", "abs_bias", "interval_coverage", "guard_share", "view_agreement")
SHIFTED = ("shifted_flagged", "shifted_site_flagged")  # the guard on the shifted look: parent's consoles, site's


def _site(out: Path, subjects: int, seed: int, layouts: tuple[str, ...], appearance: str = "standard") -> Path:
    from phantom.cohort import CohortForm, generate_cohort

    form = CohortForm(layouts=layouts, other_frames=2, appearance=appearance, id_prefix="ST")
    generate_cohort(out, subjects, seed=seed, prevalence=0.5, with_masks=False, form=form)
    return out


def _split(site: Path, adapt: int, draw: int, seed: int) -> tuple[Path, Path, Path]:
    """``adapt`` subjects, half of them fatty, drawn at random (draw 0: the first ids) to adapt on; the rest to
    judge on; and the adapt part without its labels (what a site has before MRI)."""
    rows = list(csv.DictReader((site / "manifest.csv").open()))
    fatty = sorted({r["subject_id"] for r in rows if float(r["pdff"]) >= FATTY_PDFF})
    normal = sorted({r["subject_id"] for r in rows if float(r["pdff"]) < FATTY_PDFF})
    if draw:
        rng = np.random.default_rng([seed, draw])
        fatty, normal = list(rng.permutation(fatty)), list(rng.permutation(normal))
    chosen = set(fatty[: adapt // 2] + normal[: adapt - adapt // 2])
    parts = {"adapt": [r for r in rows if r["subject_id"] in chosen]}
    parts["test"] = [r for r in rows if r["subject_id"] not in chosen]
    parts["unlabelled"] = [r | {"pdff": ""} for r in parts["adapt"]]
    paths = []
    for name, chosen_rows in parts.items():
        path = site / f"{name}{draw}.csv"
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(chosen_rows)
        paths.append(path)
    return paths[0], paths[1], paths[2]


def _timed_adapt(bundle: str, run: str, out: Path, **local: Any) -> float:
    from trainer.site.adapt import site_adapt

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    site_adapt(bundle, out, run_dir=run, **local)
    return time.perf_counter() - started


def _scores(bundle: Path | str, test: Path, profiles: Path, criteria: str | None, out: Path) -> dict[str, Any]:
    from trainer.site.check import site_check

    result = site_check(bundle, test, out, profiles=str(profiles), criteria_file=criteria)
    figures = {k: result["metrics"].get(k) for k in FIGURES}
    return {"pass": result["pass"], **figures, "ci95": result["ci95"], "per_band": result["per_band"]}


def _shifted_flagged(bundle: Path | str, shifted: Path) -> float:
    from edge_runtime.model.bundle import load_bundle
    from edge_runtime.scanners.profiles import load_profiles
    from trainer.dataset import read_cohort
    from trainer.guard_report import guard_report

    profiles, harmonisation = load_profiles(str(shifted / "profiles.json")), load_bundle(bundle).harmonisation
    cohort = read_cohort(shifted / "manifest.csv", profiles, progress=False, harmonisation=harmonisation)
    return guard_report(bundle, cohort)["flagged_share"]


VARIANTS = {"recalibrated": False, "heads retrained": True}  # name -> site-adapt's retrain_heads


def _shifted_figures(bundle: Path | str, shifted: dict[str, Path]) -> dict[str, float]:
    return {name: _shifted_flagged(bundle, cohort) for name, cohort in shifted.items()}


def run_draw(args: dict[str, Any], site: Path, shifted: dict[str, Path], draw: int) -> dict[str, Any]:
    """One draw: the parent and each variant scored on the judges, the guard on the shifted cohorts."""
    adapt, test, no_labels = _split(site, args["adapt_n"], draw, args["seed"])
    profiles, out, criteria = site / "profiles.json", args["out"] / f"draw{draw}", args["criteria"]
    local = {"manifest": str(adapt), "profiles": str(profiles), "site": "benchmark"}
    result: dict[str, Any] = {"parent": _scores(args["bundle"], test, profiles, criteria, out / "check_parent")}
    result["parent"] |= _shifted_figures(args["bundle"], shifted)
    for name, retrain in VARIANTS.items():
        seconds = _timed_adapt(args["bundle"], args["run"], out / name, retrain_heads=retrain, **local)
        scored = _scores(out / name, test, profiles, criteria, out / f"check_{name}")
        result[name] = scored | _shifted_figures(out / name, shifted) | {"adapt_s": seconds}
    if draw == 0 and args["unlabelled"]:
        no_label_local = {"unlabelled": str(no_labels), "profiles": str(profiles), "site": "benchmark"}
        seconds = _timed_adapt(args["bundle"], args["run"], out / "no labels", **no_label_local)
        scored = _scores(out / "no labels", test, profiles, criteria, out / "check_no_labels")
        result["no labels"] = scored | _shifted_figures(out / "no labels", shifted) | {"adapt_s": seconds}
    return result


def summary(draws: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per bundle and figure: the mean and the worst over draws (worst: lowest, or highest for an error)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in ("parent", *VARIANTS):
        out[name] = {}
        for figure in (*FIGURES, *SHIFTED):
            values = [d[name][figure] for d in draws if d[name].get(figure) is not None]
            if values:
                worst = max(values) if figure in LOWER_IS_BETTER else min(values)
                out[name][figure] = {"mean": float(np.mean(values)), "worst": float(worst)}
    return out


BAND_FIGURES = ("view_agreement", "guard_share", "interval_coverage", "mae")


def pooled_bands(draws: list[dict[str, Any]], name: str) -> dict[str, dict[str, float]]:
    """One bundle's site-check figures per PDFF band, every draw's judges pooled (weighted by subjects): where a
    site's failures gather (the sickest livers, say) shows here, not in the means."""
    out: dict[str, dict[str, float]] = {}
    present = {b for d in draws for b in d[name]["per_band"]}
    for band in [b for b in PDFF_BAND_NAMES if b in present]:
        groups = [d[name]["per_band"][band] for d in draws if band in d[name]["per_band"]]
        subjects = sum(g["subjects"] for g in groups)
        out[band] = {"subjects": subjects} | {
            f: sum(g[f] * g["subjects"] for g in groups) / subjects for f in BAND_FIGURES
        }
    return out


def _band_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for name in ("parent", *VARIANTS):
        lines += ["", f"Per PDFF band, {name}, all draws' judges pooled:", ""]
        lines += ["| band | judges | " + " | ".join(BAND_FIGURES) + " |", "| --- " * (len(BAND_FIGURES) + 2) + "|"]
        for band, g in pooled_bands(result["draws"], name).items():
            lines.append(f"| {band} | {g['subjects']} | " + " | ".join(f"{g[f]:.3f}" for f in BAND_FIGURES) + " |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"# site-adapt: {result['adapt_subjects']} local subjects, {result['test_subjects']} judges, "
        f"{len(result['draws'])} draws",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, flags {' '.join(m['flags'])}",
        f"site-adapt wall time, first draw: {result['adapt_s_first']:.0f} s the first time, "
        + ", ".join(f"{name} {result['draws'][0][name]['adapt_s']:.0f} s" for name in VARIANTS),
        "",
        "Mean over draws (worst draw):",
        "",
        "| figure | parent | " + " | ".join(VARIANTS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in VARIANTS) + " |",
    ]
    for figure in (*FIGURES, *SHIFTED):
        cells = [result["summary"][n].get(figure) for n in ("parent", *VARIANTS)]
        lines.append(f"| {figure} | " + " | ".join(_cell(c) for c in cells) + " |")
    lines += _band_lines(result)
    lines += ["", "Per draw:", "", "| draw | bundle | " + " | ".join((*FIGURES, *SHIFTED)) + " |"]
    lines.append("| --- | --- | " + " | ".join("---" for _ in (*FIGURES, *SHIFTED)) + " |")
    for k, draw in enumerate(result["draws"]):
        for name, scored in draw.items():
            values = [_num(scored.get(f)) for f in (*FIGURES, *SHIFTED)]
            lines.append(f"| {k} | {name} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _cell(cell: dict[str, float] | None) -> str:
    return "-" if cell is None else f"{cell['mean']:.3f} ({cell['worst']:.3f})"


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--adapt", "adapt_n", type=click.IntRange(8), default=12, show_default=True)
@click.option("--test", "test_n", type=click.IntRange(4), default=88, show_default=True, help="Judges.")
@click.option("--draws", type=click.IntRange(1, 20), default=3, show_default=True, help="Adaptation draws.")
@click.option("--layout", default=CANON, show_default=True, help="The site's console (a phantom layout).")
@click.option("--seed", type=int, default=515, show_default=True)
@click.option("--criteria", type=click.Path(exists=True, dir_okay=False), default=None, help="Instead of the bundle's.")
@click.option("--unlabelled/--no-unlabelled", default=True, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/site_adapt")
def main(bundle_dir, run_dir, adapt_n, test_n, draws, layout, seed, criteria, unlabelled, out_dir) -> None:
    """Time `trainer site-adapt` on a new scanner and score it on held-out subjects, over several draws."""
    out = Path(out_dir)
    shutil.rmtree(out / "site", ignore_errors=True)
    site = _site(out / "site", adapt_n + test_n, seed, (layout,))
    shifted = {"shifted_flagged": out / "shifted", "shifted_site_flagged": out / f"shifted_{layout}"}
    for cohort, layouts in zip(shifted.values(), (CLASSIC_LAYOUTS, (layout,)), strict=True):
        if not (cohort / "manifest.csv").is_file():
            _site(cohort, SHIFTED_SUBJECTS, seed + 1, layouts, appearance="shifted")
    args = {"bundle": bundle_dir, "run": run_dir, "adapt_n": adapt_n, "seed": seed, "criteria": criteria}
    args |= {"out": out, "unlabelled": unlabelled}
    first_local = {"manifest": str(_split(site, adapt_n, 0, seed)[0]), "profiles": str(site / "profiles.json")}
    first = _timed_adapt(bundle_dir, run_dir, out / "first", **first_local)  # may encode the run's frames
    results = [run_draw(args, site, shifted, k) for k in range(draws)]
    result: dict[str, Any] = {"machine": machine(), "adapt_subjects": adapt_n, "test_subjects": test_n}
    result |= {"adapt_s_first": first, "bar_s": 300, "draws": results, "summary": summary(results)}
    write_reports(out, "site_adapt", result, markdown(result))
    click.echo(markdown(result))
