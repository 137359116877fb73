"""`benchmarks site-cohort`: a validation study pulled from a hospital archive in a real PACS, scored against the
phantom's truth.

A phantom archive (``--patients`` with MRI, distractors, studies outside the window, a second candidate study, studies
without a view or imaged unlike training) goes into Orthanc on loopback; `trainer site-cohort` pulls the cohort by
C-GET (and, with ``--move``, again by C-MOVE). Reported: every patient's logged outcome against the truth, whether
each used patient's chosen frames show the view they are filed as, and the time per patient.
"""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import click

from benchmarks.common import machine, write_reports
from benchmarks.orthanc import Orthanc
from edge_runtime.contracts.validation import CohortOutcome
from edge_runtime.tools.ports import free_port

MOVE_AE = "FLECOHORT"


def _truth_of(archive: Path, cohort: Path) -> dict[str, dict[str, Any]]:
    """Each pseudonym's patient in the truth, through the private re-identification table."""
    truth = json.loads((archive / "truth.json").read_text())["patients"]
    rows = list(csv.DictReader((cohort / "private" / "subjects.csv").open()))
    return {r["subject_id"]: next(p for p in truth if r["patient_id"] in ("", p["patient_id"])
                                  and r["accession"] in ("", p["accession"])) for r in rows}  # fmt: skip


def score(archive: Path, cohort: Path) -> dict[str, Any]:
    """Outcomes and chosen views against the truth."""
    truth = _truth_of(archive, cohort)
    log = {r["subject_id"]: r for r in csv.DictReader((cohort / "cohort_log.csv").open())}
    wrong_outcome = [f"{s}: logged {r['outcome']}, truth {truth[s]['expected']}" for s, r in log.items()
                     if r["outcome"] != truth[s]["expected"]]  # fmt: skip
    views_right, views_wrong = 0, []
    for row in csv.DictReader((cohort / "manifest.csv").open()):
        shown = truth[row["subject_id"]]["instances"].get(Path(row["path"]).stem, "?").removeprefix("cine:")
        if shown == row["view"]:
            views_right += 1
        else:
            views_wrong.append(f"{row['subject_id']} {row['view']}: the frame shows {shown}")
    seconds = [float(r["seconds"]) for r in log.values() if float(r["seconds"]) > 0]
    return {
        "patients": len(log),
        "outcomes": {str(o): sum(r["outcome"] == o for r in log.values()) for o in CohortOutcome},
        "outcome_right": len(log) - len(wrong_outcome),
        "wrong_outcomes": wrong_outcome,
        "usable": sum(p["expected"] == CohortOutcome.USED for p in truth.values()),
        "view_frames_right": views_right,
        "wrong_views": views_wrong,
        "seconds_per_patient_median": statistics.median(seconds) if seconds else None,
        "seconds_per_patient_mean": statistics.mean(seconds) if seconds else None,
    }


def _pull(archive: Path, pacs: Orthanc, bundle: str, out: Path, how: str) -> float:
    from edge_runtime.hospital.peers import Peer
    from edge_runtime.hospital.reference import read_reference
    from edge_runtime.hospital.retrieve import Archive
    from trainer.site.cohort import site_cohort

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    peer = Archive(Peer.parse(pacs.peer), MOVE_AE, move_port=pacs.move_destinations[MOVE_AE])
    site_cohort(read_reference(archive / "reference.csv"), peer, bundle, out,
                profiles=str(archive / "profiles.json"), how=how)  # fmt: skip
    return time.perf_counter() - started


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Site cohort from a PACS", "", f"CPU: {result['machine']['cpu']}, flags "
             f"{' '.join(result['machine'].get('flags', []))}", ""]  # fmt: skip
    lines += ["| retrieval | patients | outcome right | usable | view frames right | s/patient (median) | total s |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for how, r in result["runs"].items():
        lines.append(f"| {how} | {r['patients']} | {r['outcome_right']} | {r['usable']} | {r['view_frames_right']} of "
                     f"{2 * r['outcomes'][CohortOutcome.USED]} | {r['seconds_per_patient_median']:.2f} | "
                     f"{r['seconds']:.0f} |")  # fmt: skip
    first = next(iter(result["runs"].values()))
    lines += ["", "Outcomes: " + ", ".join(f"{k} {v}" for k, v in first["outcomes"].items() if v)]
    for said in first["wrong_outcomes"] + first["wrong_views"]:
        lines.append(f"- {said}")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--patients", type=click.IntRange(8), default=60, show_default=True)
@click.option("--distractors", type=click.IntRange(0), default=10, show_default=True)
@click.option("--seed", type=int, default=43, show_default=True)
@click.option("--move/--no-move", default=True, show_default=True, help="Also pull by C-MOVE.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/site_cohort")
def main(bundle_dir: str, patients: int, distractors: int, seed: int, move: bool, out_dir: str) -> None:
    """Pull a validation cohort from a phantom archive in Orthanc and score it against the truth."""
    from phantom.archive import ArchivePlan, write_archive

    out = Path(out_dir)
    archive = out / "archive"
    if not (archive / "truth.json").is_file():
        write_archive(archive, ArchivePlan(patients=patients, distractors=distractors, seed=seed))
    pacs = Orthanc(out / "orthanc", move_destinations={MOVE_AE: free_port()})
    shutil.rmtree(pacs.folder, ignore_errors=True)
    pacs.start()
    runs = {}
    try:
        pacs.upload(sorted(archive.glob("archive/*/*.dcm")))
        for how in ("get", "move") if move else ("get",):
            seconds = _pull(archive, pacs, bundle_dir, out / f"cohort_{how}", how)
            runs[how] = score(archive, out / f"cohort_{how}") | {"seconds": seconds}
    finally:
        pacs.stop()
    result = {"machine": machine(), "bundle": bundle_dir, "runs": runs}
    write_reports(out, "site_cohort", result, markdown(result))
    click.echo(markdown(result))
