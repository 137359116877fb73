"""The display's state and web app without a browser: bounded memory, staleness, access control, bad input."""

from __future__ import annotations

import base64
import time

import pytest
import zmq
from starlette.testclient import TestClient

from edge_runtime.contracts import (
    ExamEstimate,
    FrameRef,
    HeartbeatMessage,
    ModelInfo,
    ResultMessage,
    ThumbnailMessage,
    message_bytes,
)
from edge_runtime.display.app import create_app
from edge_runtime.display.service import Listen, PageFeed, access_token
from edge_runtime.display.state import MAX_SESSIONS, STALE_AFTER_S, TREND_POINTS, DisplayState

MODEL = ModelInfo(name="m", version="1.0.0", sha="0123456789abcdef")


def _result(session: str, ts: float, pdff: float = 7.0) -> ResultMessage:
    return ResultMessage(
        session=session,
        trigger="liver",
        frames={"liver": FrameRef(seq=1, ts=ts), "kidney_liver": FrameRef(seq=2, ts=ts)},
        p_fatty=0.7,
        fatty=True,
        threshold=0.5,
        pdff=pdff,
        model=MODEL,
        latency_ms={"encode": 20.0, "end_to_end": 25.0},
        exam=ExamEstimate(call="fatty", p_fatty=0.8, pdff=pdff, n_pairs=9, calibrated=True, stable_since=ts),
    )


def _heartbeat() -> HeartbeatMessage:
    return HeartbeatMessage(
        ts=time.time(), uptime_s=1.0, model=MODEL, sessions=1, pending=0, calibrated=True, validation="phantom"
    )


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_state_stays_bounded_however_many_exams_and_results_arrive() -> None:
    state = DisplayState()
    for i in range(3 * MAX_SESSIONS):
        state.apply(_result(f"exam-{i}", float(i)))
    for k in range(2 * TREND_POINTS):
        state.apply(_result("exam-busy", float(k)))
    snap = state.snapshot()
    assert len(snap["sessions"]) == MAX_SESSIONS and snap["sessions"][0]["session"] == "exam-busy"
    assert len(snap["sessions"][0]["trend"]) == TREND_POINTS


def test_the_state_turns_stale_when_heartbeats_stop() -> None:
    clock = Clock()
    state = DisplayState(clock)
    assert state.snapshot()["stale"]  # no heartbeat yet
    state.apply(_heartbeat())
    assert not state.snapshot()["stale"]
    clock.t += STALE_AFTER_S + 0.1
    assert state.snapshot()["stale"]


def test_thumbnails_are_served_by_session_and_view_and_bounded_in_size() -> None:
    state = DisplayState()
    jpeg = b"\xff\xd8fake-jpeg\xff\xd9"
    state.apply(_result("exam-1", 1.0))
    state.apply(ThumbnailMessage(session="exam-1", view="liver", seq=1, ts=1.0, jpeg=base64.b64encode(jpeg).decode()))
    client = TestClient(create_app(state, token=None))
    assert client.get("/thumb/exam-1/liver.jpg").content == jpeg
    assert client.get("/thumb/exam-1/kidney_liver.jpg").status_code == 404
    assert state.snapshot()["sessions"][0]["thumbnails"] == {"liver": "/thumb/exam-1/liver.jpg?seq=1"}
    with pytest.raises(ValueError, match="limit"):
        ThumbnailMessage(session="x", view="liver", seq=1, ts=1.0, jpeg=base64.b64encode(b"0" * 30_000).decode())


def test_a_thumbnail_of_any_crop_fits_the_limit_and_decodes() -> None:
    import cv2
    import numpy as np

    from edge_runtime.contracts import MAX_THUMBNAIL_BYTES
    from edge_runtime.sinks.thumbnails import thumbnail_jpeg

    noise = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)  # the hardest to compress
    jpeg = thumbnail_jpeg(noise)
    assert len(jpeg) <= MAX_THUMBNAIL_BYTES
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None


def test_beyond_localhost_every_request_needs_the_token() -> None:
    assert access_token(Listen.parse("127.0.0.1:8080"), None) is None
    token = access_token(Listen.parse("0.0.0.0:8080"), None)
    assert token and len(token) >= 16
    client = TestClient(create_app(DisplayState(), token))
    for path in ("/", "/state", "/static/app.js", "/thumb/a/liver.jpg"):
        assert client.get(path).status_code == 401, path
    assert client.get("/state", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    page = client.get(f"/?token={token}")
    assert page.status_code == 200 and "Research use, not a medical device" in page.text
    assert client.get("/static/style.css").status_code == 200  # the page load set the token cookie
    assert TestClient(create_app(DisplayState(), token)).get("/state?token=wrong-token-123456").status_code == 401


def test_only_the_pages_own_assets_are_served() -> None:
    client = TestClient(create_app(DisplayState(), token=None))
    assert client.get("/static/app.js").status_code == 200
    for path in ("/static/index.html", "/static/..%2F..%2Faudit%2Fresults.jsonl", "/audit/results.jsonl"):
        assert client.get(path).status_code == 404, path


def test_listen_addresses_are_checked() -> None:
    assert Listen.parse("[::1]:9000").loopback and not Listen.parse("10.0.0.5:80").loopback
    for bad in ("8080", "host:", "host:99999"):
        with pytest.raises(Exception, match="HOST:PORT"):
            Listen.parse(bad)


def test_the_feed_skips_malformed_and_keeps_unknown_fields() -> None:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind("tcp://127.0.0.1:*")
    state = DisplayState()
    feed = PageFeed(pub.getsockopt(zmq.LAST_ENDPOINT).decode(), state).start()
    try:
        time.sleep(0.4)  # slow joiner
        pub.send_multipart([b"result", b"{not json"])
        pub.send_multipart([b"result", b'{"session": "x"}'])
        future = message_bytes(_result("exam-new", 1.0))[:-1] + b', "from_the_future": {"a": 1}}'
        pub.send_multipart([b"result", future])
        pub.send_multipart([b"heartbeat", message_bytes(_heartbeat())])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and state.messages < 2:
            time.sleep(0.05)
    finally:
        feed.stop()
        pub.close(linger=0)
        ctx.destroy(linger=0)
    assert feed.malformed == 2 and state.messages == 2
    assert state.snapshot()["sessions"][0]["result"]["from_the_future"] == {"a": 1}


def test_the_terminal_says_indeterminate_plainly_and_what_the_interval_means() -> None:
    from edge_runtime.tools.watch import format_exam

    unsure = ExamEstimate(
        call="indeterminate",
        reason="the model cannot tell at 95 %: p_fatty 0.61",
        p_fatty=0.61,
        pdff=5.4,
        pdff_interval=(2.1, 9.8),
        n_pairs=8,
        calibrated=True,
        class_set=["fatty", "normal"],
        pdff_coverage=0.9,
        definite_error=0.05,
        definite_subjects=90,
    )
    line = format_exam(unsure, now=0.0)
    assert "INDETERMINATE: the model cannot tell" in line and "p_fatty 0.61" in line
    assert "90 % of patients like this one" in line and "[2.1-9.8]" in line
    earned = format_exam(unsure.model_copy(update={"call": "fatty", "class_set": ["fatty"], "reason": None}), 0.0)
    assert "FATTY" in earned and "certified <= 5 % wrong" in earned
