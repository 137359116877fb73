"""The runtime end to end on loopback: phantom frames in, paired results out, nothing lost from the audit log."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from helpers import Display, Source, breathed, phantom_screens, send_until_encoded, start_server, wait_for

from edge_runtime.sinks.audit import read_final_exams, read_results

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
            assert result.model.sha == server.served.current.bundle.sha
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
        [sys.executable, "-m", "edge_runtime.cli", "serve", "--bundle", str(bad), "--allow-unsigned"],
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
            "--allow-unsigned",
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
    assert "stopped cleanly" in err and "UNSIGNED BUNDLE" in err  # development only, and said so


def test_a_bundle_without_a_calibrator_serves_raw_exams_and_says_so(bundle_dir: Path, tmp_path: Path) -> None:
    """A regress run validates no p_fatty, so its bundle has no calibrator: exams use the raw p_fatty and say so."""
    import json
    import shutil

    from helpers import offline_server

    from edge_runtime.pipeline.sessions import ViewFeatures

    raw = tmp_path / "raw"
    shutil.copytree(bundle_dir, raw)
    meta = json.loads((raw / "bundle.json").read_text())
    assert meta["exam"]["p_fatty"] is not None  # the fresh bundle carries a calibrator
    meta["exam"]["p_fatty"] = None
    (raw / "bundle.json").write_text(json.dumps(meta))
    server = offline_server(raw, tmp_path, sessions={"ttl_s": 0.05})
    assert server.heartbeat().calibrated is False

    # A session that only ever showed the liver view: no call, a reason, and a final record when it expires.
    sessions = server.bedside.worker.sessions
    sessions.update("one-view", "liver", ViewFeatures(np.zeros(4, np.float32), 1, time.time()))
    sessions.publish()  # what the worker does after each frame: the heartbeat reads what was published
    beat = server.heartbeat().exams["one-view"]
    assert beat.call is None and "kidney_liver" in beat.reason and not beat.calibrated
    time.sleep(0.1)
    assert server.pipeline.end_exams() == 1
    server.bedside.audit.close()
    (final,) = read_final_exams(server.config.audit.log)
    assert final["why"] == "ttl" and final["exam"]["call"] is None and "kidney_liver" in final["exam"]["reason"]


def test_the_runtime_preprocesses_with_the_bundles_harmonisation(bundle_dir: Path, tmp_path: Path) -> None:
    """The bedside's tensor is the trainer's: the bundle's recorded harmonisation is applied, whichever it is."""
    import json
    import shutil

    from helpers import frame_context, offline_server

    from edge_runtime.pipeline.preprocess import preprocess_frame
    from phantom.render import profile_for, render_view
    from phantom.subject import draw_cohort

    subject = draw_cohort(1, 23)[0]
    screen, profile = render_view(subject, "liver", 23).screen, profile_for(subject)
    plain = tmp_path / "plain"
    shutil.copytree(bundle_dir, plain)
    meta = json.loads((plain / "bundle.json").read_text())
    assert meta["input"]["harmonisation"] == "sector_median"  # the trainer's default, recorded
    meta["input"]["harmonisation"] = "none"
    (plain / "bundle.json").write_text(json.dumps(meta))
    for root, expected in ((bundle_dir, "sector_median"), (plain, "none")):
        server = offline_server(root, tmp_path / expected)
        frame = frame_context("liver", 1, screen, profile.name)
        for stage in server.pipeline.stages[:2]:  # decode, preprocess
            frame = stage(frame)
        assert server.served.current.bundle.harmonisation == expected
        np.testing.assert_array_equal(frame.tensor, preprocess_frame(screen, profile, harmonisation=expected))
        server.bedside.audit.close()
