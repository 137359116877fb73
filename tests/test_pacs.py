"""Results into the patient's record, against a real PACS (Debian's Orthanc on loopback, its worklist plugin): a study
stored over DICOM ends in exactly one valid SR in that study, whose values are the exam's final record; a report
survives a down PACS and a kill -9 and arrives once; a screen-grab exam linked by the worklist reports into its
scheduled study; a PACS that refuses leaves the report queued, counted, retried and said."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pydicom
import pytest
from helpers import start_server, storescu, wait_for

from benchmarks.orthanc import Orthanc
from edge_runtime.hospital.report import read_report
from edge_runtime.sinks.audit import read_final_exams
from edge_runtime.tools.ports import free_port
from phantom.followup import write_series
from phantom.render import profile_for, render_view
from phantom.study import StoredStudy, write_study
from phantom.subject import draw_cohort

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory):
    pacs = Orthanc(tmp_path_factory.mktemp("orthanc")).start()
    yield pacs
    pacs.stop()


def _study(folder: Path, seed: int) -> StoredStudy:
    subject = draw_cohort(2, seed)[0]
    return write_study(folder, subject, seed, forms=("rle", "jpeg-ls-lossless"))


def _dciodvfy_errors(path: Path) -> list[str]:
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


def _final(audit: Path, session: str) -> dict:
    return next(f for f in read_final_exams(audit) if f["session"] == session)


def test_a_stored_study_ends_in_one_valid_report_in_its_study(bundle_dir, orthanc, tmp_path: Path) -> None:
    study = _study(tmp_path / "study", 21)
    pacs = {"destinations": [orthanc.peer], "queue": tmp_path / "queue"}
    server = start_server(bundle_dir, "tcp://127.0.0.1:1", tmp_path, dicom={"listen": "127.0.0.1:0",
                          "study_idle_s": 3.0}, pacs=pacs)  # fmt: skip
    uid = study.identity.study_uid
    try:
        assert storescu(study.files, server.bedside.part("dicom").port) == []
        assert wait_for(lambda: len(orthanc.instances(uid, "SR")) == 1, timeout=90), "no report reached the PACS"
        time.sleep(1.5)
        assert len(orthanc.instances(uid, "SR")) == 1  # exactly one
    finally:
        server.stop()
    stored = tmp_path / "report.dcm"
    stored.write_bytes(orthanc.file(orthanc.instances(uid, "SR")[0]["ID"]))
    assert _dciodvfy_errors(stored) == []
    finals = [f for f in read_final_exams(tmp_path / "audit" / "results.jsonl") if f["session"] == uid]
    assert len(finals) == 1  # one study, one exam
    final, said = finals[0], read_report(stored)
    exam = final["exam"]
    assert final["report"] == said.sop_instance_uid and said.study_uid == uid
    assert said.call == (exam["call"] or "indeterminate")
    assert said.pdff == exam["pdff"] and said.p_fatty == exam["p_fatty"]
    assert said.pdff_interval == tuple(exam["pdff_interval"]) if exam["pdff_interval"] else said.pdff_interval is None
    assert set(said.source_images) == set(final["study"]["sop_instance_uids"]) and said.source_images
    assert pydicom.dcmread(stored).PatientID == study.identity.patient_id  # the study's own patient module
    _the_hri_is_drawn_on_a_kidney_liver_image_it_came_from(exam, said, study)
    assert not list((tmp_path / "queue" / "pending").iterdir())  # sent: nothing of the patient stays
    sent = (tmp_path / "queue" / "sent.jsonl").read_text()
    assert said.sop_instance_uid in sent and study.identity.patient_id not in sent
    _the_report_command_prints_both_sources(tmp_path, uid, stored, said.call)


def test_a_patient_s_second_study_is_compared_with_the_first_report_in_the_pacs(
    bundle_dir, orthanc, tmp_path: Path
) -> None:
    subject = draw_cohort(3, 23)[2]
    first, second = write_series(tmp_path / "series", subject, [(0, 21.0), (120, 8.0)], 23)
    pacs = {"destinations": [orthanc.peer], "queue": tmp_path / "queue"}
    server = start_server(bundle_dir, "tcp://127.0.0.1:1", tmp_path, dicom={"listen": "127.0.0.1:0",
                          "study_idle_s": 2.0}, pacs=pacs)  # fmt: skip
    try:
        for study in (first, second):
            assert storescu(study.files, server.bedside.part("dicom").port) == []
            uid = study.identity.study_uid
            assert wait_for(lambda uid=uid: len(orthanc.instances(uid, "SR")) == 1, timeout=90), "no report"
        shown = server.bedside.reports.snapshot().followups
    finally:
        server.stop()
    reports = []
    for study in (first, second):
        path = tmp_path / f"{study.identity.study_date}.dcm"
        path.write_bytes(orthanc.file(orthanc.instances(study.identity.study_uid, "SR")[0]["ID"]))
        reports.append(read_report(path))
    assert reports[0].change == "no_prior" and "no earlier report" in reports[0].change_said
    assert reports[1].prior_report == reports[0].sop_instance_uid  # the first report, read back from the PACS
    assert reports[1].change in ("decreased", "increased", "no_change", "not_comparable")
    finals = {f["session"]: f for f in read_final_exams(tmp_path / "audit" / "results.jsonl")}
    followup = finals[second.identity.study_uid]["followup"]  # exam_final carries it, joined when read
    assert followup["prior"]["sop_instance_uid"] == reports[0].sop_instance_uid and followup["days"] == 120
    assert [f["session"] for f in shown] == [first.identity.study_uid, second.identity.study_uid]  # the heartbeat's
    from click.testing import CliRunner

    from edge_runtime.cli import main as edge_cli

    audit, page = tmp_path / "audit" / "results.jsonl", tmp_path / "follow.png"
    args = ["report", "--audit-log", str(audit), "--session", second.identity.study_uid, "--png", str(page)]
    printed = CliRunner().invoke(edge_cli, args)
    assert printed.exit_code == 0, printed.output
    assert f"follow-up: {followup['reason']}" in printed.output and "PDFF over the visits:" in printed.output
    rule = followup["rule"]  # which rule said it, unless nothing could be judged
    assert (rule is None) == (followup["statement"] == "not_comparable")
    assert rule is None or f"judged by the change rule: scale {rule['scale']:.2f}" in printed.output
    assert "  2026-01-05: " in printed.output and "  2026-05-05: " in printed.output  # the trend, oldest first
    assert cv2.imread(str(page)).shape == (1754, 1240, 3)


def _the_hri_is_drawn_on_a_kidney_liver_image_it_came_from(exam: dict, said, study: StoredStudy) -> None:
    assert exam["hri"] is not None and exam["hri"]["tried"] >= 1, "the study's kidney-liver frames were measured"
    if exam["hri"]["value"] is None:
        assert said.hri is None and said.hri_regions == ()
        return
    assert said.hri == exam["hri"]["value"] and len(said.hri_regions) == 2
    images = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, study.files)}
    for region in said.hri_regions:
        image = images[region.sop_instance_uid]
        assert region.sop_instance_uid in said.source_images
        assert 1 <= region.frame_number <= int(image.get("NumberOfFrames", 1))
        assert all(0 <= x < image.Columns and 0 <= y < image.Rows for x, y in region.polygon)


def _the_report_command_prints_both_sources(tmp_path: Path, uid: str, stored: Path, call: str) -> None:
    from click.testing import CliRunner

    from edge_runtime.cli import main as edge_cli

    audit = tmp_path / "audit" / "results.jsonl"
    from_log = CliRunner().invoke(edge_cli, ["report", "--audit-log", str(audit), "--session", uid])
    from_pacs = CliRunner().invoke(edge_cli, ["report", "--sr", str(stored), "--png", str(tmp_path / "page.png")])
    assert from_log.exit_code == from_pacs.exit_code == 0, from_log.output + from_pacs.output
    assert f"call: {call.upper()}" in from_log.output and f"call: {call.upper()}" in from_pacs.output
    assert cv2.imread(str(tmp_path / "page.png")).shape == (1754, 1240, 3)
    missing = CliRunner().invoke(edge_cli, ["report", "--audit-log", str(audit), "--session", "nobody"])
    assert missing.exit_code == 1 and "no ended exam of session 'nobody'" in missing.output


def _serve(bundle_dir: Path, trusted: Path, work: Path, ports: dict[str, int], orthanc: Orthanc) -> subprocess.Popen:
    args = ["serve", "--bundle", str(bundle_dir), "--trusted-keys", str(trusted), "--audit-log", str(work / "a.jsonl")]
    args += ["--frames", f"tcp://127.0.0.1:{ports['frames']}", "--results", f"tcp://127.0.0.1:{ports['results']}"]
    args += ["--dicom-listen", f"127.0.0.1:{ports['dicom']}", "--study-idle", "3", "--pacs", orthanc.peer]
    args += ["--pacs-queue", str(work / "queue"), "--pacs-retry-s", "0.5", "--pacs-retry-max-s", "1"]
    log = open(work / f"serve{len(list(work.glob('serve*.log')))}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", *args], stderr=log, env=dict(os.environ))
    assert wait_for(lambda: _echo(ports["dicom"]) or proc.poll() is not None, timeout=90) and proc.poll() is None
    return proc


def _echo(port: int) -> bool:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="FATTYLIVER")
    if not assoc.is_established:
        return False
    assoc.release()
    return True


def test_a_report_survives_a_down_pacs_and_a_killed_box_and_arrives_once(
    bundle_dir: Path, release_key: Path, orthanc: Orthanc, tmp_path: Path
) -> None:
    study = _study(tmp_path / "study", 22)
    ports = {"frames": free_port(), "results": free_port(), "dicom": free_port()}
    orthanc.stop()
    box = _serve(bundle_dir, release_key.parent, tmp_path, ports, orthanc)
    try:
        assert storescu(study.files, ports["dicom"]) == []
        pending = tmp_path / "queue" / "pending"
        assert wait_for(lambda: len(list(pending.glob("*.json"))) == 1, timeout=60), "the report was never queued"
        job = json.loads(next(pending.glob("*.json")).read_text())
        assert wait_for(lambda: json.loads(next(pending.glob("*.json")).read_text())["attempts"] >= 2, timeout=30)
        box.send_signal(signal.SIGKILL)
        box.wait(30)
        orthanc.start()
        box = _serve(bundle_dir, release_key.parent, tmp_path, ports, orthanc)
        uid = study.identity.study_uid
        assert wait_for(lambda: len(orthanc.instances(uid, "SR")) >= 1, timeout=60), "the report never arrived"
        time.sleep(2)
        reports = orthanc.instances(uid, "SR")
        assert len(reports) == 1 and reports[0]["MainDicomTags"]["SOPInstanceUID"] == job["sop_instance_uid"]
        assert not list(pending.glob("*.json"))
    finally:
        box.send_signal(signal.SIGTERM)
        box.wait(30)
        if orthanc.process is None:
            orthanc.start()


def _schedule(orthanc: Orthanc, accession: str) -> str:
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    item, step = Dataset(), Dataset()
    item.PatientName, item.PatientID, item.PatientBirthDate, item.PatientSex = "DOE^JANE", "MRN-77", "19700101", "F"
    item.AccessionNumber, item.StudyInstanceUID = accession, generate_uid()
    item.RequestedProcedureDescription, item.ReferringPhysicianName = "US abdomen", ""
    step.Modality, step.ScheduledStationAETitle = "US", "FATTYLIVER"
    step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime = "20261202", "100000"
    step.ScheduledProcedureStepDescription = "Liver fat"
    item.ScheduledProcedureStepSequence = [step]
    orthanc.schedule(accession, item)
    return str(item.StudyInstanceUID)


def test_a_screen_grab_exam_linked_by_the_worklist_reports_into_its_scheduled_study(
    bundle_dir: Path, orthanc: Orthanc, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from edge_runtime.cli import main as edge_cli

    study_uid = _schedule(orthanc, "A2026")
    subject = draw_cohort(2, 23)[0]
    grabs = tmp_path / "grabs"
    grabs.mkdir()
    for k in range(12):  # the screens a capture card sees: views in turn, each a new live frame
        screen = render_view(subject, ("liver", "kidney_liver")[k % 2], 23, frame=k).screen
        cv2.imwrite(str(grabs / f"{k:03d}.png"), cv2.cvtColor(screen, cv2.COLOR_RGB2BGR))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pacs = {"destinations": [orthanc.peer], "queue": tmp_path / "queue", "worklist": orthanc.peer}
    server = start_server(bundle_dir, endpoint, tmp_path, pacs=pacs, sessions={"ttl_s": 2.0})
    try:
        args = ["grab", "--source", str(grabs), "--scanner", profile_for(subject).name, "--frames", endpoint]
        args += ["--fps", "4", "--worklist", orthanc.peer, "--station-ae", "FATTYLIVER"]
        run = CliRunner().invoke(edge_cli, args)
        assert run.exit_code == 0, run.output
        assert "accession A2026" in run.output and "DOE" not in run.output
        assert wait_for(lambda: len(orthanc.instances(study_uid, "SR")) == 1, timeout=60), "no report in the study"
    finally:
        server.stop()
    audit = (tmp_path / "audit" / "results.jsonl").read_text()
    assert "acc-A2026" in audit and "DOE" not in audit and "MRN-77" not in audit  # the accession, never a name
    stored = tmp_path / "report.dcm"
    stored.write_bytes(orthanc.file(orthanc.instances(study_uid, "SR")[0]["ID"]))
    assert str(pydicom.dcmread(stored).PatientName) == "DOE^JANE" and _dciodvfy_errors(stored) == []


class _RefusingPacs:
    """A PACS that answers every store with 0xA700 (out of resources) until told to take them."""

    def __init__(self):
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import Comprehensive3DSRStorage

        self.accept, self.stored = False, []
        ae = AE(ae_title="FULLPACS")
        ae.add_supported_context(Comprehensive3DSRStorage)
        self.port = free_port()
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self._store)])  # fmt: skip

    def _store(self, event) -> int:
        if not self.accept:
            return 0xA700
        self.stored.append(str(event.dataset.SOPInstanceUID))
        return 0x0000


def test_a_refusing_pacs_leaves_the_report_queued_counted_retried_and_said(bundle_dir: Path, tmp_path: Path) -> None:
    refusing = _RefusingPacs()
    gone = f"GONE@127.0.0.1:{free_port()}"  # nothing listens: every association is refused
    study = _study(tmp_path / "study", 24)
    pacs = {"destinations": [f"FULLPACS@127.0.0.1:{refusing.port}", gone], "queue": tmp_path / "queue",
            "retry_s": 0.3, "retry_max_s": 0.6, "timeout_s": 2.0}  # fmt: skip
    server = start_server(bundle_dir, "tcp://127.0.0.1:1", tmp_path, dicom={"listen": "127.0.0.1:0",
                          "study_idle_s": 3.0}, pacs=pacs)  # fmt: skip
    try:
        assert storescu(study.files, server.bedside.part("dicom").port) == []
        assert wait_for(lambda: server.stats.counters["report_send_failures"] >= 3, timeout=60)
        state = server.heartbeat().pacs
        assert state.queued == 1 and state.failed >= 3 and "0xA700" in state.last_error and state.oldest_age_s > 0
        refusing.accept = True
        assert wait_for(lambda: len(refusing.stored) == 1, timeout=30)  # retried: the first destination took it
        time.sleep(1.0)
        state = server.heartbeat().pacs
        assert state.queued == 1 and "GONE" in state.last_error  # still owed to the second destination
    finally:
        server.stop()
        refusing.server.shutdown()
    assert threading.active_count() < 50


CHARACTER_SETS = {  # what consoles write every day, and a name in each
    "korean": (("", "ISO 2022 IR 149"), "Hong^Gildong=洪^吉洞=홍^길동"),
    "japanese": (("", "ISO 2022 IR 87"), "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    "chinese": (("ISO_IR 192",), "Wang^XiaoDong=王^小東"),
    "arabic": (("ISO_IR 127",), "قباني^لنزار"),
    "latin": (("ISO_IR 100",), "Müller^Jürgen"),
}


def test_every_character_set_reaches_its_report_and_one_unbuildable_study_blocks_none(
    bundle_dir: Path, orthanc: Orthanc, tmp_path: Path
) -> None:
    """Korean first (its ISO 2022 code extensions with an empty first value once stopped all reporting), then a study
    whose report cannot be built (its StudyDate names a 13th month), then the others: each readable study gets
    exactly one SR with the name as stored; the other is quarantined, counted and named, and blocks nothing."""
    from dataclasses import replace

    from phantom.dicom import StudyIdentity

    subjects = draw_cohort(len(CHARACTER_SETS) + 1, 41)
    order = ["korean", "broken", "japanese", "chinese", "arabic", "latin"]
    studies = {}
    for k, name in enumerate(order):
        character_set, patient = CHARACTER_SETS.get(name, (("ISO_IR 100",), "Broken^Clock"))
        identity = replace(StudyIdentity.new(f"CS{k}"), patient_name=patient, character_set=character_set)
        if name == "broken":
            identity = replace(identity, study_date="20261345")
        studies[name] = write_study(tmp_path / name, subjects[k], 41, identity=identity)
    pacs = {"destinations": [orthanc.peer], "queue": tmp_path / "queue"}
    dicom = {"listen": "127.0.0.1:0", "study_idle_s": 2.0}
    server = start_server(bundle_dir, "tcp://127.0.0.1:1", tmp_path, dicom=dicom, pacs=pacs)
    reported = lambda name: orthanc.instances(studies[name].identity.study_uid, "SR")  # noqa: E731
    try:
        for name in order:
            assert storescu(studies[name].files, server.bedside.part("dicom").port) == [], name
        assert wait_for(lambda: all(len(reported(n)) == 1 for n in CHARACTER_SETS), timeout=120), "a report is missing"
        assert wait_for(lambda: server.heartbeat().pacs.quarantined == 1, timeout=30)
        time.sleep(1.5)
        state = server.heartbeat().pacs
    finally:
        server.stop()
    for name, (_, patient) in CHARACTER_SETS.items():
        (report,) = reported(name)
        stored = tmp_path / f"{name}.dcm"
        stored.write_bytes(orthanc.file(report["ID"]))
        assert str(pydicom.dcmread(stored).PatientName) == patient, name
        assert _dciodvfy_errors(stored) == [], name
    assert reported("broken") == [] and server.stats.counters["reports_quarantined"] == 1
    (quarantined,) = state.quarantine
    assert quarantined.session == studies["broken"].identity.study_uid and "DA" in quarantined.reason
    assert state.queued == 0 and len(list((tmp_path / "queue" / "quarantine").glob("*.json"))) == 1
