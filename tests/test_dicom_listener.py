"""The bedside as a DICOM storage node: a study stored by dcmtk's storescu (a client nobody here wrote) is one exam,
keyed by its StudyInstanceUID, with the same answer as the same images over ZeroMQ; a dual display gives a frame per
image; an image from a scanner without a profile is accepted and counted, never blocking the scanner; hostile
datasets and peers get failure statuses or refusals, counted, while the node keeps serving."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import zmq
from helpers import Source, offline_server, send_until_encoded, start_server, storescu, wait_for

from edge_runtime.contracts import Stage
from edge_runtime.sinks.audit import read_final_exams
from edge_runtime.sources.dicom.images import read_dataset, region_frames, rgb_frames
from phantom.dicom import StudyIdentity, write_ultrasound_dicom
from phantom.render import profile_for
from phantom.study import StoredStudy, write_dual, write_study
from phantom.subject import draw_cohort

STUDY_EXAM = {"min_pairs": 1, "hold_updates": 1, "hold_s": 0.0, "window_s": 1e9}  # the study policy, for a live twin
COMPARED = ("call", "p_fatty", "pdff", "pdff_interval", "n_pairs", "class_set", "views_seen")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> StoredStudy:
    """One phantom subject's study: both views as JPEG baseline, JPEG 2000 and RLE, and a 3-frame cine loop each."""
    subject = draw_cohort(2, 9)[0]
    out = tmp_path_factory.mktemp("dicom-study")
    return write_study(out, subject, 9, forms=("jpeg-baseline", "jpeg2000", "rle"), cine_frames=3)


def _frames_of(study: StoredStudy) -> int:
    return sum(image.frames for image in study.images)


def test_a_study_stored_over_dicom_is_the_exam_its_images_make_over_zeromq(
    bundle_dir: Path, study: StoredStudy, tmp_path: Path
) -> None:
    source = Source(zmq.Context.instance())
    dicom = {"listen": "127.0.0.1:0", "study_idle_s": 3.0, "allowed_calling": ["SCANNER"]}
    server = start_server(bundle_dir, source.endpoint, tmp_path, exam=STUDY_EXAM, dicom=dicom)
    audit = tmp_path / "audit" / "results.jsonl"
    scanner = profile_for(study.subject).name
    try:
        assert storescu(study.files, server.bedside.part("dicom").port) == []
        assert wait_for(lambda: server.stats.counters["dicom_frames"] == _frames_of(study), timeout=30)
        assert wait_for(lambda: any(f.get("study") for f in read_final_exams(audit)), timeout=60), "no study ended"
        for path in study.files:  # the same pixels as a grabber would send them, in the order they were stored
            for screen in rgb_frames(read_dataset(path)):
                send_until_encoded(server, source, "zmq-twin", "auto", scanner, screen)
    finally:
        server.stop()
        source.close()
    finals = {f["session"]: f for f in read_final_exams(audit)}
    stored, twin = finals[study.identity.study_uid], finals["zmq-twin"]["exam"]
    ref = stored["study"]
    assert ref["study_instance_uid"] == study.identity.study_uid and ref["received"] == len(study.files)
    assert set(ref["sop_instance_uids"]) <= {str(pydicom.dcmread(p).SOPInstanceUID) for p in study.files}
    assert ref["series_instance_uids"] == [study.identity.series_uid]
    assert stored["exam"]["n_pairs"] > 0
    assert {k: stored["exam"][k] for k in COMPARED} == {k: twin[k] for k in COMPARED}
    counters = server.stats.counters
    assert counters["dicom_objects_received"] == counters["dicom_objects_analysed"] == len(study.files)
    assert counters["frames_dropped_stale"] == 0  # every stored frame was processed, none replaced by a newer one


def test_a_dual_display_is_a_frame_per_image_filed_by_the_gate(bundle_dir: Path, tmp_path: Path) -> None:
    from phantom.layouts import DUAL_LAYOUT

    subject = draw_cohort(3, 4, vendors=("GE",))[0]
    path = write_dual(tmp_path / "dual.dcm", subject, 4, DUAL_LAYOUT)
    server = offline_server(bundle_dir, tmp_path, dicom={"listen": "127.0.0.1:0"})
    assert server.bedside.part("dicom").stores.store(path.read_bytes(), time.time()) == 0x0000
    frames = [server.bedside.worker.queue.take(0.1) for _ in range(2)]
    assert server.bedside.worker.queue.take(0.05) is None and [f.origin.region for f in frames] == [0, 1]
    truth = region_frames(read_dataset(path))
    for frame, region in zip(frames, truth, strict=True):
        assert frame.header.session == str(pydicom.dcmread(path).StudyInstanceUID)
        server.pipeline.run(frame)
        gate = next(stage for stage in server.pipeline.stages if stage.name == Stage.GATE)
        alone = gate.policy.route("auto", frame.tensor, frame.features)
        assert np.array_equal(frame.payload, region.pixels) and frame.view == alone.view  # the gate decides each
    assert server.stats.counters["frames_encoded"] == 2


def test_an_image_no_profile_places_is_accepted_counted_and_named(bundle_dir: Path, tmp_path: Path, caplog) -> None:
    server = offline_server(bundle_dir, tmp_path, dicom={"listen": "127.0.0.1:0"})
    screen = np.full((500, 700, 3), 40, np.uint8)
    path = write_ultrasound_dicom(tmp_path / "acme.dcm", screen, [], "ACME Imaging", "Sono 9", StudyIdentity.new("X1"))
    with caplog.at_level(logging.WARNING, logger="edge_runtime"):
        assert (
            server.bedside.part("dicom").stores.store(path.read_bytes(), time.time()) == 0x0000
        )  # never blocks the scanner
    assert server.stats.counters["dicom_objects_not_analysed"] == 1 and len(server.bedside.worker.queue) == 0
    assert "ACME Imaging/Sono 9" in caplog.text and "[runtime.dicom.scanners]" in caplog.text


def _hostile(tmp_path: Path, good: Path) -> dict[str, tuple[pydicom.Dataset, int]]:
    """Datasets a broken or hostile sender stores, and the status each must get."""
    base = pydicom.dcmread(good)
    cases = {}
    truncated = pydicom.dcmread(good)
    truncated.PixelData = truncated.PixelData[: len(truncated.PixelData) // 3]
    cases["truncated pixel data"] = (truncated, 0xC000)
    unplaced = pydicom.dcmread(good)  # a console no profile places: refused at the door all the same
    unplaced.Manufacturer, unplaced.ManufacturerModelName = "ACME Imaging", "Sono 9"
    unplaced.PixelData = unplaced.PixelData[: len(unplaced.PixelData) // 3]
    cases["truncated pixel data from a console no profile places"] = (unplaced, 0xC000)
    huge = pydicom.dcmread(good)
    huge.Rows, huge.Columns = 60000, 60000
    cases["huge Rows and Columns"] = (huge, 0xA700)
    no_study = pydicom.dcmread(good)
    del no_study.StudyInstanceUID
    cases["no StudyInstanceUID"] = (no_study, 0xA900)
    bad_value = pydicom.dcmread(good)
    bad_value.StudyInstanceUID = "not a uid; DROP TABLE"
    cases["a UID that is no UID"] = (bad_value, 0xA900)
    no_pixels = pydicom.dcmread(good)
    del no_pixels.PixelData
    cases["no pixel data"] = (no_pixels, 0xA900)
    return cases | {"the valid image": (base, 0x0000)}


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the hostile UID is the point
def test_hostile_datasets_and_peers_are_refused_counted_and_the_node_keeps_serving(
    bundle_dir: Path, study: StoredStudy, tmp_path: Path
) -> None:
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, UltrasoundImageStorage, UltrasoundMultiFrameImageStorage

    dicom = {"listen": "127.0.0.1:0", "allowed_calling": ["SCANNER"], "network_timeout_s": 1.0}
    server = start_server(bundle_dir, "tcp://127.0.0.1:1", tmp_path, dicom=dicom)
    port = server.bedside.part("dicom").port
    good = next(p for p in study.files if "cine" in p.name)  # uncompressed: a cut-short copy fails to decode
    try:
        idle = socket.create_connection(("127.0.0.1", port), timeout=15)  # an association never begun, nor ended
        stranger = AE(ae_title="STRANGER")
        stranger.add_requested_context(UltrasoundImageStorage)
        assert not stranger.associate("127.0.0.1", port, ae_title="FATTYLIVER").is_established
        ct_only = AE(ae_title="SCANNER")
        ct_only.add_requested_context(CTImageStorage)
        ct_assoc = ct_only.associate("127.0.0.1", port, ae_title="FATTYLIVER")
        assert not ct_assoc.is_established or not ct_assoc.accepted_contexts
        if ct_assoc.is_established:
            ct_assoc.release()
        scanner = AE(ae_title="SCANNER")
        scanner.add_requested_context(UltrasoundMultiFrameImageStorage, ExplicitVRLittleEndian)
        assoc = scanner.associate("127.0.0.1", port, ae_title="FATTYLIVER")
        statuses = {name: int(assoc.send_c_store(ds).Status) for name, (ds, _) in _hostile(tmp_path, good).items()}
        assoc.release()
        assert idle.recv(1) == b"", "an idle connection was never closed"  # the network timeout closes it
    finally:
        server.stop()
    assert statuses == {name: want for name, (_, want) in _hostile(tmp_path, good).items()}
    counters = server.stats.counters
    assert counters["dicom_objects_failed"] == 6 and counters["dicom_objects_analysed"] == 1
    assert counters["dicom_failed_short_pixel_data"] == 2 and counters["dicom_failed_too_large"] == 1
    assert counters["dicom_failed_not_image"] == 3 and counters["dicom_associations_refused"] >= 1
    assert counters["inference_errors"] == 0
