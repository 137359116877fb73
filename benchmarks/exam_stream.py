"""`benchmarks exam-stream`: live phantom exams through the runtime, scored on the exam-level answer.

A fresh server in this process serves the bundle; the phantom scanner streams many concurrent exams (one per
phantom subject, drawn with a seed the model never trained on) for ``--duration`` seconds; every result is
collected. Per exam: flips of the per-pair call and of the exam call (in total, and after the exam call first
became stable), the final exam answer against the phantom's truth, and whether the final 90 % PDFF interval
covers the true PDFF. Subjects at least 1.5 pp from the 5 % line must be called right; those within 1 pp may
be indeterminate, and the share is reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import click
import numpy as np
import zmq

from benchmarks.common import machine, write_reports
from edge_runtime.config import load_config
from edge_runtime.contracts import FATTY_PDFF, TOPIC_RESULT, ResultMessage
from edge_runtime.model.bundle import load_bundle
from edge_runtime.model.served import ServedModel
from edge_runtime.pipeline.exam import count_flips
from edge_runtime.scanners.profiles import default_profiles
from edge_runtime.server import EdgeServer
from edge_runtime.tools.ports import free_port
from edge_runtime.wire.transport import MessageHub, subscriber

CLEAR_PP, NEAR_PP = 1.5, 1.0


def score_exam(results: list[ResultMessage], truth: dict[str, Any]) -> dict[str, Any]:
    """One exam's figures from its results in arrival order."""
    exam_calls = [r.exam.call for r in results if r.exam is not None and r.exam.call is not None]
    final = results[-1].exam
    lo, hi = final.pdff_interval or (float("nan"), float("nan"))
    distance = abs(truth["pdff"] - FATTY_PDFF)
    return {
        "pdff": truth["pdff"],
        "fatty": truth["fatty"],
        "band": "clear" if distance >= CLEAR_PP else "near" if distance < NEAR_PP else "between",
        "pairs": len(results),
        "pair_flips": count_flips([r.fatty for r in results]),
        "exam_flips": count_flips(exam_calls),
        "first_stable_pair": next((i for i, r in enumerate(results) if r.exam and r.exam.call), None),
        "final_call": final.call,
        "correct": final.call == ("fatty" if truth["fatty"] else "normal"),
        "final_p": final.p_fatty,
        "final_pdff": final.pdff,
        "pdff_interval": [lo, hi],
        "covered": bool(lo <= truth["pdff"] <= hi),
        "discordant": final.discordant,
        "calibrated": final.calibrated,
    }


def collect(server: EdgeServer, stream: subprocess.Popen, seconds: float) -> dict[str, list[ResultMessage]]:
    """Every result, grouped by session, until the stream ends or the time is up."""
    by_session: dict[str, list[ResultMessage]] = defaultdict(list)
    deadline = time.monotonic() + seconds
    with subscriber(server.results_endpoint, [TOPIC_RESULT]) as sock:
        hub = MessageHub(sock)
        while time.monotonic() < deadline and (stream.poll() is None or sock.poll(200)):
            received = hub.receive(200)
            if received is not None and isinstance(received[1], ResultMessage):
                by_session[received[1].session].append(received[1])
    return by_session


def run_exams(bundle_dir: str, sessions: int, seed: int, duration: float, fps: float, switch_every: float) -> dict:
    frames = f"tcp://127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as tmp:
        truth_file = Path(tmp) / "truth.json"
        config = load_config(
            None,
            {
                "model": {"bundle": bundle_dir},
                "transport": {"frames": frames, "results": "tcp://127.0.0.1:*"},
                "audit": {"log": Path(tmp) / "a"},
            },
        )
        model = ServedModel.prepared(load_bundle(bundle_dir, num_threads=2), default_profiles(), config)
        server = EdgeServer(config, model, zmq.Context())
        server.start()
        command = [sys.executable, "-m", "phantom.cli", "stream", "--frames", frames, "--fps", str(fps)]
        command += ["--sessions", str(sessions), "--seed", str(seed), "--switch-every", str(switch_every)]
        command += ["--duration", str(duration), "--truth-log", str(truth_file)]
        stream = subprocess.Popen(command)
        try:
            by_session = collect(server, stream, duration + 600)
        finally:
            stream.terminate()
            stream.wait(10)
            server.stop()
        truth = json.loads(truth_file.read_text())
    return {name: score_exam(results, truth[name]) for name, results in sorted(by_session.items())}


def summary_of(exams: dict[str, dict[str, Any]]) -> dict[str, Any]:
    clear = [e for e in exams.values() if e["band"] == "clear"]
    near = [e for e in exams.values() if e["band"] == "near"]
    return {
        "exams": len(exams),
        "clear_exams": len(clear),
        "clear_correct": float(np.mean([e["correct"] for e in clear])) if clear else None,
        "clear_exam_flips_total": int(sum(e["exam_flips"] for e in clear)),
        "near_exams": len(near),
        "near_indeterminate": float(np.mean([e["final_call"] == "indeterminate" for e in near])) if near else None,
        "pair_flips_total": int(sum(e["pair_flips"] for e in exams.values())),
        "exam_flips_total": int(sum(e["exam_flips"] for e in exams.values())),
        "pairs_median": float(np.median([e["pairs"] for e in exams.values()])),
        "pdff_coverage": float(np.mean([e["covered"] for e in exams.values()])),
        "discordant_share": float(np.mean([e["discordant"] for e in exams.values()])),
    }


def markdown(result: dict[str, Any]) -> str:
    s, cpu = result["summary"], result["machine"]
    lines = [
        "# Exam-level answers on live phantom exams (exam-stream)",
        "",
        f"{s['exams']} concurrent exams of {result['duration']:g} s, {result['fps']:g} frames/s shared, stream seed "
        f"{result['seed']}, bundle `{result['bundle']}`. Machine: {cpu['cpu']}, flags {' '.join(cpu['flags'])}.",
        "",
        f"- clear subjects (|PDFF - 5| >= {CLEAR_PP} pp): {s['clear_exams']}, final exam call correct "
        f"{s['clear_correct']:.1%}, exam-call flips {s['clear_exam_flips_total']}",
        f"- near the line (< {NEAR_PP} pp): {s['near_exams']}, indeterminate share "
        + (f"{s['near_indeterminate']:.0%}" if s["near_indeterminate"] is not None else "n/a"),
        f"- flips over all exams: per-pair call {s['pair_flips_total']}, exam call {s['exam_flips_total']} "
        f"(median {s['pairs_median']:.0f} pairs per exam)",
        f"- final 90 % PDFF interval covers the true PDFF in {s['pdff_coverage']:.1%} of exams",
        f"- discordant final answers: {s['discordant_share']:.1%}",
        "",
        "| exam | true PDFF | band | pairs | pair flips | exam flips | final call | exam PDFF [90 %] | covered |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in result["exams"].items():
        lo, hi = e["pdff_interval"]
        lines.append(
            f"| {name} | {e['pdff']:.1f} | {e['band']} | {e['pairs']} | {e['pair_flips']} | {e['exam_flips']} | "
            f"{e['final_call']} | {e['final_pdff']:.1f} [{lo:.1f}, {hi:.1f}] | {'yes' if e['covered'] else 'no'} |"
        )
    return "\n".join([*lines, ""])


def exam_plot(path: Path, exams: dict[str, dict[str, Any]]) -> None:
    """True vs exam PDFF with the 90 % interval, coloured by the final call."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"fatty": "tab:red", "normal": "tab:blue", "indeterminate": "tab:grey", None: "black"}
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for e in exams.values():
        lo, hi = e["pdff_interval"]
        ax.errorbar(
            e["pdff"],
            e["final_pdff"],
            yerr=[[e["final_pdff"] - lo], [hi - e["final_pdff"]]],
            fmt="o",
            ms=4,
            color=colours[e["final_call"]],
            alpha=0.8,
        )
    for call, colour in colours.items():
        if call:
            ax.plot([], [], "o", color=colour, label=call)
    top = max(max(e["pdff"], e["pdff_interval"][1]) for e in exams.values())
    ax.plot([0, top], [0, top], color="grey", lw=1, ls="--")
    ax.axhline(FATTY_PDFF, color="k", lw=0.8)
    ax.axvline(FATTY_PDFF, color="k", lw=0.8)
    ax.set(xlabel="true PDFF (%)", ylabel="exam PDFF (%) with 90 % interval", title="Exam answers vs phantom truth")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--sessions", type=click.IntRange(1, 200), default=40, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True, help="Stream cohort seed (not a training seed).")
@click.option("--duration", type=click.FloatRange(10), default=70, show_default=True, help="Seconds per exam.")
@click.option("--fps", type=click.FloatRange(1), default=40, show_default=True, help="Frames/s over all exams.")
@click.option("--switch-every", type=click.FloatRange(0.5), default=3.0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/exam_stream")
def main(bundle_dir: str, sessions: int, seed: int, duration: float, fps: float, switch_every: float, out_dir: str):
    """Stream phantom exams through the runtime and score the exam-level answers; writes exam_stream.*."""
    exams = run_exams(bundle_dir, sessions, seed, duration, fps, switch_every)
    result = {"bundle": bundle_dir, "seed": seed, "duration": duration, "fps": fps, "machine": machine()}
    result.update(summary=summary_of(exams), exams=exams)
    out = Path(out_dir)
    write_reports(out, "exam_stream", result, markdown(result))
    exam_plot(out / "exam_stream.png", exams)
    click.echo(markdown(result))
