"""Hostile input and locked-down sockets: the runtime keeps serving, counts every rejection, admits only keys."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq
from helpers import Display, Source, phantom_screens, start_server, wait_for

from edge_runtime.contracts import FrameHeader
from edge_runtime.wire.protocol import encode_frame

pytestmark = pytest.mark.slow


def _malformed(rng: np.random.Generator, good: np.ndarray, n: int) -> tuple[list[list[bytes]], Counter]:
    """n malformed messages and the rejection reason each must be counted under."""
    h, w = good.shape[:2]
    png = encode_frame(FrameHeader(1, 0, 0.0, "x", "phantom-ge", "liver", w, h, 3, "png"), good)[2]
    messages, expected = [], Counter()

    def header(i: int, **changes) -> bytes:
        base = {
            "v": 1,
            "seq": 10_000 + i,
            "ts": time.time(),
            "session": f"fuzz-{i}",
            "scanner": "phantom-ge",
            "view": "liver",
            "width": w,
            "height": h,
            "channels": 3,
            "encoding": "raw",
        }
        base.update(changes)
        return json.dumps(base).encode()

    kinds = ["parts", "json", "field", "huge", "lie", "truncated_png", "corrupt_jpeg", "version", "topic", "blank"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "parts":
            messages.append([b"frame", header(i)] if i % 2 else [b"frame", header(i), b"x", b"y"])
            expected["part_count"] += 1
        elif kind == "json":
            messages.append([b"frame", bytes(rng.integers(0, 256, 40, dtype=np.uint8)), b"\0" * 10])
            expected["bad_json"] += 1
        elif kind == "field":
            messages.append([b"frame", header(i, seq="NaN"), b"\0"])
            expected["bad_field_type"] += 1
        elif kind == "huge":
            messages.append([b"frame", header(i, width=10**9, height=10**9), b"\0" * 16])
            expected["bad_dimensions"] += 1
        elif kind == "lie":
            messages.append([b"frame", header(i), b"\0" * 1000])  # says raw 1680x1050x3, sends 1000 bytes
            expected["payload_size"] += 1
        elif kind == "truncated_png":
            messages.append([b"frame", header(i, encoding="png"), png[: len(png) // 3]])
            expected["decode_failed"] += 1
        elif kind == "corrupt_jpeg":
            messages.append([b"frame", header(i, encoding="jpeg"), b"\xff\xd8\xff" + rng.bytes(2000)])
            expected["decode_failed"] += 1
        elif kind == "version":
            messages.append([b"frame", header(i, v=7), b"\0"])
            expected["bad_version"] += 1
        elif kind == "topic":
            messages.append([b"frames", header(i), b"\0"])  # passes the SUB prefix filter, wrong topic
            expected["bad_topic"] += 1
        else:
            messages.append([b"frame", header(i), np.full((h, w, 3), 17, np.uint8).tobytes()])
            expected["blank"] += 1
    return messages, expected


def test_fuzzed_messages_are_counted_and_every_good_frame_is_served(bundle_dir: Path, tmp_path: Path) -> None:
    screens = phantom_screens(1)
    scanner, liver = screens[(0, "liver")]
    _, kidney = screens[(0, "kidney_liver")]
    assert scanner == "phantom-ge" or liver.shape == (1080, 1920, 3)
    if scanner != "phantom-ge":  # the fuzz headers below describe the GE screen
        liver = kidney = cv2.resize(liver, (1680, 1050))
        scanner = "phantom-ge"
    rng = np.random.default_rng(0)
    bad, expected = _malformed(rng, liver, 2000)
    ctx = zmq.Context()
    source = Source(ctx)
    server = start_server(bundle_dir, source.endpoint, tmp_path, transport={"receive_hwm": 100_000})
    display = Display(ctx, server.results_endpoint)
    good_sessions = [f"good-{i}" for i in range(6)]
    try:
        assert wait_for(
            lambda: (source.send("warmup", "liver", scanner, liver), server.stats.counters["frames_encoded"] >= 1)[1],
            timeout=20,
            step=0.5,
        )
        base = dict(server.stats.rejected)
        schedule = []
        for k, session in enumerate(good_sessions):
            schedule.append(("good", session, "liver"))
            schedule += [("bad", j) for j in range(k * len(bad) // 6, (k + 1) * len(bad) // 6)]
            schedule.append(("good", session, "kidney_liver"))
        for item in schedule:
            if item[0] == "good":
                source.send(item[1], item[2], scanner, liver if item[2] == "liver" else kidney)
            else:
                source.send_parts(bad[item[1]])
        assert wait_for(lambda: (display.poll(), len({r.session for r in display.received}) >= 6)[1], timeout=120)
        assert wait_for(
            lambda: sum(server.stats.rejected.values()) - sum(base.values()) >= sum(expected.values()), timeout=60
        )
    finally:
        server.stop()
        source.close()
        display.close()
        ctx.destroy(linger=0)
    rejected = Counter(server.stats.rejected) - Counter(base)
    assert rejected == expected
    assert {r.session for r in display.received} >= set(good_sessions)
    assert server.stats.counters.get("inference_errors", 0) == 0


def test_curve_ironhouse_admits_listed_displays_only(bundle_dir: Path, tmp_path: Path) -> None:
    from edge_runtime.wire.security import create_keypair, make_client, make_server

    keys = tmp_path / "keys"
    for name in ("runtime", "source", "display", "intruder"):
        create_keypair(keys, name)
    allowed_displays, allowed_runtime = tmp_path / "allowed-displays", tmp_path / "allowed-runtime"
    allowed_displays.mkdir()
    allowed_runtime.mkdir()
    (allowed_displays / "display.key").write_bytes((keys / "display.key").read_bytes())
    (allowed_runtime / "runtime.key").write_bytes((keys / "runtime.key").read_bytes())

    ctx = zmq.Context()
    source = ctx.socket(zmq.PUB)
    source.setsockopt(zmq.LINGER, 0)
    source_auth = make_server(ctx, source, keys / "source.key_secret", allowed_runtime)
    source.bind("tcp://127.0.0.1:*")
    frames_endpoint = source.getsockopt(zmq.LAST_ENDPOINT).decode()
    server = start_server(
        bundle_dir,
        frames_endpoint,
        tmp_path,
        security={
            "enabled": True,
            "secret_key": keys / "runtime.key_secret",
            "frames_server_key": keys / "source.key",
            "allowed_clients": allowed_displays,
        },
    )

    def subscriber(name: str) -> zmq.Socket:
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        make_client(sock, keys / f"{name}.key_secret", keys / "runtime.key")
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(server.results_endpoint)
        return sock

    listed, intruder = subscriber("display"), subscriber("intruder")
    screens = phantom_screens(1)
    scanner, liver = screens[(0, "liver")]
    _, kidney = screens[(0, "kidney_liver")]
    try:

        def send_pair() -> None:
            for view, image in (("liver", liver), ("kidney_liver", kidney)):
                header = FrameHeader(
                    1, 0, time.time(), "exam-curve", scanner, view, image.shape[1], image.shape[0], 3, "raw"
                )
                source.send_multipart(encode_frame(header, image))
                time.sleep(0.4)

        got: list[bytes] = []

        def listed_got_result() -> bool:
            send_pair()
            while listed.poll(50):
                got.append(listed.recv_multipart()[0])
            return b"result" in got

        assert wait_for(listed_got_result, timeout=40, step=0.2)
        assert intruder.poll(1500) == 0  # not even a heartbeat reaches an unlisted key
    finally:
        server.stop()
        for sock in (listed, intruder, source):
            sock.close(linger=0)
        source_auth.stop()
        ctx.destroy(linger=0)


def test_grab_serves_frames_only_to_listed_runtimes_with_curve(tmp_path: Path) -> None:
    """`edge-runtime grab` secures its frames like the phantom stream: CURVE server, listed keys only."""
    import subprocess
    import sys

    from edge_runtime.wire.security import create_keypair, make_client

    keys = tmp_path / "keys"
    for name in ("grabber", "runtime", "intruder"):
        create_keypair(keys, name)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "runtime.key").write_bytes((keys / "runtime.key").read_bytes())
    shots = tmp_path / "shots"
    shots.mkdir()
    scanner, screen = phantom_screens(1)[(0, "liver")]
    cv2.imwrite(str(shots / "a.png"), cv2.cvtColor(screen, cv2.COLOR_RGB2BGR))
    endpoint = "tcp://127.0.0.1:5687"
    args = ["--source", str(shots), "--scanner", scanner, "--session", "exam-grab", "--frames", endpoint]
    args += ["--loop", "--fps", "10", "--server-key", str(keys / "grabber.key_secret")]
    args += ["--allowed-clients", str(allowed)]
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "grab", *args], stderr=subprocess.PIPE)
    ctx = zmq.Context()
    socks = {}
    try:
        for name in ("runtime", "intruder"):
            sock = ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.LINGER, 0)
            make_client(sock, keys / f"{name}.key_secret", keys / "grabber.key")
            sock.setsockopt(zmq.SUBSCRIBE, b"frame")
            sock.connect(endpoint)
            socks[name] = sock
        assert socks["runtime"].poll(30_000), "the listed runtime got no frame"
        header = json.loads(socks["runtime"].recv_multipart()[1])
        assert header["session"] == "exam-grab" and header["scanner"] == scanner
        assert header["view"] == "auto"  # no operator key: the bundle's view gate decides
        assert socks["intruder"].poll(1500) == 0
    finally:
        proc.terminate()
        proc.wait(10)
        for sock in socks.values():
            sock.close(linger=0)
        ctx.destroy(linger=0)
