"""After go-live: a live box answers phantom studies stored to it over DICOM (storescu); MRI-PDFF arrives later as a
reference list, and `edge-runtime outcomes` reconciles it with the audit log. The reconciled figures must equal
those computed directly from the phantom's truth by study UID; every reference row not reconciled (no exam, a
duplicate, malformed) is named; the verdict reaches the heartbeat and Prometheus. Drift: a scanner whose exams
leave the bundle's validated range raises an alarm naming the scanner and the statistic."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import start_server, storescu, wait_for

from edge_runtime.cli import main as edge_cli
from edge_runtime.contracts import FATTY_PDFF
from edge_runtime.sinks.audit import read_final_exams
from edge_runtime.tools.ports import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from phantom.archive import ArchivePlan, write_archive

    out = tmp_path_factory.mktemp("archive")
    write_archive(out, ArchivePlan(patients=10, distractors=0, cine_frames=2, other_frames=1, seed=11), workers=2)
    return out


def _main_studies(archive: Path) -> dict[str, dict]:
    """Each patient's own study (the one its MRI is compared with) -> the patient's truth."""
    patients = json.loads((archive / "truth.json").read_text())["patients"]
    return {p["studies"][0]: p for p in patients}


def _direct_figures(finals: list[dict], studies: dict[str, dict], matched: set[str]) -> dict[str, float]:
    """The figures computed straight from the phantom's truth, joined by study UID: the check on the matching."""
    rows = [(f["exam"], studies[f["session"]]["subject"]["pdff"]) for f in finals if f["session"] in matched]
    estimated = [(e, t) for e, t in rows if e["pdff"] is not None]  # a study without both views has no estimate
    truth = np.array([t for _, t in estimated])
    estimate = np.array([e["pdff"] for e, _ in estimated])
    covered = [lo <= t <= hi for e, t in estimated for lo, hi in [e["pdff_interval"]]]
    return {
        "exams": float(len(rows)),
        "definite_share": float(np.mean([e["call"] in ("fatty", "normal") for e, _ in rows])),
        "bias": float(np.mean(estimate - truth)),
        "mae": float(np.mean(np.abs(estimate - truth))),
        "interval_coverage": float(np.mean(covered)),
        "fatty": float(np.mean(truth >= FATTY_PDFF)),
    }


def test_outcomes_reconcile_what_the_box_answered_with_mri_arriving_later(
    archive: Path, bundle_dir: Path, tmp_path: Path
) -> None:
    studies = _main_studies(archive)
    server = start_server(bundle_dir, "tcp://127.0.0.1:1", tmp_path, dicom={"listen": "127.0.0.1:0",
                          "study_idle_s": 2.0}, metrics={"prometheus_port": free_port()})  # fmt: skip
    audit = tmp_path / "audit" / "results.jsonl"
    try:
        for uid in studies:
            assert storescu(sorted((archive / "archive" / uid).glob("*.dcm")), server.bedside.part("dicom").port) == []
        assert wait_for(lambda: len(read_final_exams(audit)) >= len(studies), timeout=180), "not every study ended"
        reference = _reference_with_faults(archive, tmp_path)
        out = tmp_path / "outcomes"
        args = ["outcomes", "--reference", str(reference), "--audit-log", str(audit), "--bundle", str(bundle_dir)]
        result = CliRunner().invoke(edge_cli, [*args, "--out", str(out)])
        assert result.exit_code in (0, 1), result.output
        said = json.loads((out / "outcomes.json").read_text())
        _the_figures_are_the_truths(said, read_final_exams(audit), studies)
        _every_unreconciled_row_is_named(said)
        assert wait_for(lambda: server.bedside.status.heartbeat().outcomes is not None, timeout=10)
        beat = server.bedside.status.heartbeat()
        assert beat.outcomes.verdict == said["verdict"]["verdict"] and beat.outcomes.exams == said["verdict"]["exams"]
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{server.prometheus.port}/metrics").read().decode()
        assert f"fatty_liver_edge_outcomes_exams {float(beat.outcomes.exams)}" in scraped
        assert (out / "outcomes.png").stat().st_size > 10_000 and "# Real-world outcomes" in (
            out / "outcomes.md"
        ).read_text()
    finally:
        server.stop()


def _reference_with_faults(archive: Path, tmp_path: Path) -> Path:
    """The archive's MRI list, with a malformed row, a duplicate and a patient the box never saw."""
    rows = (archive / "reference.csv").read_text().splitlines()
    rows += ["NOBODY1,,2026-02-02,8.0", "BROKEN,,not-a-date,8.0", rows[1]]
    path = tmp_path / "mri.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _the_figures_are_the_truths(said: dict, finals: list[dict], studies: dict[str, dict]) -> None:
    matched = {m["session"] for m in said["matched"]}
    in_window = {uid for uid, p in studies.items() if p["case"] != "no_study_in_window"}
    assert matched == in_window  # every study within its MRI's window, and no other
    direct = _direct_figures(finals, studies, matched)
    overall = said["figures"]["overall"]["value"]
    for key in ("exams", "definite_share", "bias", "mae", "interval_coverage"):
        assert overall[key] == pytest.approx(direct[key], abs=1e-9), key
    per_band = said["figures"]["per_band"]
    assert sum(g["value"]["exams"] for g in per_band.values()) == direct["exams"]
    assert all(g["ci95"] is not None for g in per_band.values())


def _every_unreconciled_row_is_named(said: dict) -> None:
    unmatched, refused = "\n".join(said["unmatched"]), "\n".join(said["refused"])
    assert "mri.csv row" in unmatched and "no exam of this patient or accession within 90 days" in unmatched
    assert len(said["unmatched"]) == 2  # the patient outside the window and the patient the box never saw
    assert "not an ISO date" in refused and "duplicate of mri.csv row 2" in refused
