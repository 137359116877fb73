"""`benchmarks validation`: after go-live, on a live `edge-runtime serve --dicom-listen` fed phantom studies by
storescu, one study at a time as a department sends them.

- **Reconciliation.** ``--exams`` in-distribution studies are answered; the MRI-PDFF of ``--references`` of them
  arrives afterwards with a malformed row, a duplicate and a patient the box never saw. `edge-runtime outcomes`
  must reconcile exactly those, name the three, and its figures must equal those computed straight from the
  phantom's truth (joined by study UID). The verdict must reach the heartbeat.
- **Drift.** The same box goes on to ``--in-distribution`` exams in all, with no drift alarm at any heartbeat; then
  studies from the same consoles with the gain ``--shift-db`` off its preset, until an alarm names the scanner
  (bar: within 15 exams).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import machine, storescu, write_reports
from benchmarks.fault_box import LiveBox
from edge_runtime.sinks.audit import read_final_exams
from edge_runtime.tools.ports import free_port

BOX_CONFIG = '[runtime.dicom]\nallowed_calling = ["SCANNER"]\nstudy_idle_s = 1.0\n'


def _archive(folder: Path, patients: int, seed: int, shift_db: float = 0.0) -> dict[str, dict]:
    """Everyday studies (one per patient, all usable): study UID -> the patient's truth."""
    from phantom.archive import ArchivePlan, write_archive

    if not (folder / "truth.json").is_file():
        plan = ArchivePlan(patients=patients, distractors=0, seed=seed, cine_frames=2, other_frames=1,
                           hard_cases=False, gain_shift_db=shift_db, id_prefix="VB")  # fmt: skip
        write_archive(folder, plan)
    return {p["studies"][0]: p for p in json.loads((folder / "truth.json").read_text())["patients"]}


def _send(box: LiveBox, port: int, folder: Path, uid: str) -> None:
    """One study stored as a scanner stores it; returns when its exam has ended."""

    before = len(read_final_exams(box.audit_log)) if box.audit_log.is_file() else 0
    failures = storescu(sorted((folder / "archive" / uid).glob("*.dcm")), port, timeout=300)
    if failures:  # storescu says why (a refused association, a transfer syntax nobody accepted)
        raise RuntimeError(f"study {uid}: storescu failed: {failures}")
    deadline = time.monotonic() + 120
    while len(read_final_exams(box.audit_log)) <= before:
        if time.monotonic() > deadline:
            raise RuntimeError(f"study {uid}: no exam ended")
        time.sleep(0.2)


def _drift_alarms(box: LiveBox, after: float) -> list[Any]:
    return [a for when, hb in box.heard.heartbeats if when >= after for a in (hb.drift or [])]


def reconciliation(box: LiveBox, work: Path, truth: dict[str, dict], references: int) -> dict[str, Any]:
    """The MRI list for the first ``references`` studies (plus three faults), reconciled by the real command."""
    from click.testing import CliRunner

    from edge_runtime.cli import main as edge_cli

    rows = list(csv.DictReader((work / "in_distribution" / "reference.csv").open()))[:references]
    path = work / "mri.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(
            [
                *rows,
                {"patient_id": "NEVERSEEN", "accession": "", "mri_date": "2026-01-01", "pdff": "9"},
                {"patient_id": "BROKEN", "accession": "", "mri_date": "someday", "pdff": "9"},
                rows[0],
            ]
        )
    out = work / "outcomes"
    args = ["outcomes", "--reference", str(path), "--audit-log", str(box.audit_log), "--bundle", str(box.bundle)]
    said = CliRunner().invoke(edge_cli, [*args, "--out", str(out)])
    result = json.loads((out / "outcomes.json").read_text())
    direct = direct_figures(read_final_exams(box.audit_log), truth, {m["session"] for m in result["matched"]})
    overall = result["figures"]["overall"]["value"]
    agree = {k: abs(overall[k] - v) < 1e-9 for k, v in direct.items() if overall.get(k) is not None}
    time.sleep(2.5)  # a heartbeat or two
    beat = box.heard.heartbeats[-1][1]
    return {"exit_code": said.exit_code, "verdict": result["verdict"], "matched": len(result["matched"]),
            "unmatched": result["unmatched"], "refused": result["refused"], "figures": overall,
            "equal_to_truth": agree, "heartbeat_verdict": beat.outcomes.verdict if beat.outcomes else None}  # fmt: skip


def direct_figures(finals: list[dict], truth: dict[str, dict], matched: set[str]) -> dict[str, float]:
    """Definite share, bias, MAE and interval coverage straight from the truth, joined by study UID."""
    rows = [(f["exam"], truth[f["session"]]["subject"]["pdff"]) for f in finals if f["session"] in matched]
    est = [(e, t) for e, t in rows if e["pdff"] is not None]
    error = np.array([e["pdff"] - t for e, t in est])
    return {
        "exams": float(len(rows)),
        "definite_share": float(np.mean([e["call"] in ("fatty", "normal") for e, _ in rows])),
        "bias": float(error.mean()),
        "mae": float(np.abs(error).mean()),
        "interval_coverage": float(np.mean([e["pdff_interval"][0] <= t <= e["pdff_interval"][1] for e, t in est])),
    }


def drift(box: LiveBox, port: int, work: Path, shifted: dict[str, dict], limit: int) -> dict[str, Any]:
    """Shifted studies one at a time until a drift alarm stands (or ``limit`` studies)."""
    started = time.monotonic()
    for k, uid in enumerate(list(shifted)[:limit], start=1):
        _send(box, port, work / "shifted", uid)
        time.sleep(1.5)  # the next heartbeat carries the judgement
        alarms = _drift_alarms(box, started)
        if alarms:
            return {"alarm_after_exams": k, "alarms": [a.model_dump(mode="json") for a in alarms[-3:]]}
    return {"alarm_after_exams": None, "alarms": []}


def markdown(result: dict[str, Any]) -> str:
    rec, d = result["reconciliation"], result["drift"]
    named = [(a["scanner"], a["statistic"]) for a in d["alarms"]]
    lines = ["# Validation after go-live (live serve, studies over DICOM)", "",
             f"CPU: {result['machine']['cpu']}, flags {' '.join(result['machine'].get('flags', []))}", "",
             f"- reconciliation: {rec['matched']} of {result['references']} MRI results matched to the "
             f"{result['exams']} exams; verdict {rec['verdict']['verdict']} (heartbeat: {rec['heartbeat_verdict']})",
             f"- figures equal to the truth's: {rec['equal_to_truth']}",
             f"- not reconciled, by name: {rec['unmatched'] + rec['refused']}",
             f"- drift: {result['in_distribution']} in-distribution exams, alarms raised: "
             f"{result['in_distribution_alarms']}; gain {result['shift_db']:+g} dB: alarm after "
             f"{d['alarm_after_exams']} exams (bar 15): {named}"]  # fmt: skip
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--trusted-keys", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--exams", type=click.IntRange(8), default=40, show_default=True)
@click.option("--references", type=click.IntRange(1), default=30, show_default=True)
@click.option("--in-distribution", "in_distribution", type=click.IntRange(8), default=100, show_default=True)
@click.option("--shift-db", type=float, default=12.0, show_default=True)
@click.option("--shifted", type=click.IntRange(1), default=15, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default="out/benchmarks/validation")
def main(bundle_dir: Path, trusted_keys: Path, exams: int, references: int, in_distribution: int, shift_db: float,
         shifted: int, out_dir: Path) -> None:  # fmt: skip
    """Reconciliation and drift on a live box."""
    truth = _archive(out_dir / "in_distribution", in_distribution, seed=61)
    drifted = _archive(out_dir / "shifted", shifted, seed=62, shift_db=shift_db)
    (out_dir / "box.toml").write_text(BOX_CONFIG)
    audit = out_dir / "audit" / "results.jsonl"
    for stale in audit.parent.glob("*"):
        stale.unlink()
    box, port = LiveBox(out_dir / "box", bundle_dir, trusted_keys, audit), free_port()
    box.start_serve(extra=("--config", str(out_dir / "box.toml"), "--dicom-listen", f"127.0.0.1:{port}"))
    try:
        started = time.monotonic()
        for uid in list(truth)[:exams]:
            _send(box, port, out_dir / "in_distribution", uid)
        rec = reconciliation(box, out_dir, truth, references)
        for uid in list(truth)[exams:]:
            _send(box, port, out_dir / "in_distribution", uid)
        quiet = _drift_alarms(box, started)
        d = drift(box, port, out_dir, drifted, shifted)
    finally:
        box.close()
    result = {"machine": machine(), "exams": exams, "references": references, "in_distribution": len(truth),
              "in_distribution_alarms": [a.model_dump(mode="json") for a in quiet[:3]], "shift_db": shift_db,
              "reconciliation": rec, "drift": d}  # fmt: skip
    write_reports(out_dir, "validation", result, markdown(result))
    click.echo(markdown(result))
