"""`benchmarks kidney-rule`: fit the kidney finder's rule (KIDNEY_RULE) on phantom frames and check it on new ones.

The kidney finder decides whether a kidney-liver frame can be measured, and whether the view gate files a frame as a
kidney-liver view: at MIN_KIDNEY_EVIDENCE when the view head sees no view in it, at KIDNEY_VIEW_EVIDENCE against a
head that sees a liver view (model.gate.kidney_bar). Its rule comes from the phantom's physics, not from a run, so it
holds for livers of every severity however few of them a run saw. Frames: kidney-liver views (the positives), and
liver views and every other-frame kind (the negatives), of subjects on three consoles (PHILIPS-, GE- and
CANON-like), half drawn with the paper's PDFF distribution and half severity-rich. The fit and the check cohorts
have seeds of their own.

Reported for the rule in the code and for the one refitted here: the share of frames at or above each level, per
frame kind, and for kidney-liver frames per console and PDFF band. Writes kidney_rule.json and kidney_rule.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np
from sklearn.linear_model import LogisticRegression
from tqdm.auto import tqdm

from benchmarks.common import machine, write_reports
from edge_runtime.contracts import VIEWS
from edge_runtime.measure.regions import (
    KIDNEY_RULE,
    KIDNEY_VIEW_EVIDENCE,
    MIN_KIDNEY_EVIDENCE,
    KidneyRule,
    evidence_of,
    kidney_signs,
    look_for_kidney,
)
from edge_runtime.model.uncertainty import pdff_band
from edge_runtime.pipeline.preprocess import channel_max, preprocess_frame
from phantom.other_views import OTHER_KINDS
from phantom.render import profile_for
from phantom.stream import render_shot
from phantom.subject import Subject, draw_cohort

CONSOLES = ("PHILIPS", "GE", "CANON")
DISTRIBUTIONS = ("paper", "severity-rich")
LEVELS = {"measurable": MIN_KIDNEY_EVIDENCE, "overrules a liver head": KIDNEY_VIEW_EVIDENCE}


def shots_of(subject: Subject) -> list[tuple[str, int]]:
    """A subject's frames: two kidney-liver realisations, a liver view and one other-frame kind in turn."""
    other = OTHER_KINDS[subject.index % len(OTHER_KINDS)]
    return [(VIEWS[1], 0), (VIEWS[1], 1), (VIEWS[0], 0), (other, 0)]


def signs_of_shot(subject: Subject, shot: str, seed: int, frame: int) -> list[float] | None:
    """The kidney signs of one rendered shot as the bedside prepares it (None: no template fits)."""
    screen = render_shot(subject, shot, seed, frame)
    tensor = preprocess_frame(screen, profile_for(subject), harmonisation="sector_median")
    look = look_for_kidney(channel_max(tensor))
    return None if look.kidney is None else kidney_signs(look.smooth, look.kidney).tolist()


def frames_of(seed: int, subjects: int) -> list[dict[str, Any]]:
    """Every frame of a cohort (``subjects`` per PDFF distribution), with its kidney signs."""
    drawn = [
        (subject, seed + k)
        for k, distribution in enumerate(DISTRIBUTIONS)
        for subject in draw_cohort(subjects, seed + k, vendors=CONSOLES, pdff_distribution=distribution)
    ]
    rows = []
    for subject, cohort_seed in tqdm(drawn, desc=f"cohort {seed}", unit="subject", mininterval=5):
        for shot, frame in shots_of(subject):
            signs = signs_of_shot(subject, shot, cohort_seed, frame)
            rows.append({"shot": shot, "vendor": subject.vendor, "pdff": subject.pdff, "signs": signs})
    return rows


def fitted_rule(rows: list[dict[str, Any]]) -> KidneyRule:
    """A logistic rule over the signs: kidney-liver frames against every other frame a template fitted."""
    usable = [r for r in rows if r["signs"] is not None]
    x = np.array([r["signs"] for r in usable])
    y = np.array([r["shot"] == VIEWS[1] for r in usable])
    model = LogisticRegression(C=10.0, max_iter=2000).fit(x, y)
    return tuple(round(float(w), 2) for w in model.coef_[0]), round(float(model.intercept_[0]), 2)


def evidence(row: dict[str, Any], rule: KidneyRule) -> float:
    return 0.0 if row["signs"] is None else evidence_of(np.array(row["signs"]), rule)


def pass_rates(rows: list[dict[str, Any]], rule: KidneyRule) -> dict[str, dict[str, str]]:
    """Per group of frames: how many reach each level, as 'k/n'."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["shot"], []).append(row)
        if row["shot"] == VIEWS[1]:
            groups.setdefault(f"{VIEWS[1]} {row['vendor']}", []).append(row)
            groups.setdefault(f"{VIEWS[1]} PDFF {pdff_band(row['pdff'])}", []).append(row)
    return {
        group: {name: _reached(members, rule, level) for name, level in LEVELS.items()}
        for group, members in groups.items()
    }


def _reached(rows: list[dict[str, Any]], rule: KidneyRule, level: float) -> str:
    return f"{sum(evidence(r, rule) >= level for r in rows)}/{len(rows)}"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# The kidney finder's rule on new phantom frames (benchmarks kidney-rule)",
        "",
        f"Machine: {result['machine']['cpu']}, flags {' '.join(result['machine']['flags'])}. Fit cohort seed "
        f"{result['fit_seed']}, check cohort seed {result['check_seed']}, {result['subjects']} subjects per PDFF "
        f"distribution, consoles {', '.join(CONSOLES)}.",
        "",
        f"- rule in the code: `{result['code_rule']}`",
        f"- refitted: `{result['refitted_rule']}`",
        "",
        "| frames (check cohort) | code: measurable | code: overrules a liver head | refitted: measurable | "
        "refitted: overrules a liver head |",
        "| --- | --- | --- | --- | --- |",
    ]
    code, refit = result["check"]["code"], result["check"]["refitted"]
    for group in sorted(code):
        lines.append(f"| {group} | {' | '.join(code[group].values())} | {' | '.join(refit[group].values())} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--subjects", type=click.IntRange(3, 400), default=60, show_default=True, help="Per PDFF distribution.")
@click.option("--fit-seed", type=int, default=7100, show_default=True)
@click.option("--check-seed", type=int, default=7200, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/kidney_rule")
def main(subjects: int, fit_seed: int, check_seed: int, out_dir: str) -> None:
    """Fit the kidney finder's rule on one phantom cohort and check both rules on another; writes kidney_rule.*."""
    fit, check = frames_of(fit_seed, subjects), frames_of(check_seed, subjects)
    refitted = fitted_rule(fit)
    result = {
        "machine": machine(),
        "subjects": subjects,
        "fit_seed": fit_seed,
        "check_seed": check_seed,
        "code_rule": KIDNEY_RULE,
        "refitted_rule": refitted,
        "check": {"code": pass_rates(check, KIDNEY_RULE), "refitted": pass_rates(check, refitted)},
        "frames": {"fit": fit, "check": check},
    }
    report = markdown(result)
    write_reports(Path(out_dir), "kidney_rule", result, report)
    click.echo(report)
