"""The phantom scanner speaks protocol v1: every frame it sends passes the runtime's own validation."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import zmq

from edge_runtime.scanners.profiles import default_profiles
from edge_runtime.wire.protocol import check_payload, decode_payload, parse_header
from phantom.stream import PhantomStream, prepare_sessions


def test_stream_cli_sends_valid_frames_that_switch_views(tmp_path) -> None:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"frame")
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.connect("tcp://127.0.0.1:5677")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "phantom.cli",
            "stream",
            "--frames",
            "tcp://127.0.0.1:5677",
            "--fps",
            "40",
            "--sessions",
            "2",
            "--switch-every",
            "0.2",
            "--count",
            "40",
            "--truth-log",
            str(tmp_path / "truth.json"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    headers = []
    try:
        while len(headers) < 30 and sub.poll(20_000):
            parts = sub.recv_multipart()
            header = parse_header(parts[1], set(default_profiles()))
            check_payload(header, len(parts[2]))
            image = decode_payload(header, parts[2])
            assert image.shape == (header.height, header.width, 3)
            headers.append(header)
        _, err = proc.communicate(timeout=30)
    finally:
        sub.close(linger=0)
        ctx.destroy(linger=0)
    assert proc.returncode == 0, err
    assert len(headers) >= 30
    for session in {h.session for h in headers}:  # seq counts each session's frames: a gap is a lost frame
        seqs = [h.seq for h in headers if h.session == session]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{session}: {seqs}"
    assert {(h.session, h.view) for h in headers} == {
        (s, v) for s in {h.session for h in headers} for v in ("liver", "kidney_liver")
    }
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert set(truth) == {h.session for h in headers}  # every streamed exam can be scored against its truth
    assert all(t["fatty"] == (t["pdff"] >= 5.0) for t in truth.values())


def test_frames_change_with_breathing_and_speckle() -> None:
    stream = PhantomStream(prepare_sessions(1, seed=4, realisations=2), fps=30, switch_every=100)
    _, first = stream.frame(0, 0.0)
    _, second = stream.frame(1, 1.0)
    assert first.shape == second.shape and not np.array_equal(first, second)


def test_a_scripted_exam_logs_what_each_frame_shows_and_sends_auto_or_the_operators_key() -> None:
    from phantom.stream import EXAM_SCRIPT, script_shot

    shots = tuple(dict.fromkeys(shot for shot, _ in EXAM_SCRIPT))
    sessions = prepare_sessions(1, seed=4, realisations=1, shots=shots)
    times = np.arange(0.0, 26.5, 0.5)
    for auto in (True, False):
        stream = PhantomStream(sessions, fps=30, switch_every=100, script=EXAM_SCRIPT, auto=auto)
        log = []
        for i, t in enumerate(times):
            header, _ = stream.frame(i, float(t))
            log.append(stream.last_truth)
            assert log[-1]["seq"] == header.seq and log[-1]["header_view"] == header.view
        assert [e["shows"] for e in log] == [script_shot(EXAM_SCRIPT, float(t)) for t in times]
        assert {e["shows"] for e in log} == set(shots)  # the whole script: views, air, gallbladder, partial contact
        if auto:
            assert {e["header_view"] for e in log} == {"auto"}
        else:  # the operator's key stays on the last view while the probe is lifted
            air = [e for e in log if e["shows"] == "air"]
            assert air and {e["header_view"] for e in air} == {"kidney_liver"}
