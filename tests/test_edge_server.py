"""The runtime end to end on loopback: phantom frames in, paired results out, nothing lost from the audit log."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from edge_helpers import Display, Source, breathed, phantom_screens, send_until_encoded, start_server, wait_for

from edge_runtime.audit import read_final_exams, read_results

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def screens():
    return phantom_screens(3)


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
            seq_l = send_until_encoded(server, source, session, "liver", scanner, liver)
            seq_k = send_until_encoded(server, source, session, "kidney_liver", scanner, kidney)
            expected[session] = (seq_l, seq_k)
        assert wait_for(lambda: (display.poll(), len(display.received) >= 2)[1])
        for result in display.received:
            seq_l, seq_k = expected[result.session]
            assert result.frames["liver"].seq == seq_l and result.frames["kidney_liver"].seq == seq_k
            assert 0.0 <= result.p_fatty <= 1.0 and result.fatty == (result.p_fatty >= result.threshold)
            assert set(result.latency_ms) >= {"queue", "decode", "preprocess", "encode", "head", "end_to_end"}
            assert result.model.sha == server.bundle.sha
            assert result.exam is not None and result.exam.n_pairs == 1 and result.exam.call is None
            assert result.exam.reason.startswith("collecting") and result.exam.calibrated

        # The display goes down: results keep landing in the audit log.
        display.close()
        scanner, liver = screens[(2, "liver")]
        _, kidney = screens[(2, "kidney_liver")]
        send_until_encoded(server, source, "exam-c", "liver", scanner, liver)
        send_until_encoded(server, source, "exam-c", "kidney_liver", scanner, kidney)
        # The frame source restarts on the same endpoint: the runtime reconnects by itself.
        source.close()
        source = Source(ctx, source.endpoint)
        time.sleep(0.5)
        live = breathed(screens[(0, "liver")][1], 1)  # a new live frame: the same one again would be a repeat
        send_until_encoded(server, source, "exam-a", "liver", screens[(0, "liver")][0], live)
        assert wait_for(lambda: server.stats.counters["results_published"] >= 4)
    finally:
        server.stop()
        source.close()
        ctx.destroy(linger=0)
    audit = read_results(tmp_path / "audit" / "results.jsonl")
    assert [r["session"] for r in audit].count("exam-c") == 1
    assert {r["session"] for r in audit} == {"exam-a", "exam-b", "exam-c"} and len(audit) == 4
    finals = {r["session"]: r for r in read_final_exams(tmp_path / "audit" / "results.jsonl")}
    assert set(finals) == {"exam-a", "exam-b", "exam-c"}  # shutdown closes every exam in the log
    assert finals["exam-a"]["why"] == "shutdown" and finals["exam-a"]["exam"]["n_pairs"] == 2


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


def test_an_older_bundle_without_a_calibrator_serves_raw_exams_and_says_so(bundle_dir: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from edge_runtime.bundle import load_bundle
    from edge_runtime.config import RuntimeConfig
    from edge_runtime.profiles import default_profiles
    from edge_runtime.server import EdgeServer
    from edge_runtime.sessions import ViewFeatures

    older = tmp_path / "older"
    shutil.copytree(bundle_dir, older)
    meta = json.loads((older / "bundle.json").read_text())
    assert meta.pop("exam")["p_fatty"] is not None  # the fresh bundle carries a calibrator
    (older / "bundle.json").write_text(json.dumps(meta))
    config = RuntimeConfig(bundle=older, audit_log=tmp_path / "audit.jsonl", session_ttl_s=0.05)
    server = EdgeServer(config, load_bundle(older), default_profiles(), context=zmq.Context())
    assert server.heartbeat().calibrated is False

    # A session that only ever showed the liver view: no call, a reason, and a final record when it expires.
    server.sessions.update("one-view", "liver", ViewFeatures(np.zeros(4, np.float32), 1, time.time()))
    beat = server.heartbeat().exams["one-view"]
    assert beat.call is None and "kidney_liver" in beat.reason and not beat.calibrated
    time.sleep(0.1)
    assert server.record_ended_exams() == 1
    server.audit.close()
    (final,) = read_final_exams(tmp_path / "audit.jsonl")
    assert final["why"] == "ttl" and final["exam"]["call"] is None and "kidney_liver" in final["exam"]["reason"]


def test_the_runtime_preprocesses_with_the_bundles_harmonisation(bundle_dir: Path, tmp_path: Path) -> None:
    """The bedside's tensor is the trainer's: the bundle's recorded harmonisation is applied, and a bundle older
    than the field (no `harmonisation`) keeps the plain crop it was trained on."""
    import json
    import shutil

    from edge_runtime.bundle import load_bundle
    from edge_runtime.config import RuntimeConfig
    from edge_runtime.preprocess import preprocess_frame
    from edge_runtime.profiles import default_profiles
    from edge_runtime.schema import FrameHeader
    from edge_runtime.server import EdgeServer
    from edge_runtime.sessions import PendingFrame
    from phantom.render import profile_for, render_view
    from phantom.subject import draw_cohort

    subject = draw_cohort(1, 23)[0]
    screen, profile = render_view(subject, "liver", 23).screen, profile_for(subject)
    older = tmp_path / "older"
    shutil.copytree(bundle_dir, older)
    meta = json.loads((older / "bundle.json").read_text())
    assert meta["input"].pop("harmonisation") == "sector_median"  # the trainer's default, recorded
    (older / "bundle.json").write_text(json.dumps(meta))
    for root, expected in ((bundle_dir, "sector_median"), (older, "none")):
        bundle = load_bundle(root)
        config = RuntimeConfig(bundle=root, audit_log=tmp_path / f"audit-{expected}.jsonl")
        server = EdgeServer(config, bundle, default_profiles(), context=zmq.Context())
        header = FrameHeader(1, 1, time.time(), "s", profile.name, "liver", *screen.shape[1::-1], 3, "raw")
        tensor = server._model_input(PendingFrame(header, screen.tobytes(), time.time()))
        assert bundle.harmonisation == expected
        np.testing.assert_array_equal(tensor, preprocess_frame(screen, profile, harmonisation=expected))
        server.audit.close()
