"""`benchmarks site-adapt`: a new scanner adopted in an afternoon, timed and scored on subjects never used.

A CANON-like site (a console and a look the parent bundle never saw) gives ``--adapt`` labelled subjects (half
fatty) to adapt on and ``--test`` others to judge on. The suite times `trainer site-adapt` (twice: the first run
may have to encode the run's training frames, the second reads them back as every later adaptation does),
scores the parent and the adapted bundle with `trainer site-check` on the held-out subjects, and measures how
much of a shifted-appearance cohort each bundle's guard still flags. With ``--unlabelled`` it also adapts on the
site's exams without MRI-PDFF and scores that bundle the same way.
"""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path
from typing import Any

import click

from benchmarks.common import machine, write_reports
from edge_runtime.contracts import FATTY_PDFF
from phantom.layouts import CLASSIC_LAYOUTS

CANON = "phantom-canon-1280x800"
FIGURES = ("balanced_accuracy", "auc", "r2", "mae", "abs_bias", "interval_coverage", "guard_share", "view_agreement")


def _site(out: Path, subjects: int, seed: int, layouts: tuple[str, ...], appearance: str = "standard") -> Path:
    from phantom.cohort import CohortForm, generate_cohort

    form = CohortForm(layouts=layouts, other_frames=2, appearance=appearance, id_prefix="ST")
    generate_cohort(out, subjects, seed=seed, prevalence=0.5, with_masks=False, form=form)
    return out


def _split(site: Path, adapt: int) -> tuple[Path, Path, Path]:
    """The first ``adapt`` subjects, half of them fatty, to adapt on; the rest to judge on; and the adapt part
    without its labels (what a site has before MRI)."""
    rows = list(csv.DictReader((site / "manifest.csv").open()))
    fatty = sorted({r["subject_id"] for r in rows if float(r["pdff"]) >= FATTY_PDFF})
    normal = sorted({r["subject_id"] for r in rows if float(r["pdff"]) < FATTY_PDFF})
    chosen = set(fatty[: adapt // 2] + normal[: adapt - adapt // 2])
    parts = {"adapt": [r for r in rows if r["subject_id"] in chosen]}
    parts["test"] = [r for r in rows if r["subject_id"] not in chosen]
    parts["unlabelled"] = [r | {"pdff": ""} for r in parts["adapt"]]
    paths = []
    for name, chosen_rows in parts.items():
        path = site / f"{name}.csv"
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(chosen_rows)
        paths.append(path)
    return paths[0], paths[1], paths[2]


def _timed_adapt(bundle: str, run: str, out: Path, **local: str) -> float:
    from trainer.site.adapt import site_adapt

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    site_adapt(bundle, out, run_dir=run, **local)
    return time.perf_counter() - started


def _scores(bundle: Path | str, test: Path, profiles: Path, criteria: str | None, out: Path) -> dict[str, Any]:
    from trainer.site.check import site_check

    result = site_check(bundle, test, out, profiles=str(profiles), criteria_file=criteria)
    return {"pass": result["pass"], **{k: result["metrics"].get(k) for k in FIGURES}, "ci95": result["ci95"]}


def _shifted_flagged(bundle: Path | str, shifted: Path) -> float:
    from edge_runtime.bundle import load_bundle
    from edge_runtime.profiles import load_profiles
    from trainer.dataset import read_cohort
    from trainer.guard_report import guard_report

    profiles, harmonisation = load_profiles(str(shifted / "profiles.json")), load_bundle(bundle).harmonisation
    cohort = read_cohort(shifted / "manifest.csv", profiles, progress=False, harmonisation=harmonisation)
    return guard_report(bundle, cohort)["flagged_share"]


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# site-adapt: {result['adapt_subjects']} local subjects, {result['test_subjects']} held out",
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
        f"flags {' '.join(result['machine']['flags'])}",
        f"site-adapt wall time: {result['adapt_s_first']:.0f} s first, {result['adapt_s']:.0f} s with kept features",
        "",
        "| figure | parent | adapted | adapted, no labels |",
        "| --- | --- | --- | --- |",
    ]
    scored = [result["before"], result["after"], result.get("unlabelled_after") or {}]
    for name in (*FIGURES, "pass", "shifted_flagged"):
        cells = [_cell(s.get(name)) for s in scored]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--adapt", "adapt_n", type=click.IntRange(8), default=12, show_default=True)
@click.option("--test", "test_n", type=click.IntRange(4), default=28, show_default=True)
@click.option("--layout", default=CANON, show_default=True, help="The site's console (a phantom layout).")
@click.option("--seed", type=int, default=515, show_default=True)
@click.option("--criteria", type=click.Path(exists=True, dir_okay=False), default=None, help="Instead of the bundle's.")
@click.option("--unlabelled/--no-unlabelled", default=True, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/site_adapt")
def main(bundle_dir, run_dir, adapt_n, test_n, layout, seed, criteria, unlabelled, out_dir) -> None:
    """Time `trainer site-adapt` on a new scanner and score it on held-out subjects."""
    out = Path(out_dir)
    shutil.rmtree(out / "site", ignore_errors=True)
    site = _site(out / "site", adapt_n + test_n, seed, (layout,))
    shifted = out / "shifted"
    if not (shifted / "manifest.csv").is_file():
        _site(shifted, 20, seed + 1, CLASSIC_LAYOUTS, appearance="shifted")  # the parent's consoles, a new look
    adapt, test, no_labels = _split(site, adapt_n)
    profiles = site / "profiles.json"
    local = {"manifest": str(adapt), "profiles": str(profiles), "site": "benchmark"}
    first = _timed_adapt(bundle_dir, run_dir, out / "adapted", **local)
    again = _timed_adapt(bundle_dir, run_dir, out / "adapted", **local)
    result: dict[str, Any] = {"machine": machine(), "adapt_subjects": adapt_n, "test_subjects": test_n}
    result |= {"adapt_s_first": first, "adapt_s": again, "bar_s": 300}
    result["before"] = _scores(bundle_dir, test, profiles, criteria, out / "check_before")
    result["after"] = _scores(out / "adapted", test, profiles, criteria, out / "check_after")
    result["before"]["shifted_flagged"] = _shifted_flagged(bundle_dir, shifted)
    result["after"]["shifted_flagged"] = _shifted_flagged(out / "adapted", shifted)
    if unlabelled:
        no_label_local = {"unlabelled": str(no_labels), "profiles": str(profiles), "site": "benchmark"}
        result["unlabelled_s"] = _timed_adapt(bundle_dir, run_dir, out / "adapted_unlabelled", **no_label_local)
        scored = _scores(out / "adapted_unlabelled", test, profiles, criteria, out / "check_unlabelled")
        result["unlabelled_after"] = scored | {"shifted_flagged": _shifted_flagged(out / "adapted_unlabelled", shifted)}
    write_reports(out, "site_adapt", result, markdown(result))
    click.echo(markdown(result))
