"""`benchmarks e2e-ab`: the runtime's end-to-end latency now against an earlier commit's, measured in one run.

CPUs differ between machines and sessions, so a latency is only comparable with one measured beside it. This suite
extracts the earlier commit's packages from git (``git archive``), then alternates ``benchmarks e2e`` runs of that
tree and of this one (A B A B ...) on the same bundle, each in its own process, and reports each side's p50 and
the ratio of the medians.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import machine, write_reports

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_runtime", "phantom", "benchmarks", "clkl", "calibration", "trainer")


def checkout(ref: str, into: Path) -> Path:
    """The packages of commit ``ref`` under ``into`` (no work tree, no install)."""
    archive = subprocess.run(["git", "archive", ref, *PACKAGES], cwd=ROOT, capture_output=True)
    if archive.returncode != 0:
        raise click.ClickException(f"git archive {ref}: {archive.stderr.decode().strip()}")
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def one_side(tree: Path, bundle: str, results: int, fps: float, out: Path) -> dict[str, Any]:
    """One `benchmarks e2e` run of the tree's own code; its report."""
    command = [sys.executable, "-m", "benchmarks", "e2e", "--bundle", bundle, "--runs", "1"]
    command += ["--results", str(results), "--fps", str(fps), "--out", str(out)]
    done = subprocess.run(command, cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, text=True,
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        raise click.ClickException(f"e2e in {tree} failed: {done.stderr[-2000:]}")
    return json.loads((out / "e2e.json").read_text())


def _p50(report: dict[str, Any]) -> float:
    return float(report["runs"][0]["summary"]["end_to_end"]["p50"])


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--baseline", "ref", required=True, help="The earlier commit (any git revision).")
@click.option("--current", "current_ref", default=None, help="Measure this commit instead of the working tree.")
@click.option("--pairs", type=click.IntRange(1), default=3, show_default=True, help="A and B runs each.")
@click.option("--results", type=click.IntRange(10), default=200, show_default=True, help="Results per run.")
@click.option("--fps", type=click.FloatRange(0.5), default=3.0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/e2e_ab")
def main(
    bundle_dir: str, ref: str, current_ref: str | None, pairs: int, results: int, fps: float, out_dir: str
) -> None:
    """End-to-end p50 of this tree against an earlier commit's, alternating runs on one machine."""
    out = Path(out_dir)
    sides: dict[str, list[float]] = {"baseline": [], "current": []}
    with tempfile.TemporaryDirectory() as tmp:
        current = checkout(current_ref, Path(tmp) / "current") if current_ref else ROOT
        trees = {"baseline": checkout(ref, Path(tmp) / "baseline"), "current": current}
        for i in range(pairs):
            for side, tree in trees.items():
                report = one_side(tree, str(Path(bundle_dir).resolve()), results, fps, Path(tmp) / f"{side}{i}")
                sides[side].append(_p50(report))
                click.echo(f"{side} run {i + 1}: end-to-end p50 {sides[side][-1]:.1f} ms", err=True)
    ratio = float(np.median(sides["current"]) / np.median(sides["baseline"]))
    result = {
        "baseline": ref,
        "current": current_ref or "working tree",
        "p50_ms": sides,
        "median_ratio_current_over_baseline": ratio,
        "machine": machine(),
    }
    flags = " ".join(result["machine"]["flags"])
    lines = [
        "# End-to-end p50, this tree against an earlier commit (one run, alternating)",
        "",
        f"Baseline `{ref}`, current `{result['current']}`, {pairs} runs each, {results} results per run at "
        f"{fps:g} frames/s. CPU: {result['machine']['cpu']}, flags {flags}.",
        "",
        "| side | p50 per run (ms) | median |",
        "| --- | --- | --- |",
        *[f"| {s} | {', '.join(f'{v:.1f}' for v in vs)} | {np.median(vs):.1f} |" for s, vs in sides.items()],
        "",
        f"Current / baseline: {ratio:.3f}",
        "",
    ]
    write_reports(out, "e2e_ab", result, "\n".join(lines))
    click.echo("\n".join(lines))
