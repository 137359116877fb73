"""A box that never stops silently: a stage that stalls makes /healthz answer 503 naming it and starves the systemd
watchdog; a stage whose thread dies ends supervision with one line naming it (serve then exits non-zero)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import zmq
from helpers import Source, start_server, wait_for

from edge_runtime.box.supervision import ServiceManager, StageClock, supervise


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def test_a_dead_stage_is_named_and_ends_supervision(tmp_path: Path) -> None:
    clock = StageClock(stall_s=5)

    def stage() -> None:
        clock.ended("receiver", "ZMQError: Socket operation on non-socket")

    thread = threading.Thread(target=stage)
    clock.watch("receiver", thread)
    thread.start()
    thread.join()
    started = time.monotonic()
    failure = supervise(clock, threading.Event(), (threading.Event(), lambda: None), ServiceManager({}))
    assert failure == "stage receiver stopped: ZMQError: Socket operation on non-socket"
    assert time.monotonic() - started < 2


def test_healthz_names_a_stalled_stage_then_recovers_and_a_dead_worker_is_named(
    bundle_dir: Path, tmp_path: Path
) -> None:
    ctx = zmq.Context()
    source = Source(ctx)
    port = _free_port()
    server = start_server(bundle_dir, source.endpoint, tmp_path, metrics={"prometheus_port": port, "stall_s": 1.0})
    take = server.frames.take
    try:
        status, body = _healthz(port)
        assert status == 200 and body["healthy"] and body["model"]["sha"] == server.bundle.sha
        server.frames.take = lambda timeout: time.sleep(2.5)  # the worker hangs in one call
        assert wait_for(lambda: _healthz(port)[0] == 503, timeout=5), "a stalled worker never made /healthz fail"
        _, body = _healthz(port)
        assert body["stages"]["worker"]["stalled"] and "stage worker stalled" in body["problem"]
        server.frames.take = take
        assert wait_for(lambda: _healthz(port)[0] == 200, timeout=5), "/healthz never recovered"

        def broken_heartbeat():
            raise RuntimeError("heartbeat could not be built")

        server.heartbeat = broken_heartbeat
        stop = threading.Event()
        threading.Timer(10, stop.set).start()
        failure = supervise(server.clock, stop, (threading.Event(), lambda: None), ServiceManager({}))
        assert not stop.is_set()
    finally:
        server.stop()
        source.close()
        ctx.destroy(linger=0)
    assert failure == "stage worker stopped: RuntimeError: heartbeat could not be built"
