"""Follow-up: the change rule's statements and the phantom's revisits (the PACS path is in test_pacs.py)."""

from __future__ import annotations

import math
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from benchmarks.orthanc import Orthanc
from edge_runtime.compose import prior_lookup
from edge_runtime.config import FollowUpSettings, load_config
from edge_runtime.contracts import Change, ExamEstimate, ExamRecord, ModelInfo, NoCall
from edge_runtime.errors import ConfigError
from edge_runtime.followup.change import ChangeRule, ThisExam, as_prior, compare, lineage_of, no_prior
from edge_runtime.followup.priors import PriorLookup
from edge_runtime.hospital.dicomweb import DicomWebArchive
from edge_runtime.hospital.jobs import ReportBuilder, new_job
from edge_runtime.hospital.jobs import study_job as study_job_of
from edge_runtime.hospital.peers import Peer
from edge_runtime.hospital.report import Equipment, StudyContext, read_report
from edge_runtime.hospital.retrieve import Archive, StudyArchive
from edge_runtime.hospital.sender import STOW, SendError, destinations_for
from edge_runtime.pipeline.studies import Evidence, StudyEvidence
from phantom.followup import VISIT_FRAMES, first_visit, revisit, visit_session
from phantom.subject import draw_cohort

MODEL = ModelInfo(name="fatty-liver-clkl", version="1.0.0", sha="0" * 16)
RULE = ChangeRule(scale=2.0, between_visits=1.0)
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"


def exam(pdff: float | None, se: float | None = 0.03, call: str | None = "fatty", why: NoCall | None = None):
    return ExamEstimate(call=call, why=why, pdff=pdff, pdff_se=se, n_pairs=10, calibrated=True)


def record(estimate: ExamEstimate, model: ModelInfo = MODEL, scanner: str = "philips-epiq") -> ExamRecord:
    return ExamRecord(session="s", ended=0.0, why="ttl", exam=estimate, model=model, scanner=scanner)


def follow(before: ExamEstimate, after: ExamEstimate, model: ModelInfo = MODEL, scanner: str = "philips-epiq"):
    prior = as_prior(record(before), "2026-01-05", "1.2.3", "1.2")
    return compare(prior, ThisExam(after, lineage_of(model), scanner), 120, RULE)


def test_a_fall_beyond_both_exams_repeat_errors_is_a_decrease_with_its_interval() -> None:
    said = follow(exam(20.0), exam(10.0))
    assert said.statement == Change.DECREASED
    assert said.change == pytest.approx(-10.0)
    low, high = said.change_interval
    assert low < -10.0 < high < 0  # the interval straddles the change and excludes no change
    bound = RULE.scale * math.sqrt((0.03 * 21) ** 2 + (0.03 * 11) ** 2 + 2 * 1.0**2)
    assert (low, high) == (pytest.approx(-10 - bound, abs=0.01), pytest.approx(-10 + bound, abs=0.01))
    assert said.prior.sop_instance_uid == "1.2.3" and said.days == 120
    assert (said.rule.scale, said.rule.between_visits, said.rule.pair_sd) == (2.0, 1.0, RULE.pair_sd)  # audited


def test_a_rise_is_an_increase_and_a_small_move_is_no_change() -> None:
    assert follow(exam(4.0), exam(12.0)).statement == Change.INCREASED
    still = follow(exam(12.0), exam(12.5))
    assert still.statement == Change.NO_CHANGE
    assert still.change_interval[0] < 0 < still.change_interval[1]
    assert "no change beyond what the two measurements can resolve" in still.reason


def test_noisy_exams_need_a_larger_move_to_be_called_changed() -> None:
    assert follow(exam(12.0, se=0.02), exam(16.0, se=0.02)).statement == Change.INCREASED
    assert follow(exam(12.0, se=0.15), exam(16.0, se=0.15)).statement == Change.NO_CHANGE


def test_the_between_visit_part_keeps_two_suspiciously_steady_exams_from_calling_a_small_move() -> None:
    assert follow(exam(12.0, se=0.0), exam(14.5, se=0.0)).statement == Change.NO_CHANGE
    assert follow(exam(12.0, se=0.0), exam(15.0, se=0.0)).statement == Change.INCREASED  # 3 > 2 x sqrt(2)


def test_an_exam_of_one_pair_is_credited_with_the_pooled_pair_error() -> None:
    one = ExamEstimate(call="fatty", pdff=14.0, pdff_se=None, n_pairs=1, calibrated=True)
    said = follow(exam(20.0), one)
    wide = RULE.scale * math.sqrt((0.03 * 21) ** 2 + (RULE.pair_sd * 15) ** 2 + 2 * 1.0**2)
    assert said.change_interval[1] == pytest.approx(-6.0 + wide, abs=0.01)
    assert follow(exam(20.0), one.model_copy(update={"pdff": 18.0})).statement == Change.NO_CHANGE


def test_response_is_said_only_when_the_interval_lies_wholly_beyond_a_30_percent_fall() -> None:
    big = follow(exam(24.0, se=0.02), exam(8.0, se=0.02))
    assert big.response is True and "a fall of at least 30 %" in big.reason
    small = follow(exam(24.0, se=0.02), exam(20.5, se=0.02))  # short of 30 %: not said, the model reads changes short
    assert small.statement == Change.DECREASED and small.response is None and "30 %" not in small.reason
    unsure = follow(exam(24.0, se=0.08), exam(15.5, se=0.08))
    assert unsure.statement == Change.DECREASED and unsure.response is None
    assert follow(exam(8.0), exam(20.0)).response is False  # a liver that got fatter did not respond


@pytest.mark.parametrize(
    ("prior_model", "scanner", "before", "after", "words"),
    [
        (ModelInfo(name="other-lineage", version="1.0.0", sha="1" * 16), "philips-epiq", exam(9.0), exam(20.0),
         "their scales are not known to agree"),
        (MODEL, "ge-logiq", exam(9.0), exam(20.0), "not adapted to this site's scanners"),
        (MODEL, "philips-epiq", exam(9.0, call="indeterminate", why=NoCall.OUTSIDE_TRAINING), exam(20.0),
         "the prior was indeterminate (outside the model's training distribution)"),
        (MODEL, "philips-epiq", exam(9.0), exam(None, call=None, why=NoCall.COLLECTING), "this exam is indeterminate"),
    ],
)  # fmt: skip
def test_what_cannot_be_set_side_by_side_is_not_comparable_with_the_reason(
    prior_model: ModelInfo, scanner: str, before: ExamEstimate, after: ExamEstimate, words: str
) -> None:
    prior = as_prior(record(before, prior_model, scanner), "2026-01-05")
    said = compare(prior, ThisExam(after, lineage_of(MODEL), "philips-epiq"), 30, RULE)
    assert said.statement == Change.NOT_COMPARABLE
    assert words in said.reason and said.change is None and said.rule is None  # nothing was judged


def test_a_site_adapted_lineage_compares_across_its_scanners_and_differs_from_the_parent() -> None:
    adapted = MODEL.model_copy(update={"site": "st-elsewhere"})
    prior = as_prior(record(exam(9.0), adapted, "ge-logiq"), "2026-01-05")
    said = compare(prior, ThisExam(exam(20.0), lineage_of(adapted), "philips-epiq"), 30, RULE)
    assert said.statement == Change.INCREASED
    assert lineage_of(adapted) != lineage_of(MODEL)


def test_an_exam_indeterminate_only_on_the_fatty_line_still_measures_its_change() -> None:
    borderline = exam(5.2, call="indeterminate", why=NoCall.CANNOT_TELL)
    assert follow(borderline, exam(14.0)).statement == Change.INCREASED


def test_no_prior_says_why_and_the_settings_refuse_nonsense() -> None:
    said = no_prior("the PACS did not answer")
    assert said.statement == Change.NO_PRIOR and said.reason == "prior not available: the PACS did not answer"
    assert FollowUpSettings().rule.scale > 0
    with pytest.raises(ConfigError, match="scale"):
        load_config(None, {"followup": {"scale": -1}})
    with pytest.raises(ConfigError, match="not AE@HOST:PORT"):
        load_config(None, {"followup": {"peer": "pacs.example"}})


def test_a_revisit_keeps_the_patient_and_scanner_and_changes_only_what_a_day_changes() -> None:
    subject = draw_cohort(3, seed=5)[1]
    later = revisit(subject, subject.pdff + 8, visit=1, day=120, seed=5).subject
    assert (later.vendor, later.layout, later.liver_echo_offset_db, later.dynamic_range_db) == (
        subject.vendor, subject.layout, subject.liver_echo_offset_db, subject.dynamic_range_db,
    )  # fmt: skip
    assert later.pdff == pytest.approx(subject.pdff + 8)
    assert abs(later.gain_db - subject.gain_db) < 6 and later.gain_db != subject.gain_db
    assert later.subcutaneous_cm == pytest.approx(subject.subcutaneous_cm + 0.24)
    same = revisit(subject, subject.pdff, visit=1, day=120, seed=5).subject
    assert same.pdff == subject.pdff
    with pytest.raises(ValueError, match="visit 1 or later"):
        revisit(subject, 5.0, visit=0, day=0, seed=5)


def test_each_visit_has_its_own_speckle() -> None:
    subject = draw_cohort(2, seed=5)[0]
    first = visit_session(first_visit(subject), 5, "v0", ("liver",), realisations=1)
    again = visit_session(revisit(subject, subject.pdff, 1, 90, 5), 5, "v1", ("liver",), realisations=1)
    assert VISIT_FRAMES > 1000
    assert not np.array_equal(first.screens["liver"][0], again.screens["liver"][0])


# -- the prior from a real PACS (Debian's Orthanc on loopback) ------------------------------------------------------
def _source(patient: str, date: str) -> Dataset:
    """A stored image's study attributes: ``patient`` scanned on ``date``."""
    source = Dataset()
    source.StudyInstanceUID, source.PatientID, source.PatientName = generate_uid(), patient, "DOE^JANE"
    source.StudyDate, source.AccessionNumber = date, f"A-{date}"
    return source


def _linked_study(patient: str, date: str) -> StudyEvidence:
    """A stored study of ``patient`` on ``date`` as an ended exam hands it to its report."""
    attributes = StudyContext.of(_source(patient, date)).attributes.to_json_dict()
    return StudyEvidence(attributes, (Evidence(US_IMAGE, generate_uid(), generate_uid()),))


def _file(report: Dataset, folder: Path) -> Path:
    path = folder / f"{report.SOPInstanceUID}.dcm"
    report.save_as(path, enforce_file_format=True)
    return path


class CountedArchive(Archive):
    """The PACS over DIMSE, counting the associations it opens."""

    opened = 0

    def _associate(self, ae: Any, **kwargs: Any) -> Any:
        self.opened += 1
        return super()._associate(ae, **kwargs)


def _box_and_archive(pacs: Orthanc, protocol: str) -> tuple[Any, StudyArchive, str]:
    """How the box stores its report in ``pacs`` and asks it back: C-STORE and C-FIND/C-GET, or STOW-RS and
    QIDO-RS/WADO-RS; and how a down archive is named."""
    if protocol == "dimse":
        send = destinations_for([Peer.parse(pacs.peer)], None, "FATTYLIVER", 10.0)
        archive = CountedArchive(Peer.parse(pacs.peer), "FATTYLIVER", 10.0)
        return next(iter(send.values())), archive, "the PACS ORTHANC@127"
    send = destinations_for([], pacs.dicomweb, "FATTYLIVER", 10.0)
    return send[STOW], DicomWebArchive(pacs.dicomweb, 10.0), f"the DICOMweb service {pacs.dicomweb} failed"


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["dimse", "dicomweb"])
def test_the_second_exam_s_report_compares_with_the_first_held_in_the_pacs_and_a_down_pacs_says_so(
    tmp_path: Path, protocol: str
) -> None:
    pacs = Orthanc(tmp_path / "orthanc").start()
    send, archive, down_said = _box_and_archive(pacs, protocol)
    lookup = PriorLookup(archive, 730, RULE)
    builder = ReportBuilder(Equipment("BOX", "1.0"), None, "FATTYLIVER", 10.0, lookup)
    first = new_job(record(exam(21.0, se=0.03)), study_job_of(_linked_study("P-7", "20260110")))
    report = builder.build(first)
    assert first.study["followup"]["statement"] == Change.NO_PRIOR
    assert "no earlier report by this product" in first.study["followup"]["reason"]
    try:
        send(report)  # the box's own store of its report
        assert len(pacs.instances(report.StudyInstanceUID, "SR")) == 1
        second = new_job(record(exam(9.5, se=0.03)), study_job_of(_linked_study("P-7", "20260510")))
        said = read_report(_file(builder.build(second), tmp_path))
        assert (said.change, said.prior_report) == (Change.DECREASED.value, report.SOPInstanceUID)
        assert said.change_said.startswith("decreased: -11.5 pp")
        assert second.study["followup"]["days"] == 120 and len(second.study["followup"]["history"]) == 1
        if isinstance(archive, CountedArchive):  # a lookup is one association (C-FIND, C-FIND, C-GET on it)
            assert archive.opened == 2
        elsewhere = new_job(record(exam(9.5)), study_job_of(_linked_study("P-8", "20260510")))
        builder.build(elsewhere)
        assert elsewhere.study["followup"]["statement"] == Change.NO_PRIOR  # another patient's report is not a prior
    finally:
        pacs.stop()
    third = new_job(record(exam(9.0)), study_job_of(_linked_study("P-7", "20260610")))
    down = read_report(_file(builder.build(third), tmp_path))  # the report is still built, the comparison says why
    assert down.change == Change.NO_PRIOR.value and down.prior_report is None
    assert down.change_said.startswith(f"prior not available: {down_said}")
    again = builder.build(third)  # a resend states the same: the lookup is kept in the job
    assert read_report(_file(again, tmp_path)).change_said == down.change_said


def test_the_prior_is_asked_where_configured_else_where_the_reports_go() -> None:
    dimse = prior_lookup(load_config(None, {"pacs": {"destinations": ["PACS@10.0.0.5:104"]}}), "BOX")
    assert isinstance(dimse.archive, Archive) and str(dimse.archive.peer) == "PACS@10.0.0.5:104"
    stow_only = prior_lookup(load_config(None, {"pacs": {"stow_url": "http://vna:8042/dicom-web/"}}), "BOX")
    assert isinstance(stow_only.archive, DicomWebArchive) and stow_only.archive.url == "http://vna:8042/dicom-web"
    both = {"pacs": {"destinations": ["PACS@10.0.0.5:104"]}, "followup": {"dicomweb_url": "https://vna/qido"}}
    assert prior_lookup(load_config(None, both), "BOX").archive.url == "https://vna/qido"
    named = {"followup": {"dicomweb_url": "https://vna/qido", "peer": "OTHER@10.0.0.6:104"}}
    assert prior_lookup(load_config(None, named), "BOX").archive.url == "https://vna/qido"  # asked instead
    assert str(prior_lookup(load_config(None, {"followup": {"peer": "OTHER@10.0.0.6:104"}}), "BOX").archive.peer) == (
        "OTHER@10.0.0.6:104"
    )
    off = {"pacs": {"destinations": ["PACS@10.0.0.5:104"]}, "followup": {"enabled": False}}
    assert prior_lookup(load_config(None, off), "BOX") is None
    assert prior_lookup(load_config(None, {}), "BOX") is None
    for table, key in (("followup", "dicomweb_url"), ("pacs", "stow_url")):
        with pytest.raises(ConfigError, match="not a DICOMweb service URL"):
            load_config(None, {table: {key: "vna:8042/dicom-web"}})


def test_a_dicomweb_service_that_never_answers_costs_the_timeout_and_is_named(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers a request
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/dicom-web"
    try:
        started = time.monotonic()
        lookup = PriorLookup(DicomWebArchive(url, timeout=1.0), 730, RULE)
        said = lookup.followup(record(exam(9.0)), StudyContext.of(_source("P-9", "20260610")))
        assert said.statement == Change.NO_PRIOR
        assert said.reason.startswith(f"prior not available: the DICOMweb service {url} failed the study search")
        with pytest.raises(SendError, match=r"STOW-RS to http://127\.0\.0\.1"):
            destinations_for([], url, "BOX", 1.0)[STOW](Dataset())
        assert time.monotonic() - started < 10
    finally:
        silent.close()


def test_a_store_only_pacs_costs_the_comparison_with_its_reason_never_the_report() -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import Comprehensive3DSRStorage

    from edge_runtime.tools.ports import free_port

    scp = AE(ae_title="STOREONLY")
    scp.add_supported_context(Comprehensive3DSRStorage)  # takes reports, answers no query
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False)
    try:
        lookup = PriorLookup(Archive(Peer.parse(f"STOREONLY@127.0.0.1:{port}"), "FATTYLIVER", 5.0), 730, RULE)
        said = lookup.followup(record(exam(9.0)), StudyContext.of(_source("P-9", "20260610")))
        assert said.statement == Change.NO_PRIOR
        assert "does not offer Study Root C-FIND" in said.reason
    finally:
        server.shutdown()
