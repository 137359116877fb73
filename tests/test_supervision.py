"""A box that never stops silently. Every part has a pulse: an unexpected exception in a source, the stages, a sink or a
service is counted and named on /healthz while serving goes on, and the item it was handling is kept; a part that
stalls turns /healthz red and starves the watchdog; a part whose thread dies ends supervision, naming it."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import zmq
from helpers import Source, breathed, phantom_screens, send_until_encoded, start_server, storescu, wait_for

from benchmarks.orthanc import Orthanc
from edge_runtime.box.health import BoxStatus
from edge_runtime.box.supervision import GIVE_UP_AFTER, Kind, ServiceManager, Supervisor, start_thread, supervise
from edge_runtime.sinks.audit import read_results
from edge_runtime.tools.ports import free_port
from phantom.study import write_study
from phantom.subject import draw_cohort


def _healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_service_manager_hears_ready_and_watchdog_pings(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(tmp_path / "notify"))
        listener.settimeout(2)
        manager = ServiceManager({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"})
        assert manager.notify("READY=1", "STATUS=serving") and listener.recv(100) == b"READY=1\nSTATUS=serving"
        manager.feed_watchdog()
        assert listener.recv(100) == b"WATCHDOG=1"
    assert not ServiceManager({}).notify("READY=1"), "outside systemd nothing is sent"


def test_a_step_that_keeps_failing_ends_its_thread_and_supervision_names_it() -> None:
    supervisor, stop, tries = Supervisor(stall_s=5), threading.Event(), []

    def step() -> None:
        tries.append(1)
        raise OSError("Socket operation on non-socket")

    pulse = supervisor.pulse("frames", Kind.SOURCE)
    start_thread(pulse, supervisor, step, stop).join(5)
    started = time.monotonic()
    failure = supervise(supervisor, threading.Event(), (threading.Event(), lambda: None), ServiceManager({}))
    assert len(tries) == GIVE_UP_AFTER and pulse.errors == GIVE_UP_AFTER
    assert failure == f"source frames stopped: OSError: Socket operation on non-socket ({GIVE_UP_AFTER} times in a row)"
    assert time.monotonic() - started < 2


def test_one_failure_is_counted_and_survived() -> None:
    supervisor, stop, calls = Supervisor(stall_s=5), threading.Event(), []

    def step() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("once")
        if len(calls) >= 5:
            stop.set()

    pulse = supervisor.pulse("heartbeat", Kind.SERVICE)
    start_thread(pulse, supervisor, step, stop).join(5)
    health = supervisor.health().parts["heartbeat"]
    assert len(calls) == 5 and health.errors == 1 and health.last_error == "ValueError: once"


def test_healthz_names_a_stalled_part_then_recovers(bundle_dir: Path, tmp_path: Path) -> None:
    ctx = zmq.Context()
    source = Source(ctx)
    port = free_port()
    server = start_server(bundle_dir, source.endpoint, tmp_path, metrics={"prometheus_port": port, "stall_s": 1.0})
    queue = server.bedside.worker.queue
    take = queue.take
    try:
        status, body = _healthz(port)
        assert status == 200 and body["healthy"] and body["model"]["sha"] == server.served.current.bundle.sha
        assert {"frames", "stages", "feed", "heartbeat", "audit", "results"} <= set(body["parts"])
        queue.take = lambda timeout: time.sleep(2.5)  # the worker hangs in one call
        assert wait_for(lambda: _healthz(port)[0] == 503, timeout=5), "a stalled worker never made /healthz fail"
        _, body = _healthz(port)
        assert body["parts"]["stages"]["stalled"] and "stage stages stalled" in body["problem"]
        queue.take = take
        assert wait_for(lambda: _healthz(port)[0] == 200, timeout=5), "/healthz never recovered"
    finally:
        server.stop()
        source.close()
        ctx.destroy(linger=0)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory):
    pacs = Orthanc(tmp_path_factory.mktemp("orthanc")).start()
    yield pacs
    pacs.stop()


class Flaky:
    """Raise RuntimeError on the next ``times`` calls, then call through."""

    def __init__(self, call, times: int, what: str):
        self.call, self.times, self.what = call, times, what

    def __call__(self, *args, **kwargs):
        if self.times > 0:
            self.times -= 1
            raise RuntimeError(f"injected: {self.what}")
        return self.call(*args, **kwargs)


def _store_status(path: Path, port: int) -> int:
    """One C-STORE as a scanner sends it; the status the node answered."""
    import pydicom
    from pynetdicom import AE

    ds = pydicom.dcmread(path)
    scanner = AE(ae_title="SCANNER")
    scanner.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = scanner.associate("127.0.0.1", port, ae_title="FATTYLIVER")
    status = int(assoc.send_c_store(ds).Status)
    assoc.release()
    return status


@pytest.mark.slow
def test_a_failure_in_each_kind_of_part_is_counted_named_and_survived(
    bundle_dir: Path, orthanc: Orthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report builder, a DICOM association handler, a sink and the heartbeat each fail: /healthz counts and names
    each, the report stays queued and arrives once the builder works, and the heartbeat that keeps failing dies and
    turns /healthz red within 5 s."""
    study = write_study(tmp_path / "study", draw_cohort(2, 31)[0], 31)
    ctx, port = zmq.Context(), free_port()
    source = Source(ctx)
    tables = {"metrics": {"prometheus_port": port}, "dicom": {"listen": "127.0.0.1:0", "study_idle_s": 2.0}}
    tables["pacs"] = {"destinations": [orthanc.peer], "queue": tmp_path / "queue", "retry_s": 0.5, "retry_max_s": 1}
    server = start_server(bundle_dir, source.endpoint, tmp_path, thumbnails={"enabled": True}, **tables)
    bedside, parts = server.bedside, lambda: _healthz(port)[1]["parts"]
    try:
        listener, sender = bedside.part("dicom"), bedside.part("reports")
        listener.stores.store = Flaky(listener.stores.store, 1, "a DICOM association handler")
        sender.builder.build = Flaky(sender.builder.build, 1, "the report builder")
        thumbnails = next(s for s in bedside.sinks if s.name == "thumbnails")
        thumbnails.on_result = Flaky(thumbnails.on_result, 1, "a sink")
        assert _store_status(study.files[0], listener.port) == 0xC000, "a failed handler answers the scanner a failure"
        assert storescu(study.files, listener.port) == []
        assert wait_for(lambda: parts()["reports"]["errors"] == 1, timeout=60), "the builder's failure was not counted"
        assert "injected: the report builder" in parts()["reports"]["last_error"]
        assert wait_for(lambda: len(orthanc.instances(study.identity.study_uid, "SR")) == 1, timeout=60), "report lost"
        assert parts()["dicom"]["errors"] == 1 and "a DICOM association handler" in parts()["dicom"]["last_error"]

        screens = phantom_screens(1)
        for k in range(3):
            for view in ("liver", "kidney_liver"):
                scanner, image = screens[(0, view)]
                send_until_encoded(server, source, "live", view, scanner, breathed(image, k))
        assert wait_for(lambda: parts()["thumbnails"]["errors"] == 1, timeout=10)
        assert any(r["session"] == "live" for r in read_results(tmp_path / "audit" / "results.jsonl")), "audit lost"
        assert _healthz(port)[0] == 200, "failures that were survived leave the box healthy"

        monkeypatch.setattr(BoxStatus, "heartbeat", Flaky(BoxStatus.heartbeat, 1000, "the heartbeat"))
        broken = time.monotonic()
        assert wait_for(lambda: _healthz(port)[0] == 503, timeout=5), "a dead heartbeat never made /healthz fail"
        assert time.monotonic() - broken <= 5.0
        _, body = _healthz(port)
        assert not body["parts"]["heartbeat"]["alive"] and "service heartbeat stopped" in body["problem"]
    finally:
        server.stop()
        source.close()
        ctx.destroy(linger=0)
