"""`benchmarks exam-honesty`: is every definite answer earned, is "indeterminate" said when the model cannot tell,
and do the sickest livers get an answer, whatever the size of the run the bundle came from?

With ``--train-sizes 40,60,90`` the suite trains a bundle at each size (phantom cohorts of that many subjects, the
default protocol, `--weights none --augment light`; kept in ``--work`` and reused) and plays the same unseen cohort
against each, so "definite" is compared across bundles: the error of definite calls against the level each bundle
certifies, the share of definite calls, the severe livers answered, and interval coverage per band
(``exam_honesty_sizes.png``: risk against training size).

An independent phantom cohort (a seed the model never saw; by default 70 % fatty, severity-rich) is played as
whole live exams with view 'auto', all at once, on the runtime's own pipeline (benchmarks.exams). Reported:

- per exam: the truth, the final call and its class set, the PDFF estimate and its interval;
- the share of exams with a definite call and how many of those are wrong; the risk-coverage curve (accuracy of
  the definite calls against the share of exams that get one) with the bundle's operating point marked;
- coverage of the class sets and of the PDFF intervals, overall, per vendor and per PDFF band;
- per PDFF band: view recall, other frames admitted, the guard's flags, and the share of exams with a call.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import machine, write_reports
from benchmarks.exams import PlayedExam, play_exams
from edge_runtime.contracts import FATTY_PDFF, VIEWS, Count, ExamEstimate
from edge_runtime.model.bundle import load_bundle
from phantom.stream import EXAM_SCRIPT, StreamCohort, prepare_sessions

BANDS = ((0.0, 5.0, "<5"), (5.0, 10.0, "5-10"), (10.0, 15.0, "10-15"), (15.0, 101.0, ">=15"))
SEVERE_PDFF = 15.0


def band_of(pdff: float) -> str:
    return next(name for lo, hi, name in BANDS if lo <= pdff < hi)


def class_set(exam: ExamEstimate) -> list[str]:
    """The exam's class set: the bundle's conformal set when it states one, else the call itself."""
    if exam.class_set is not None:
        return list(exam.class_set)
    return [exam.call] if exam.call in ("fatty", "normal") else ["fatty", "normal"]


def score_exam(played: PlayedExam) -> dict[str, Any]:
    """One exam against its truth, from the final record the runtime wrote."""
    truth, exam = played.session.subject, played.final.exam
    true_call = "fatty" if truth.fatty else "normal"
    lo, hi = exam.pdff_interval or (float("nan"), float("nan"))
    return {
        "session": played.session.name,
        "pdff": truth.pdff,
        "vendor": truth.vendor,
        "band": band_of(truth.pdff),
        "results": len(played.results),
        "call": exam.call,
        "definite": exam.call in ("fatty", "normal"),
        "correct": exam.call == true_call,
        "class_set": class_set(exam),
        "set_covers": true_call in class_set(exam),
        "p_fatty": exam.p_fatty,
        "exam_pdff": exam.pdff,
        "pdff_interval": [lo, hi],
        "interval_width": hi - lo,
        "interval_covers": bool(lo <= truth.pdff <= hi),
        "reason": exam.reason,
    }


def frame_audit(exams: list[PlayedExam]) -> dict[str, Any]:
    """Gate and guard on every frame of these exams (repeats of a frozen frame are neither hits nor misses)."""
    fates = [f for e in exams for f in e.frames if Count.FRAMES_REPEATED not in f.counted]
    views = [f for f in fates if f.shows in VIEWS]
    others = [f for f in fates if f.shows not in VIEWS]
    filed = [f for f in views if f.filed is not None]
    return {
        "view_frames": len(views),
        "view_recall": float(np.mean([f.filed == f.shows for f in views])) if views else None,
        "other_frames": len(others),
        "other_admitted": float(np.mean([f.filed is not None for f in others])) if others else None,
        "guard_flagged": float(np.mean([bool(f.outside) for f in filed])) if filed else None,
        "view_frames_missed_as": dict(Counter(str(f.filed) for f in views if f.filed != f.shows)),
    }


def share(rows: list[dict[str, Any]], key: str, where: Callable[[dict], bool] = lambda r: True) -> float | None:
    chosen = [r for r in rows if where(r)]
    return float(np.mean([r[key] for r in chosen])) if chosen else None


def _states_interval(row: dict[str, Any]) -> bool:
    return bool(np.isfinite(row["interval_width"]))


def median_width(rows: list[dict[str, Any]]) -> float | None:
    """The median PDFF interval width over the exams that state one (an exam without a call states none)."""
    widths = [r["interval_width"] for r in rows if _states_interval(r)]
    return float(np.median(widths)) if widths else None


def summary_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    definite = [r for r in rows if r["definite"]]
    severe = [r for r in rows if r["pdff"] >= SEVERE_PDFF]
    return {
        "exams": len(rows),
        "definite_share": len(definite) / len(rows),
        "definite_wrong_share": float(np.mean([not r["correct"] for r in definite])) if definite else None,
        "definite_wrong": sum(not r["correct"] for r in definite),
        "severe_exams": len(severe),
        "severe_with_results": sum(r["results"] > 0 for r in severe),
        "severe_with_results_and_call": sum(r["results"] > 0 and r["call"] is not None for r in severe),
        "severe_definite": sum(r["definite"] for r in severe),
        "pdff_interval_median_width": median_width(rows),
        "pdff_interval_coverage": share(rows, "interval_covers"),
        "class_set_coverage": share(rows, "set_covers"),
    }


def breakdown(rows: list[dict[str, Any]], exams: dict[str, PlayedExam], key: str) -> dict[str, dict[str, Any]]:
    """Coverage, calls and the gate's and guard's frame figures for each value of ``key`` (band or vendor)."""
    out = {}
    for value in dict.fromkeys(r[key] for r in sorted(rows, key=lambda r: r["pdff"])):
        chosen = [r for r in rows if r[key] == value]
        out[value] = {
            "exams": len(chosen),
            "with_call": float(np.mean([r["call"] is not None for r in chosen])),
            "definite_share": share(chosen, "definite"),
            "definite_correct": share(chosen, "correct", lambda r: r["definite"]),
            "class_set_coverage": share(chosen, "set_covers"),
            "pdff_interval_coverage": share(chosen, "interval_covers"),
            "stated_intervals": sum(_states_interval(r) for r in chosen),
            "stated_interval_coverage": share(chosen, "interval_covers", _states_interval),
            "pdff_interval_median_width": median_width(chosen),
            **frame_audit([exams[r["session"]] for r in chosen]),
        }
    return out


def risk_coverage(rows: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(share of exams with a definite call, accuracy of those calls) as the confidence needed for a call falls: the
    most confident exams first, each called by its p_fatty's side of 0.5."""
    scored = [r for r in rows if r["p_fatty"] is not None]
    order = sorted(scored, key=lambda r: -abs(r["p_fatty"] - 0.5))
    truth = [r["pdff"] >= FATTY_PDFF for r in order]
    said = [r["p_fatty"] >= 0.5 for r in order]
    hits = np.cumsum([t == s for t, s in zip(truth, said, strict=True)])
    return [(k / len(rows), float(hits[k - 1] / k)) for k in range(1, len(order) + 1)]


def curve_plot(path: Path, curve: list[tuple[float, float]], point: tuple[float, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.plot([c for c, _ in curve], [a for _, a in curve], color="tab:blue", label="calling the most confident first")
    ax.plot(*point, "o", color="tab:red", ms=8, label=f"the bundle: {point[0]:.0%} called, {point[1]:.1%} right")
    ax.axhline(0.95, color="grey", ls="--", lw=0.8, label="95 % of definite calls right")
    ax.axvline(0.70, color="grey", ls=":", lw=0.8, label="70 % of exams called")
    ax.set(xlabel="share of exams with a definite call", ylabel="accuracy of definite calls", ylim=(0.5, 1.01))
    ax.set_title("Risk-coverage of the exam answer")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _pp(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} pp"


def _missed(counts: dict[str, int]) -> str:
    """Where the view frames the gate got wrong went: 'None' is kept out (below the floor or other checks)."""
    return ", ".join(f"{'kept out' if k == 'None' else k} {n}" for k, n in sorted(counts.items())) or "none"


def markdown(result: dict[str, Any]) -> str:
    s, cpu = result["summary"], result["machine"]
    lines = [
        "# Honest exam answers (exam-honesty)",
        "",
        f"{s['exams']} exams of {result['seconds']:g} s at once, view 'auto', {result['fps_per_exam']:g} frames/s "
        f"per exam; cohort seed {result['seed']}, {result['prevalence']:.0%} fatty, {result['pdff_distribution']}; "
        f"bundle `{result['bundle']}`. CPU: {cpu['cpu']}, flags {' '.join(cpu['flags'])}.",
        "",
        f"- definite calls: {_pct(s['definite_share'])} of exams; wrong: {s['definite_wrong']} "
        f"({_pct(s['definite_wrong_share'])} of definite calls)",
        f"- PDFF >= {SEVERE_PDFF:g} %: {s['severe_with_results_and_call']} of {s['severe_exams']} exams have results "
        f"and a call ({s['severe_definite']} definite)",
        f"- 90 % PDFF interval: median width {_pp(s['pdff_interval_median_width'])}, covers the truth in "
        f"{_pct(s['pdff_interval_coverage'])} of exams",
        f"- class sets cover the truth in {_pct(s['class_set_coverage'])} of exams",
        "",
        "| PDFF band | exams | with a call | definite | definite right | set covers | interval covers | "
        "median width | view recall | view frames missed as | other admitted | guard flags |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for band, b in result["per_band"].items():
        lines.append(
            f"| {band} | {b['exams']} | {_pct(b['with_call'])} | {_pct(b['definite_share'])} | "
            f"{_pct(b['definite_correct'])} | {_pct(b['class_set_coverage'])} | {_pct(b['pdff_interval_coverage'])} | "
            f"{_pp(b['pdff_interval_median_width'])} | {_pct(b['view_recall'])} | "
            f"{_missed(b['view_frames_missed_as'])} | {_pct(b['other_admitted'])} | {_pct(b['guard_flagged'])} |"
        )
    lines += ["", "| vendor | exams | definite | set covers | interval covers |", "| --- | --- | --- | --- | --- |"]
    for vendor, v in result["per_vendor"].items():
        lines.append(
            f"| {vendor} | {v['exams']} | {_pct(v['definite_share'])} | {_pct(v['class_set_coverage'])} | "
            f"{_pct(v['pdff_interval_coverage'])} |"
        )
    lines += ["", "| exam | PDFF | call | class set | p | exam PDFF [90 %] | reason |"]
    lines += ["| --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["exams"]:
        lo, hi = r["pdff_interval"]
        p = "n/a" if r["p_fatty"] is None else f"{r['p_fatty']:.3f}"
        pdff = "n/a" if r["exam_pdff"] is None else f"{r['exam_pdff']:.1f} [{lo:.1f}, {hi:.1f}]"
        lines.append(
            f"| {r['session']} | {r['pdff']:.1f} | {r['call']} | {'/'.join(r['class_set'])} | {p} | {pdff} | "
            f"{r['reason'] or ''} |"
        )
    return "\n".join([*lines, ""])


def play_and_score(bundle_dir: str, sessions: list, seconds: float, fps_per_exam: float) -> dict[str, Any]:
    """One bundle against the pre-rendered exams: every figure of the report."""
    played = play_exams(load_bundle(bundle_dir), sessions, seconds, fps_per_exam)
    rows = [score_exam(e) for e in played.values()]
    summary = summary_of(rows)
    curve = risk_coverage(rows)
    point = (summary["definite_share"], 1 - (summary["definite_wrong_share"] or 0.0))
    meta = load_bundle(bundle_dir).meta.exam.definite
    summary["certified"] = None if meta is None else meta.model_dump(exclude={"evidence", "method"})
    return {
        "bundle": bundle_dir,
        "summary": summary,
        "per_band": breakdown(rows, played, "band"),
        "per_vendor": breakdown(rows, played, "vendor"),
        "risk_coverage": curve,
        "operating_point": point,
        "exams": rows,
    }


def trained_bundle(work: Path, size: int) -> Path:
    """A bundle trained on ``size`` phantom subjects with the default protocol, made once and kept in ``work``."""
    bundle = work / f"bundle{size}"
    if (bundle / "bundle.json").exists():
        return bundle
    cohort, run, tools = work / f"cohort{size}", work / f"run{size}", Path(sys.executable).parent
    train = ["train", "--manifest", cohort / "manifest.csv", "--out", run, "--weights", "none", "--augment", "light"]
    train += ["--task", "both"]
    export = ["export", "--run", run, "--out", bundle, "--int8", "--version", "0.1.0", "--allow-fidelity-miss"]
    steps = [
        [tools / "phantom", "cohort", "--subjects", size, "--seed", 0, "--out", cohort],
        [tools / "trainer", *train, "--cache-dir", work / "cache"],
        [tools / "trainer", *export, "--no-debugger"],
    ]
    for step in steps:
        click.echo(f"$ {' '.join(map(str, step))}", err=True)
        subprocess.run([str(part) for part in step], check=True)
    return bundle


def _band_coverage(band: str, figures: dict[str, Any]) -> str:
    """A band's interval coverage over all its exams (an exam stating no interval counts as a miss), and over the
    intervals stated, which is what a conformal interval promises."""
    stated = figures["stated_intervals"]
    return (
        f"{band} {_pct(figures['pdff_interval_coverage'])} ({figures['exams']}; "
        f"{_pct(figures['stated_interval_coverage'])} of {stated} stated)"
    )


def sizes_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Definite means the same at every training size (exam-honesty --train-sizes)",
        "",
        "| subjects | certified error (on subjects) | definite share | wrong definite calls | cross-fitted error "
        "fatty / normal | severe: results, call | interval covers per band (exams; of intervals stated) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        s, c = row["summary"], row["summary"]["certified"] or {}
        cv = c.get("cv_error", {})
        bands = ", ".join(_band_coverage(b, v) for b, v in row["per_band"].items())
        lines.append(
            f"| {row['size']} | {_pct(c.get('error'))} ({c.get('subjects', 'n/a')}) | {_pct(s['definite_share'])} | "
            f"{s['definite_wrong']} ({_pct(s['definite_wrong_share'])}) | {_pct(cv.get('fatty'))} / "
            f"{_pct(cv.get('normal'))} | {s['severe_with_results']} of {s['severe_exams']}, "
            f"{s['severe_with_results_and_call']} | {bands} |"
        )
    return "\n".join([*lines, ""])


def sizes_plot(path: Path, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["size"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    wrong = [r["summary"]["definite_wrong_share"] or 0.0 for r in rows]
    ax.plot(sizes, wrong, "o-", color="tab:red", label="wrong definite calls (unseen exams)")
    ax.plot(sizes, [r["summary"]["definite_share"] for r in rows], "s-", color="tab:blue", label="definite share")
    ax.axhline(0.05, color="grey", ls="--", lw=0.8, label="the certified level (5 %)")
    ax.set(xlabel="training subjects", ylabel="share of exams", ylim=(0, 1.02), xticks=sizes)
    ax.set_title("Risk against training size")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False), default=None)
@click.option("--train-sizes", default=None, help="Comma-separated training sizes: train a bundle at each instead.")
@click.option("--work", type=click.Path(file_okay=False), default="out/benchmarks/exam_honesty/work")
@click.option("--sessions", type=click.IntRange(1, 400), default=50, show_default=True)
@click.option("--seed", type=int, default=2024, show_default=True, help="Cohort seed (not a training seed).")
@click.option("--prevalence", type=click.FloatRange(0, 1), default=0.7, show_default=True)
@click.option("--pdff-distribution", type=click.Choice(["paper", "severity-rich"]), default="severity-rich")
@click.option("--seconds", type=click.FloatRange(5), default=50, show_default=True, help="Frame time per exam.")
@click.option("--fps-per-exam", type=click.FloatRange(0.1), default=1.0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/exam_honesty")
def main(bundle_dir: str | None, train_sizes: str | None, work: str, out_dir: str, **cohort: Any) -> None:
    """Play an independent cohort as live exams and score the honesty of the answers; writes exam_honesty.*."""
    if (bundle_dir is None) == (train_sizes is None):
        raise click.UsageError("give --bundle B, or --train-sizes 40,60,90")
    shots = tuple(dict.fromkeys(shot for shot, _ in EXAM_SCRIPT))
    stream = StreamCohort(cohort["seed"], cohort["prevalence"], cohort["pdff_distribution"])
    click.echo(f"rendering {cohort['sessions']} exams...", err=True)
    exams = prepare_sessions(cohort["sessions"], stream, 2, shots=shots)
    out, timing = Path(out_dir), (cohort["seconds"], cohort["fps_per_exam"])
    if bundle_dir is not None:
        result = {**cohort, "machine": machine(), **play_and_score(bundle_dir, exams, *timing)}
        write_reports(out, "exam_honesty", result, markdown(result))
        curve_plot(out / "exam_honesty.png", result["risk_coverage"], result["operating_point"])
        click.echo(markdown(result))
        return
    rows = []
    for size in (int(v) for v in train_sizes.split(",")):
        bundle = trained_bundle(Path(work), size)
        rows.append({"size": size, **play_and_score(str(bundle), exams, *timing)})
    result = {**cohort, "machine": machine(), "sizes": rows}
    write_reports(out, "exam_honesty_sizes", result, sizes_markdown(rows))
    sizes_plot(out / "exam_honesty_sizes.png", rows)
    click.echo(sizes_markdown(rows))
