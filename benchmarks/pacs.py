"""`benchmarks pacs`: many exams into a real PACS (Orthanc on loopback) through a live `edge-runtime serve`.

``--exams`` phantom studies (a liver and a kidney-liver image each) are stored into the box by dcmtk's storescu: half
the patients' first visits, then, once their reports are in the PACS, the same patients' second visits four months
later. Each study's exam ends when it goes idle; its report looks up the patient's prior report in the PACS and
travels through the on-disk queue to Orthanc. The suite counts the reports Orthanc holds per study (every study
exactly one: none lost, none duplicated) and reports the p50 and p99 of exam end (the audit log's ``ended``) to the
comparison with the prior made (``exam_followup``'s ``at``; the page shows it at the next heartbeat, within 1 s) and
to report stored (the PACS acknowledging it: the queue's ``sent.jsonl``).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import machine, write_reports
from benchmarks.fault_box import LiveBox
from benchmarks.orthanc import Orthanc
from edge_runtime.sinks.audit import read_audit, read_final_exams
from edge_runtime.tools.ports import free_port


def _visits(folder: Path, count: int) -> tuple[list[Any], list[Any]]:
    """The first visits of ``count // 2`` patients (``count - count // 2``), and the second visits of half of them."""
    from phantom.followup import write_series
    from phantom.subject import draw_cohort

    patients = draw_cohort(count - count // 2, 61, id_prefix="PX")
    series = [write_series(folder / s.subject_id, s, [(0, None), (120, None)][: 2 if k < count // 2 else 1], 61)
              for k, s in enumerate(patients)]  # fmt: skip
    return [visits[0] for visits in series], [visits[1] for visits in series if len(visits) > 1]


def _store(studies: list[Any], port: int) -> None:
    for study in studies:
        args = ["storescu", "-aet", "SCANNER", "-aec", "FATTYLIVER", "127.0.0.1", str(port)]
        subprocess.run([*args, *map(str, study.files)], check=True, capture_output=True, timeout=120)


def _wait_sent(work: Path, count: int) -> None:
    deadline = time.monotonic() + 120 + count
    while time.monotonic() < deadline and sum(1 for _ in _sent(work)) < count:
        time.sleep(1)


def _finals(audit: Path) -> dict[str, dict[str, Any]]:
    return {f["session"]: f for f in read_final_exams(audit)}


def run(work: Path, bundle: Path, trusted: Path, count: int) -> dict[str, Any]:
    """Store ``count`` studies, wait for every report, and measure."""
    (first, second), pacs = _visits(work / "studies", count), Orthanc(work / "orthanc").start()
    box, port = LiveBox(work / "box", bundle, trusted, work / "audit.jsonl"), free_port()
    extra = ("--dicom-listen", f"127.0.0.1:{port}", "--study-idle", "2", "--pacs", pacs.peer)
    try:
        box.start_serve(extra=(*extra, "--pacs-queue", str(work / "queue")))
        started = time.monotonic()
        _store(first, port)
        _wait_sent(work, len(first))  # the second visits find their priors in the PACS
        _store(second, port)
        stored_s = time.monotonic() - started
        uids = [s.identity.study_uid for s in (*first, *second)]
        _wait_sent(work, count)
        time.sleep(3)  # anything sent twice would show now
        held = {uid: len(pacs.instances(uid, "SR")) for uid in uids}
    finally:
        box.close()
        pacs.stop()
    finals, sent = _finals(work / "audit.jsonl"), {line["sop_instance_uid"]: line for line in _sent(work)}
    latency = [sent[f["report"]]["sent"] - f["ended"] for uid, f in finals.items() if f.get("report") in sent]
    compared = [r for r in read_audit(work / "audit.jsonl") if r.get("record") == "exam_followup"]
    said = Counter(r["followup"]["statement"] for r in compared)
    followup = {"latency_s": [r["at"] - r["ended"] for r in compared], "statements": dict(said)}
    return {"exams": count, "stored_in_s": stored_s, "reports_held": held, "latency_s": latency, "finals": len(finals),
            "followup": followup}  # fmt: skip


def _sent(work: Path) -> list[dict[str, Any]]:
    path = work / "queue" / "sent.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def markdown(result: dict[str, Any]) -> str:
    held, lat, m = result["reports_held"], np.array(result["latency_s"]), result["machine"]
    follow = np.array(result["followup"]["latency_s"] or [np.nan])
    counts = {n: sum(1 for v in held.values() if v == n) for n in sorted(set(held.values()))}
    return "\n".join([
        f"# PACS reports: {result['exams']} exams into Orthanc",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, flags {' '.join(m['flags'])}",
        "",
        f"- studies stored in {result['stored_in_s']:.0f} s; exams ended: {result['finals']}",
        f"- reports per study in the PACS: {counts} (every study exactly one: {set(held.values()) == {1}})",
        f"- exam end -> report stored: p50 {np.percentile(lat, 50):.2f} s, p99 {np.percentile(lat, 99):.2f} s, "
        f"max {lat.max():.2f} s ({len(lat)} reports)",
        f"- exam end -> comparison with the prior made (the page shows it within the next 1 s heartbeat): "
        f"p50 {np.percentile(follow, 50):.2f} s, p99 {np.percentile(follow, 99):.2f} s ({len(follow)} exams; "
        f"statements {result['followup']['statements']})",
    ]) + "\n"  # fmt: skip


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--trusted-keys", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--exams", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/pacs")
def main(bundle_dir: str, trusted_keys: str, exams: int, out_dir: str) -> None:
    """Exams through a live box into a real PACS: none lost, none duplicated, and how long each report takes."""
    with tempfile.TemporaryDirectory() as tmp:
        result = {"machine": machine(), **run(Path(tmp), Path(bundle_dir), Path(trusted_keys), exams)}
    write_reports(Path(out_dir), "pacs", result, markdown(result))
    click.echo(markdown(result))
