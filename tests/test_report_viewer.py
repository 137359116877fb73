"""The report as a viewer reads it: the hepatorenal index with both regions drawn on the image they were measured
on. dciodvfy validates the document, highdicom reads it back, and a JavaScript SR reader (dcmjs, the library OHIF
builds on, from the npm registry: tests/js) finds the measurement groups and their polygons."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset
from pydicom.uid import UltrasoundImageStorage, generate_uid

from edge_runtime.contracts import Change, ExamEstimate, ExamHri, ExamRecord, FollowUp, ModelInfo, PriorReport
from edge_runtime.hospital import codes
from edge_runtime.hospital.jobs import study_job
from edge_runtime.hospital.report import Equipment, StudyContext, build_report, read_report
from edge_runtime.hospital.summary import from_document, text
from edge_runtime.pipeline.studies import Evidence, HriEvidence, StudyEvidence

ROOT = Path(__file__).resolve().parents[1]
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
LIVER = ((110.5, 200.0), (150.0, 196.0), (158.0, 230.0), (120.0, 236.0))
CORTEX = ((300.0, 210.0), (318.0, 205.0), (322.0, 224.0), (304.0, 228.0))


def _report(
    tmp_path: Path,
    with_hri: bool = True,
    sop_class: str = US_MULTIFRAME,
    followup: FollowUp | None = None,
    source_image: Path | None = None,
) -> tuple[Path, Evidence]:
    exam = ExamEstimate(
        call="fatty", p_fatty=0.93, pdff=12.1, pdff_interval=(8.0, 17.0), n_pairs=5, calibrated=True, pdff_se=0.031,
        hri=ExamHri(value=1.41, interval=(1.32, 1.5), frames=4, tried=5) if with_hri else None,
    )  # fmt: skip
    record = ExamRecord(
        session="s", ended=time.time(), why="ttl", exam=exam, model=ModelInfo(name="m", version="1.0.0", sha="0" * 16),
        scanner="philips-epiq",
    )  # fmt: skip
    source = Dataset()
    source.StudyInstanceUID, source.PatientID, source.PatientName = generate_uid(), "P-1", "DOE^JANE"
    image = Evidence(sop_class, generate_uid(), generate_uid())
    if source_image is not None:  # a real stored image: the report references it
        stored = pydicom.dcmread(source_image, stop_before_pixels=True)
        source.StudyInstanceUID = stored.StudyInstanceUID
        image = Evidence(stored.SOPClassUID, stored.SOPInstanceUID, stored.SeriesInstanceUID)
    frame = 3 if source_image is None else 1
    shown = HriEvidence(image, frame, 1.43, LIVER, CORTEX, 121.5, 85.0) if with_hri else None
    study = StudyContext.of(source, (image,))
    # the job round trip the queue makes, so the report is built from what the queue holds
    held = study_job(StudyEvidence({}, (image,), shown))
    study = StudyContext(study.attributes, study.evidence, HriEvidence.from_json(held["hri"]) if with_hri else None)
    path = tmp_path / "report.dcm"
    build_report(record, study, Equipment("BOX", "1.0"), (generate_uid(), generate_uid()), followup).save_as(
        path, enforce_file_format=True
    )
    return path, image


def _dcmjs(path: Path) -> list[dict]:
    reader = ROOT / "tests" / "js" / "read_sr.js"
    done = subprocess.run(["node", str(reader), str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_report_holds_the_hri_and_both_regions_on_their_image_for_every_reader(tmp_path: Path) -> None:
    path, image = _report(tmp_path)
    checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    assert [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith("Error")] == []

    said = read_report(path)
    assert said.hri == pytest.approx(1.41)
    regions = {r.name: r for r in said.hri_regions}
    assert set(regions) == {"liver region", "renal cortex region"}
    flat = lambda points: [v for point in points for v in point]  # noqa: E731
    assert flat(regions["liver region"].polygon) == pytest.approx(flat(LIVER))
    assert flat(regions["renal cortex region"].polygon) == pytest.approx(flat(CORTEX))
    assert {(r.sop_instance_uid, r.frame_number) for r in said.hri_regions} == {(image.sop_instance, 3)}
    assert regions["liver region"].mean_echo == pytest.approx(121.5)

    printed = text(from_document(path))  # edge-runtime report --sr
    assert "hepatorenal index (liver/cortex) 1.41" in printed and "renal cortex region (mean echo 85.0)" in printed
    assert "patient DOE^JANE (P-1)" in printed and "model m 1.0.0" in printed

    groups = _dcmjs(path)
    exam, *drawn = groups
    assert {m["code"]: m["value"] for m in exam["measurements"]}[codes.HEPATORENAL_INDEX.value] == pytest.approx(1.41)
    assert len(drawn) == 2 and all(len(g["regions"]) == 1 for g in drawn)
    for group, outline in zip(drawn, (LIVER, CORTEX), strict=True):
        region = group["regions"][0]
        assert region["type"] == "POLYLINE" and region["image"] == image.sop_instance and region["frame"] == 3
        assert region["points"][0] == region["points"][-1]  # closed
        assert flat(region["points"][:-1]) == pytest.approx(flat(outline), abs=1e-3)
    assert any(m["code"] == codes.HEPATORENAL_INDEX.value for m in drawn[0]["measurements"])


def test_a_region_on_a_single_frame_image_names_no_frame(tmp_path: Path) -> None:
    path, image = _report(tmp_path, sop_class=UltrasoundImageStorage)
    checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    assert [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith("Error")] == []
    assert {(r.sop_instance_uid, r.frame_number) for r in read_report(path).hri_regions} == {(image.sop_instance, 1)}


def test_a_report_without_a_measured_hri_draws_no_region(tmp_path: Path) -> None:
    path, _ = _report(tmp_path, with_hri=False)
    said = read_report(path)
    assert said.hri is None and said.hri_regions == ()
    assert len(_dcmjs(path)) == 1


def test_the_report_states_the_change_since_the_prior_and_references_the_prior_report(tmp_path: Path) -> None:
    prior = PriorReport(
        sop_instance_uid=generate_uid(), study_instance_uid=generate_uid(), series_instance_uid=generate_uid(),
        date="2026-02-01", call="fatty", pdff=21.0, pdff_se=0.03, model="m 1.0.0", lineage="m",
    )  # fmt: skip
    followup = FollowUp(
        statement=Change.DECREASED, reason="decreased: -8.9 pp (-11.0 to -6.5), a fall of at least 30 %",
        prior=prior, days=120, change=-8.9, change_interval=(-11.0, -6.5), response=True,
    )  # fmt: skip
    path, _ = _report(tmp_path, followup=followup)
    checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    assert [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith("Error")] == []

    said = read_report(path)
    assert (said.change, said.prior_report) == ("decreased", prior.sop_instance_uid)
    assert said.change_said.startswith("decreased: -8.9 pp")
    assert (said.pdff_se, said.lineage, said.scanner) == (pytest.approx(0.031), "m", "philips-epiq")
    evidence = pydicom.dcmread(path).PertinentOtherEvidenceSequence[0]
    assert evidence.StudyInstanceUID == prior.study_instance_uid
    assert (
        evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == prior.sop_instance_uid
    )
    change = {m["code"]: m["value"] for m in _dcmjs(path)[0]["measurements"]}[codes.CHANGE.value]
    assert change == pytest.approx(-8.9)
    assert read_report(_report(tmp_path)[0]).change is None  # no follow-up asked: none stated


def _region_pixels(page: Path) -> dict[str, int]:
    """How many page pixels carry each region's outline colour (the page is BGR on disk, the colours RGB)."""
    import cv2
    import numpy as np

    from edge_runtime.hospital.drawn import REGION_COLOURS

    img = cv2.cvtColor(cv2.imread(str(page)), cv2.COLOR_BGR2RGB).astype(int)
    return {name: int((np.abs(img - np.array(rgb)).sum(axis=2) < 30).sum()) for name, rgb in REGION_COLOURS.items()}


def test_the_report_page_draws_both_regions_on_the_stored_frame_fetched_or_given(tmp_path: Path) -> None:
    from benchmarks.orthanc import Orthanc
    from edge_runtime.cli import main as edge_cli
    from edge_runtime.hospital.report import image_series
    from phantom.study import write_study
    from phantom.subject import draw_cohort

    study = write_study(tmp_path / "study", draw_cohort(2, seed=3)[1], seed=3)
    kidney = next(image.path for image in study.images if image.view == "kidney_liver")
    path, image = _report(tmp_path, source_image=kidney)
    assert read_report(path).hri_regions[0].series_uid == image.series  # only the image's series is fetched
    assert image_series(pydicom.dcmread(path), "1.2.3.4") == ""
    runner = CliRunner()
    given = runner.invoke(edge_cli, ["report", "--sr", str(path), "--png", str(tmp_path / "given.png"),
                                     "--images", str(tmp_path / "study")])  # fmt: skip
    assert given.exit_code == 0, given.output
    assert "regions drawn on image" in given.output and "scanner philips-epiq" in given.output
    drawn = _region_pixels(tmp_path / "given.png")
    assert min(drawn.values()) > 30, drawn
    missing = runner.invoke(edge_cli, ["report", "--sr", str(path), "--png", str(tmp_path / "none.png"),
                                       "--images", str(tmp_path / "js_nothing_here")])  # fmt: skip
    assert missing.exit_code == 2  # a folder that does not exist is refused by click
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(edge_cli, ["report", "--sr", str(path), "--images", str(tmp_path / "empty")])
    assert empty.exit_code == 0 and "is not among the files given" in empty.output
    (tmp_path / "unmeasured").mkdir()
    unmeasured, _ = _report(tmp_path / "unmeasured", with_hri=False, source_image=kidney)
    plain = runner.invoke(edge_cli, ["report", "--sr", str(unmeasured), "--images", str(tmp_path / "study")])
    assert plain.exit_code == 0 and "no region to draw" in plain.output
    pacs = Orthanc(tmp_path / "orthanc").start()
    try:
        assert pacs.upload(sorted((tmp_path / "study").glob("*.dcm"))) == len(study.images)
        fetched = runner.invoke(edge_cli, ["report", "--sr", str(path), "--png", str(tmp_path / "fetched.png"),
                                           "--dicomweb", pacs.dicomweb])  # fmt: skip
        assert fetched.exit_code == 0, fetched.output
        assert _region_pixels(tmp_path / "fetched.png") == drawn  # the same frame, fetched by WADO-RS
        by_get = runner.invoke(edge_cli, ["report", "--sr", str(path), "--png", str(tmp_path / "get.png"),
                                          "--pacs", pacs.peer])  # fmt: skip
        assert by_get.exit_code == 0, by_get.output
        assert _region_pixels(tmp_path / "get.png") == drawn  # and by C-GET
        both = runner.invoke(edge_cli, ["report", "--sr", str(path), "--pacs", pacs.peer, "--dicomweb", pacs.dicomweb])
        assert both.exit_code == 2 and "one of them at a time" in both.output
    finally:
        pacs.stop()
