"""The runtime end to end on loopback: phantom frames in, paired results out, nothing lost from the audit log."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from edge_helpers import Display, Source, phantom_screens, start_server, wait_for

from edge_runtime.audit import read_audit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def screens():
    return phantom_screens(3)


def _send_until_encoded(server, source: Source, session: str, view: str, scanner: str, image: np.ndarray) -> int:
    """Send one frame (again if the SUB was not connected yet) until the worker has encoded it; returns its seq."""
    before = server.stats.counters["frames_encoded"]
    for _ in range(20):
        header = source.send(session, view, scanner, image)
        if wait_for(lambda: server.stats.counters["frames_encoded"] > before, timeout=3):
            return header.seq
    raise AssertionError(f"frame of {session}/{view} was never encoded")


def test_results_for_every_session_with_the_right_seqs_and_no_loss(bundle_dir: Path, tmp_path: Path, screens) -> None:
    ctx = zmq.Context()
    source = Source(ctx)
    server = start_server(bundle_dir, source.endpoint, tmp_path)
    display = Display(ctx, server.results_endpoint)
    try:
        time.sleep(0.3)
        expected = {}
        for i, session in enumerate(["exam-a", "exam-b"]):
            scanner, liver = screens[(i, "liver")]
            _, kidney = screens[(i, "kidney_liver")]
            seq_l = _send_until_encoded(server, source, session, "liver", scanner, liver)
            seq_k = _send_until_encoded(server, source, session, "kidney_liver", scanner, kidney)
            expected[session] = (seq_l, seq_k)
        assert wait_for(lambda: (display.poll(), len(display.received) >= 2)[1])
        for result in display.received:
            seq_l, seq_k = expected[result.session]
            assert result.frames["liver"].seq == seq_l and result.frames["kidney_liver"].seq == seq_k
            assert 0.0 <= result.p_fatty <= 1.0 and result.fatty == (result.p_fatty >= result.threshold)
            assert set(result.latency_ms) >= {"queue", "decode", "preprocess", "encode", "head", "end_to_end"}
            assert result.model.sha == server.bundle.sha

        # The display goes down: results keep landing in the audit log.
        display.close()
        scanner, liver = screens[(2, "liver")]
        _, kidney = screens[(2, "kidney_liver")]
        _send_until_encoded(server, source, "exam-c", "liver", scanner, liver)
        _send_until_encoded(server, source, "exam-c", "kidney_liver", scanner, kidney)
        # The frame source restarts on the same endpoint: the runtime reconnects by itself.
        source.close()
        source = Source(ctx, source.endpoint)
        time.sleep(0.5)
        _send_until_encoded(server, source, "exam-a", "liver", screens[(0, "liver")][0], screens[(0, "liver")][1])
        assert wait_for(lambda: server.stats.counters["results_published"] >= 4)
    finally:
        server.stop()
        source.close()
        ctx.destroy(linger=0)
    audit = read_audit(tmp_path / "audit" / "results.jsonl")
    assert [r["session"] for r in audit].count("exam-c") == 1
    assert {r["session"] for r in audit} == {"exam-a", "exam-b", "exam-c"} and len(audit) == 4


def test_serve_refuses_a_tampered_bundle(bundle_dir: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bundle"
    shutil.copytree(bundle_dir, bad)
    data = bytearray((bad / "encoder.tflite").read_bytes())
    data[1000] ^= 0xFF
    (bad / "encoder.tflite").write_bytes(bytes(data))
    done = subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", "serve", "--bundle", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "refusing to serve" in done.stderr and "encoder.tflite: SHA-256 mismatch" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_stops_cleanly_on_sigterm(bundle_dir: Path, tmp_path: Path) -> None:
    import signal

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_runtime.cli",
            "serve",
            "--bundle",
            str(bundle_dir),
            "--frames",
            "tcp://127.0.0.1:5599",
            "--results",
            "tcp://127.0.0.1:5598",
            "--audit-log",
            str(tmp_path / "a.jsonl"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    ctx = zmq.Context()
    display = Display(ctx, "tcp://127.0.0.1:5598", topics=(b"heartbeat",))
    try:
        assert wait_for(lambda: display.sock.poll(100) != 0, timeout=30), "no heartbeat"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        display.close()
        ctx.destroy(linger=0)
    assert proc.returncode == 0, err
    assert "stopped cleanly" in err
