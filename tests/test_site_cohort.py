"""A validation study pulled from a real PACS (Debian's Orthanc on loopback) holding a phantom hospital archive:
patients under their own IDs, accession numbers and dates, stills and cine loops among other organs' frames,
distractor patients and studies outside the window. The cohort step must log every patient by the right outcome,
take the nearer of two studies, choose frames of the right view, leave no identifier outside private/, fetch nothing
twice when run again, and work by C-MOVE where a PACS offers no C-GET. The reference list comes as CSV and as a FHIR
Bundle; a bad row is refused by name and the rest are kept."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers import invoke_trainer

from benchmarks.orthanc import Orthanc
from edge_runtime.contracts.validation import CohortOutcome
from edge_runtime.hospital.reference import read_reference
from edge_runtime.tools.ports import free_port

pytestmark = pytest.mark.slow
MOVE_AE = "FLECOHORT"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from phantom.archive import ArchivePlan, write_archive

    out = tmp_path_factory.mktemp("archive")
    write_archive(out, ArchivePlan(patients=8, distractors=2, cine_frames=2, other_frames=1, seed=5), workers=2)
    return out


@pytest.fixture(scope="module")
def pacs(archive: Path, tmp_path_factory: pytest.TempPathFactory):
    move_port = free_port()
    server = Orthanc(tmp_path_factory.mktemp("orthanc"), move_destinations={MOVE_AE: move_port}).start()
    files = sorted(archive.glob("archive/*/*.dcm"))
    assert server.upload(files) == len(files)
    server.move_port = move_port
    yield server
    server.stop()


def _cohort(
    archive: Path, pacs, bundle: Path, out: Path, *extra: str, reference: str = "reference.csv", via: str = "--pacs"
):
    asked = pacs.peer if via == "--pacs" else pacs.dicomweb
    args = ["site-cohort", "--reference", str(archive / reference), via, asked, "--bundle", str(bundle)]
    return invoke_trainer(*args, "--out", str(out), "--profiles", str(archive / "profiles.json"), *extra)


def _truth_by_subject(archive: Path, out: Path) -> dict[str, dict]:
    """Each pseudonym's patient in the phantom's truth, through the private re-identification table."""
    truth = json.loads((archive / "truth.json").read_text())["patients"]
    table = list(csv.DictReader((out / "private" / "subjects.csv").open()))
    out_map = {}
    for row in table:
        out_map[row["subject_id"]] = next(
            p for p in truth if row["patient_id"] in ("", p["patient_id"]) and row["accession"] in ("", p["accession"])
        )
    return out_map


def test_every_patient_is_logged_by_its_outcome_and_every_chosen_frame_shows_its_view(
    archive: Path, pacs, bundle_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cohort"
    result = _cohort(archive, pacs, bundle_dir, out, "--adapt-subjects", "2")
    assert result.exit_code == 0, result.output
    truth = _truth_by_subject(archive, out)
    log = {r["subject_id"]: r for r in csv.DictReader((out / "cohort_log.csv").open())}
    assert set(log) == set(truth) and len(log) == 8  # distractors are nobody's reference
    for subject, row in log.items():
        assert row["outcome"] == truth[subject]["expected"], (row, truth[subject]["case"])
    two = next(s for s, p in truth.items() if p["case"] == "two_studies")
    assert log[two]["candidates"] == "2" and "took the one with its accession number" in log[two]["detail"]
    manifest = list(csv.DictReader((out / "manifest.csv").open()))
    used = {s for s, r in log.items() if r["outcome"] == CohortOutcome.USED}
    assert {r["subject_id"] for r in manifest} == used and len(manifest) == 2 * len(used)
    for row in manifest:
        instance = Path(row["path"]).stem
        shown = truth[row["subject_id"]]["instances"][instance]
        assert shown.removeprefix("cine:") == row["view"], (row, shown)
        assert float(row["pdff"]) == pytest.approx(truth[row["subject_id"]]["subject"]["pdff"], abs=0.01)
    adapt, check = ({r["subject_id"]: float(r["pdff"]) for r in csv.DictReader((out / f).open())}
                    for f in ("adapt.csv", "check.csv"))  # fmt: skip
    assert len(adapt) == 2 and not set(adapt) & set(check) and set(adapt) | set(check) == used
    assert sorted(p >= 5.0 for p in adapt.values()) == [False, True]  # one of each class to adapt on
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    _nothing_identifies_outside_private(out, archive)


def _nothing_identifies_outside_private(out: Path, archive: Path) -> None:
    truth = json.loads((archive / "truth.json").read_text())["patients"]
    identifiers = [p["patient_id"] for p in truth] + [p["accession"] for p in truth]
    for path in out.iterdir():
        if path.is_file():
            text = path.read_bytes().decode("latin-1")
            assert not [i for i in identifiers if i in text], path.name


def test_a_second_run_fetches_nothing_again_and_cmove_gives_the_same_cohort(
    archive: Path, pacs, bundle_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cohort"
    moved = _cohort(archive, pacs, bundle_dir, out, "--retrieve", "move", "--move-port", str(pacs.move_port))
    assert moved.exit_code == 0, moved.output
    first = (out / "manifest.csv").read_text()
    assert json.loads((out / "cohort.json").read_text())["fetched_this_run"] == 8
    again = _cohort(archive, pacs, bundle_dir, out)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "cohort.json").read_text())["fetched_this_run"] == 0
    assert (out / "manifest.csv").read_text() == first
    web = tmp_path / "by-dicomweb"
    by_wado = _cohort(
        archive, pacs, bundle_dir, web, "--id-key", str(out / "private" / "identity.key"), via="--dicomweb"
    )
    assert by_wado.exit_code == 0, by_wado.output
    assert json.loads((web / "cohort.json").read_text())["fetched_this_run"] == 8
    assert (web / "manifest.csv").read_text() == first  # QIDO-RS and WADO-RS find and fetch the same frames


def test_site_cohort_asks_exactly_one_archive(archive: Path, pacs, bundle_dir: Path, tmp_path: Path) -> None:
    both = _cohort(archive, pacs, bundle_dir, tmp_path / "a", "--dicomweb", pacs.dicomweb)
    assert both.exit_code == 2 and "--pacs AE@HOST:PORT or --dicomweb URL" in both.output
    args = ["site-cohort", "--reference", str(archive / "reference.csv"), "--dicomweb", "pacs:8042"]
    refused = invoke_trainer(*args, "--bundle", str(bundle_dir), "--out", str(tmp_path / "c"))
    assert refused.exit_code == 2 and "not a DICOMweb service URL" in refused.output


def test_a_fhir_bundle_gives_the_same_results_and_a_bad_row_is_refused_by_name(archive: Path, tmp_path: Path) -> None:
    from_csv, from_fhir = read_reference(archive / "reference.csv"), read_reference(archive / "reference.fhir.json")
    assert [(*r.key, r.pdff) for r in from_csv.results] == [(*r.key, r.pdff) for r in from_fhir.results]
    rows = (archive / "reference.csv").read_text().splitlines()
    bad = [*rows, ",,2026-01-01,7.0", "P1,,2026-13-40,7.0", "P2,,2026-01-01,seven", "P3,,2026-01-01,140", rows[1]]
    (tmp_path / "bad.csv").write_text("\n".join(bad) + "\n")
    read = read_reference(tmp_path / "bad.csv")
    assert len(read.results) == len(from_csv.results)
    said = "\n".join(read.refused)
    for reason in ("neither a patient ID nor an accession", "not an ISO date", "'seven' is not a number",
                   "140 is not a percentage", "duplicate of bad.csv row 2"):  # fmt: skip
        assert reason in said, said


def test_an_observation_that_is_not_a_final_pdff_is_refused_by_name(archive: Path, tmp_path: Path) -> None:
    bundle = json.loads((archive / "reference.fhir.json").read_text())
    entries = bundle["entry"]
    entries[0]["resource"]["status"] = "preliminary"
    entries[1]["resource"]["code"] = {"text": "Serum ALT"}
    entries[2]["resource"]["valueQuantity"]["code"] = entries[2]["resource"]["valueQuantity"]["unit"] = "mg/dL"
    (tmp_path / "obs.json").write_text(json.dumps(bundle))
    read = read_reference(tmp_path / "obs.json")
    assert len(read.results) == len(entries) - 3
    said = "\n".join(read.refused)
    assert "status 'preliminary'" in said and "not a PDFF result" in said and "not %" in said
    (tmp_path / "broken.json").write_text(json.dumps({"resourceType": "Bundle", "type": "nonsense"}))
    from edge_runtime.hospital.reference import ReferenceError

    with pytest.raises(ReferenceError, match="not a valid FHIR Bundle"):
        read_reference(tmp_path / "broken.json")
