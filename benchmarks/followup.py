"""Follow-up honesty: phantom patients scanned twice, with and without a real change, played as live exams.

Three groups of subjects from one unseen cohort, each scanned on a first visit and again months later
(phantom.followup): a calibration group and a no-change group at the same PDFF, and a change group whose PDFF moved
by at least 6 pp, both directions mixed. The calibration group fixes the change rule's scale (the conformal 90 %
quantile of unchanged pairs' normalised change); the other two are judged with it and with the runtime's default
rule: called changed in the right direction, in the wrong one, and unchanged livers called changed. Runs on the
same bundle with other seeds can pool their calibration groups (``--calibrate-with``), so one rule rests on more
unchanged patients and is judged on every run's other groups.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from benchmarks.common import machine, write_reports
from benchmarks.exams import play_exams
from edge_runtime.config import FollowUpSettings
from edge_runtime.contracts import Change, ExamRecord
from edge_runtime.followup.change import ChangeRule, ThisExam, as_prior, compare, lineage_of
from edge_runtime.model.bundle import load_bundle
from edge_runtime.model.uncertainty import conformal_quantile
from phantom.followup import first_visit, revisit, visit_session
from phantom.stream import EXAM_SCRIPT
from phantom.subject import Subject, draw_cohort

GROUPS = ("calibration", "no_change", "change")
MIN_CHANGE_PP = 6.0
DAYS_APART = 120


@dataclass(frozen=True)
class FollowedPatient:
    group: str
    before: Subject
    after: Subject

    @property
    def true_change(self) -> float:
        return round(self.after.pdff - self.before.pdff, 2)


def second_pdff(subject: Subject, rng: np.random.Generator) -> float:
    """A real change of at least 6 pp: a fatty liver at 12 % or more improves, any other worsens."""
    if subject.pdff >= 12.0:
        return float(rng.uniform(max(1.0, 0.3 * subject.pdff), subject.pdff - MIN_CHANGE_PP))
    return subject.pdff + float(rng.uniform(MIN_CHANGE_PP, 12.0))


def followed_patients(per_group: int, seed: int) -> list[FollowedPatient]:
    """Per group ``per_group`` subjects of one cohort (60 % fatty, grades evenly spread), each with a second visit."""
    subjects = draw_cohort(3 * per_group, seed, 0.6, pdff_distribution="severity-rich")
    rng = np.random.default_rng([seed, 0xF0])
    patients = []
    for k, subject in enumerate(subjects):
        group = GROUPS[k // per_group]
        pdff = second_pdff(subject, rng) if group == "change" else subject.pdff
        patients.append(FollowedPatient(group, subject, revisit(subject, pdff, 1, DAYS_APART, seed).subject))
    return patients


def play_visits(
    bundle_dir: str, patients: list[FollowedPatient], seed: int, timing: tuple[float, float]
) -> dict[str, ExamRecord]:
    """Both visits of every patient as live exams, all at once: session name -> the exam's final record."""
    shots = tuple(dict.fromkeys(shot for shot, _ in EXAM_SCRIPT))
    sessions = []
    for p in patients:
        sessions.append(visit_session(first_visit(p.before), seed, f"{p.before.subject_id}-v0", shots, 2))
        visit = revisit(p.before, p.after.pdff, 1, DAYS_APART, seed)
        sessions.append(visit_session(visit, seed, f"{p.before.subject_id}-v1", shots, 2))
    tables = {"sessions": {"max_active": 2 * len(sessions)}}  # every exam open at once
    played = play_exams(load_bundle(bundle_dir), sessions, *timing, tables=tables)
    return {name: exam.final for name, exam in played.items()}


KEPT = "followup_exams.json"  # every exam's final record: --rescore judges them again without playing


def kept_finals(out: Path) -> dict[str, ExamRecord]:
    """The exams a run kept in its --out, by session."""
    return {k: ExamRecord.model_validate(v) for k, v in json.loads((out / KEPT).read_text()).items()}


def calibration_rows(patients: list[FollowedPatient], finals: dict[str, ExamRecord], rule: ChangeRule) -> list[dict]:
    """The calibration group's comparisons under ``rule``: what calibrated_rule is fitted on."""
    return [judged(p, finals, rule) for p in patients if p.group == "calibration"]


def kept_calibration_rows(out: Path, rule: ChangeRule) -> list[dict[str, Any]]:
    """Another run's calibration group, judged again from its kept exams (its patients rebuilt from its seed)."""
    said = json.loads((out / "followup.json").read_text())
    return calibration_rows(followed_patients(said["per_group"], said["seed"]), kept_finals(out), rule)


def judged(p: FollowedPatient, finals: dict[str, ExamRecord], rule: ChangeRule) -> dict[str, Any]:
    """One patient's comparison under ``rule``, beside its truth."""
    first, second = finals[f"{p.before.subject_id}-v0"], finals[f"{p.before.subject_id}-v1"]
    prior = as_prior(first, "2026-01-01")
    follow = compare(prior, ThisExam(second.exam, lineage_of(second.model), second.scanner), DAYS_APART, rule)
    return {
        "patient": p.before.subject_id, "group": p.group, "vendor": p.before.vendor,
        "pdff_before": p.before.pdff, "pdff_after": p.after.pdff, "true_change": p.true_change,
        "measured_before": first.exam.pdff, "measured_after": second.exam.pdff,
        "se_before": first.exam.pdff_se, "se_after": second.exam.pdff_se,
        "n_before": first.exam.n_pairs, "n_after": second.exam.n_pairs,
        "statement": follow.statement.value, "change": follow.change, "interval": follow.change_interval,
        "reason": follow.reason, "response": follow.response,
    }  # fmt: skip


def calibrated_rule(rows: list[dict[str, Any]], coverage: float = 0.9) -> ChangeRule:
    """The rule from unchanged pairs: one pair's sd pooled over the exams, the between-visit sd by moments (what the
    changes spread beyond the exams' own errors), then the scale as the conformal quantile of |change| over the
    pair's repeat error."""
    pairs = [r for r in rows if None not in (r["measured_before"], r["measured_after"], r["se_before"], r["se_after"])]
    spread = [r[f"se_{visit}"] ** 2 * r[f"n_{visit}"] for r in pairs for visit in ("before", "after")]
    pair_sd = math.sqrt(float(np.mean(spread)))
    moved = np.array([r["measured_after"] - r["measured_before"] for r in pairs])
    own_sd = lambda r, visit: r[f"se_{visit}"] * (1 + r[f"measured_{visit}"])  # noqa: E731
    own = np.array([own_sd(r, "before") ** 2 + own_sd(r, "after") ** 2 for r in pairs])
    between = math.sqrt(max(0.0, float(np.mean(moved**2) - np.mean(own)) / 2))
    unit = ChangeRule(1.0, between, pair_sd)
    scores = [abs(m) / unit.repeat_error((r["measured_before"], r["se_before"]), (r["measured_after"], r["se_after"]))
              for m, r in zip(moved, pairs, strict=True)]  # fmt: skip
    return ChangeRule(conformal_quantile(scores, coverage), between, pair_sd)


def bars(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's bars: real changes called in the right direction, none in the wrong one, few false changes."""
    change = [r for r in rows if r["group"] == "change"]
    still = [r for r in rows if r["group"] == "no_change"]
    direction = lambda r: Change.INCREASED.value if r["true_change"] > 0 else Change.DECREASED.value  # noqa: E731
    right = sum(r["statement"] == direction(r) for r in change)
    wrong = sum(r["statement"] in (Change.INCREASED.value, Change.DECREASED.value) and r["statement"] != direction(r)
                for r in change)  # fmt: skip
    false = sum(r["statement"] in (Change.INCREASED.value, Change.DECREASED.value) for r in still)
    ratios = [r["change"] / r["true_change"] for r in change if r["change"] is not None]
    return {
        "change_patients": len(change), "right_direction": right, "wrong_direction": wrong,
        "not_comparable_change": sum(r["statement"] == Change.NOT_COMPARABLE.value for r in change),
        "no_change_patients": len(still), "false_change": false,
        "not_comparable_still": sum(r["statement"] == Change.NOT_COMPARABLE.value for r in still),
        "right_share": right / max(1, len(change)), "false_share": false / max(1, len(still)),
        "read_ratio": [float(np.percentile(ratios, q)) for q in (50, 10, 90)] if ratios else [math.nan] * 3,
        "response_said": sum(r["response"] is True for r in change),
        "response_right": sum(r["response"] is True and r["true_change"] / r["pdff_before"] <= -0.3 for r in change),
    }  # fmt: skip


def plot(path: Path, rows: list[dict[str, Any]], title: str) -> None:
    """Measured change against true change, with each comparison's interval, coloured by statement."""
    colours = {"increased": "tab:red", "decreased": "tab:green", "no_change": "tab:grey", "not_comparable": "black"}
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for r in rows:
        if r["group"] == "calibration" or r["change"] is None:
            continue
        low, high = r["interval"]
        ax.errorbar(r["true_change"], r["change"], yerr=[[r["change"] - low], [high - r["change"]]], fmt="o", ms=4,
                    color=colours[r["statement"]], alpha=0.8, lw=0.8)  # fmt: skip
    ax.axline((0, 0), slope=1, color="grey", ls="--", lw=0.8)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(xlabel="true change in PDFF, pp", ylabel="measured change (90 % interval), pp", title=title)
    for name, colour in colours.items():
        ax.plot([], [], "o", color=colour, label=name.replace("_", " "))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"# Follow-up honesty: {result['bundle']}", "", f"Machine: {m['cpu']}, {m['cores']} cores, flags "
             f"{' '.join(m['flags'])}", ""]  # fmt: skip
    lines += [
        "| rule | scale | between visits, pp | pair sd | right direction | wrong direction | unchanged called changed |"
    ]
    lines += ["| --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("calibrated", "default"):
        rule, b = result[name]["rule"], result[name]["bars"]
        lines.append(
            f"| {name} | {rule['scale']:.2f} | {rule['between_visits']:.2f} | {rule['pair_sd']:.3f} "
            f"| {b['right_direction']}/{b['change_patients']} | {b['wrong_direction']} "
            f"| {b['false_change']}/{b['no_change_patients']} |"
        )
    rule = result["calibrated"]["rule"]
    pooled = result["calibrated_with"]
    lines += ["", f"The calibrated rule rests on {result['calibration_patients']} unchanged patients"
              + (f" (this run's and {', '.join(pooled)}'s calibration groups)." if pooled else ".")]  # fmt: skip
    lines += ["", "The rule is the bundle's: a box serving this bundle sets, in edge.toml,", "", "```toml",
              "[runtime.followup]", f"scale = {rule['scale']:.2f}", f"between_visits = {rule['between_visits']:.2f}",
              f"pair_sd = {rule['pair_sd']:.3f}", "```"]  # fmt: skip
    b = result["calibrated"]["bars"]
    lines += ["", f"Measured change over true change (change group): median {b['read_ratio'][0]:.2f}, 10-90 % "
              f"{b['read_ratio'][1]:.2f}-{b['read_ratio'][2]:.2f}; a 30 % fall said {b['response_said']} times, "
              f"{b['response_right']} of them true."]  # fmt: skip
    lines += ["", "| patient | group | true change | measured | statement |", "| --- | --- | --- | --- | --- |"]
    for r in result["calibrated"]["rows"]:
        lines.append(f"| {r['patient']} | {r['group']} | {r['true_change']:+.1f} | {r['reason']} | {r['statement']} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--per-group", type=click.IntRange(5, 200), default=30, show_default=True)
@click.option("--seed", type=int, default=4545, show_default=True, help="Cohort seed (not a training seed).")
@click.option("--seconds", type=click.FloatRange(5), default=40, show_default=True, help="Frame time per exam.")
@click.option("--fps-per-exam", type=click.FloatRange(0.1), default=1.0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/followup")
@click.option("--rescore", is_flag=True, help="Judge the exams a previous run kept in --out again, without playing.")
@click.option(
    "--calibrate-with",
    "pooled_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="Another run's --out (same bundle, another --seed): its calibration group joins this one's, so the rule "
    "rests on more unchanged patients; neither run's judged groups are used to calibrate.",
)
def main(
    bundle_dir: str,
    per_group: int,
    seed: int,
    seconds: float,
    fps_per_exam: float,
    out_dir: str,
    rescore: bool,
    pooled_dirs: tuple[str, ...],
) -> None:
    """Play followed phantom patients twice and score the change statements; writes followup.*."""
    patients, out = followed_patients(per_group, seed), Path(out_dir)
    if any(Path(d).resolve() == out.resolve() for d in pooled_dirs):
        raise click.UsageError("--calibrate-with names --out itself: its calibration group would count twice")
    if rescore:
        finals = kept_finals(out)
    else:
        click.echo(f"playing {2 * len(patients)} exams of {len(patients)} followed patients...", err=True)
        finals = play_visits(bundle_dir, patients, seed, (seconds, fps_per_exam))
        out.mkdir(parents=True, exist_ok=True)
        (out / KEPT).write_text(json.dumps({k: v.model_dump(mode="json") for k, v in finals.items()}))
    default = FollowUpSettings().rule
    calibration = calibration_rows(patients, finals, default)
    calibration += [row for d in pooled_dirs for row in kept_calibration_rows(Path(d), default)]
    calibrated = calibrated_rule(calibration)
    result: dict[str, Any] = {"bundle": bundle_dir, "machine": machine(), "per_group": per_group, "seed": seed}
    result |= {"calibrated_with": [str(d) for d in pooled_dirs], "calibration_patients": len(calibration)}
    for name, rule in (("calibrated", calibrated), ("default", default)):
        rows = [judged(p, finals, rule) for p in patients]
        said = {"scale": rule.scale, "between_visits": rule.between_visits, "pair_sd": rule.pair_sd}
        result[name] = {"rule": said, "bars": bars(rows), "rows": rows}
    write_reports(out, "followup", result, markdown(result))
    title = f"Follow-up: scale {calibrated.scale:.2f}, between visits {calibrated.between_visits:.2f} pp"
    plot(out / "followup.png", result["calibrated"]["rows"], title)
    click.echo(markdown(result))
