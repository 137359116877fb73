"""Edge runtime building blocks: protocol validation, latest-frame store, session pairing, audit log, config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.config import ExamPolicy, load_config
from edge_runtime.contracts import FrameHeader
from edge_runtime.errors import ConfigError
from edge_runtime.pipeline.exam import ExamModel, ExamTracker
from edge_runtime.pipeline.frame import FrameContext
from edge_runtime.pipeline.queue import FrameQueue
from edge_runtime.pipeline.sessions import SessionStore, ViewFeatures
from edge_runtime.sinks.audit import AuditLog, read_audit
from edge_runtime.wire.protocol import ProtocolError, check_payload, decode_payload, encode_frame, parse_header

ROOT = Path(__file__).resolve().parents[1]


def _header(**changes) -> dict:
    base = {
        "v": 1,
        "seq": 1,
        "ts": 1.0,
        "session": "exam-1",
        "scanner": "phantom-ge",
        "view": "liver",
        "width": 1680,
        "height": 1050,
        "channels": 3,
        "encoding": "raw",
    }
    base.update(changes)
    return base


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"v": 2}, "bad_version"),
        ({"view": "spleen"}, "unknown_view"),
        ({"seq": "1"}, "bad_field_type"),
        ({"ts": True}, "bad_field_type"),
        ({"width": 100_000}, "bad_dimensions"),
        ({"channels": 4}, "bad_dimensions"),
        ({"encoding": "webp"}, "bad_encoding"),
        ({"session": "Jane Doe"}, "bad_session"),
        ({"scanner": "acme"}, "unknown_scanner"),
    ],
)
def test_header_validation_names_the_reason(changes: dict, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_header(json.dumps(_header(**changes)).encode(), {"phantom-ge"})
    assert info.value.reason == reason


def test_header_structure_errors() -> None:
    for raw, reason in [
        (b"{", "bad_json"),
        (b"[1]", "bad_json"),
        (b"x" * 5000, "header_too_large"),
        (json.dumps({k: v for k, v in _header().items() if k != "ts"}).encode(), "missing_field"),
    ]:
        with pytest.raises(ProtocolError) as info:
            parse_header(raw)
        assert info.value.reason == reason


def test_payload_checks_and_round_trip() -> None:
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for encoding in ("raw", "png"):
        header = FrameHeader(1, 0, 0.0, "s", "x", "liver", 30, 20, 3, encoding)
        parts = encode_frame(header, image)
        check_payload(header, len(parts[2]))
        assert np.array_equal(decode_payload(header, parts[2]), image)
    raw = FrameHeader(1, 0, 0.0, "s", "x", "liver", 30, 20, 3, "raw")
    with pytest.raises(ProtocolError, match="payload_size"):
        check_payload(raw, 30 * 20 * 3 - 1)
    png = FrameHeader(1, 0, 0.0, "s", "x", "liver", 30, 20, 3, "png")
    with pytest.raises(ProtocolError, match="decode_failed"):
        decode_payload(png, b"\x89PNG\r\n\x1a\n garbage")
    wrong = FrameHeader(1, 0, 0.0, "s", "x", "liver", 31, 20, 3, "png")
    with pytest.raises(ProtocolError, match="decoded_size"):
        decode_payload(wrong, encode_frame(png, image)[2])


def _pending(session: str, view: str, seq: int) -> FrameContext:
    return FrameContext(FrameHeader(1, seq, 0.0, session, "x", view, 16, 16, 1, "raw"), b"", 0.0)


def test_latest_frame_store_keeps_the_newest_and_counts_drops() -> None:
    store = FrameQueue(max_keys=2)
    assert store.put(_pending("a", "liver", 1)) is None
    assert store.put(_pending("a", "liver", 2)) == "stale"
    assert store.put(_pending("b", "liver", 3)) is None
    assert store.put(_pending("c", "liver", 4)) == "overflow"  # bounded: the oldest key goes
    assert len(store) == 2
    taken = [store.take(0.01).header.seq for _ in range(2)]
    assert taken == [3, 4] and store.take(0.01) is None


def test_sessions_pair_within_the_window_and_stay_bounded() -> None:
    store = SessionStore(
        ttl_s=100, max_sessions=3, pairing_window_s=10, new_exam=lambda: ExamTracker(ExamPolicy(), ExamModel(0.5))
    )
    f = np.zeros(4, np.float32)
    assert store.update("a", "liver", ViewFeatures(f, 1, ts=0.0), now=0.0) is None
    paired = store.update("a", "kidney_liver", ViewFeatures(f, 2, ts=5.0), now=5.0)
    assert paired is not None and paired["liver"].seq == 1 and paired["kidney_liver"].seq == 2
    assert store.update("a", "liver", ViewFeatures(f, 3, ts=20.0), now=20.0) is None  # other view too old
    for name in "bcde":
        store.update(name, "liver", ViewFeatures(f, 0, ts=21.0), now=21.0)
    assert len(store) == 3
    store.expire(now=500.0)
    assert len(store) == 0 and store.expired >= 5
    ended = store.take_ended()
    assert {e.why for e in ended} == {"capacity", "ttl"} and store.take_ended() == []


def test_a_frame_outside_training_does_not_flag_the_pairs_after_it() -> None:
    """A sweep's transition the gate files as a view and the guard flags is paired once, flagged; the other view's
    next frames pair with the view's last guard-clean frame, not with it (a 28 % liver's exam lost its call to
    three such frames, each spoiling the pairs until its view was shown again)."""
    store = SessionStore(10, 3, 10, lambda: ExamTracker(ExamPolicy(), ExamModel(0.5)))
    f = np.zeros(4, np.float32)
    store.update("a", "kidney_liver", ViewFeatures(f, 1, ts=0.0, outside=False), now=0.0)
    flagged = store.update("a", "kidney_liver", ViewFeatures(f, 2, ts=1.0, outside=True), now=1.0)
    assert flagged is None  # no liver frame yet
    paired = store.update("a", "liver", ViewFeatures(f, 3, ts=2.0, outside=False), now=2.0)
    assert paired["kidney_liver"].seq == 1 and not paired["kidney_liver"].outside
    flagged = store.update("a", "kidney_liver", ViewFeatures(f, 4, ts=3.0, outside=True), now=3.0)
    assert flagged["kidney_liver"].seq == 4  # the flagged frame's own pair says it is outside
    assert store.update("a", "liver", ViewFeatures(f, 5, ts=4.0, outside=False), now=4.0)["kidney_liver"].seq == 1
    store.update("a", "kidney_liver", ViewFeatures(f, 6, ts=20.0, outside=True), now=20.0)  # the clean one is stale
    assert store.update("a", "liver", ViewFeatures(f, 7, ts=21.0), now=21.0)["kidney_liver"].seq == 6


def test_a_view_whose_every_frame_is_flagged_still_pairs_its_newest() -> None:
    """A console the bundle never saw: every frame flagged, the pairs keep coming and the exam says so."""
    store = SessionStore(10, 3, 10, lambda: ExamTracker(ExamPolicy(), ExamModel(0.5)))
    f = np.zeros(4, np.float32)
    for seq, view in enumerate(("kidney_liver", "liver", "kidney_liver", "liver")):
        paired = store.update("a", view, ViewFeatures(f, seq, ts=float(seq), outside=True), now=float(seq))
    assert paired["kidney_liver"].seq == 2 and paired["liver"].seq == 3


def test_a_study_pairs_across_the_study_and_ends_only_when_idle_with_nothing_waiting() -> None:
    """A stored study's views pair however far apart they were stored; it ends after its idle time, but never while
    frames of it still wait for the worker (a slow pipeline must not split one study into two exams)."""
    from edge_runtime.pipeline.studies import StudyOrigin, StudyTerms

    waiting: set[str] = {"1.2.3"}
    new_exam = lambda: ExamTracker(ExamPolicy(), ExamModel(0.5))  # noqa: E731
    store = SessionStore(100, 8, 10, new_exam, StudyTerms(idle_s=5, new_exam=new_exam), lambda: waiting)
    f, origin = np.zeros(4, np.float32), StudyOrigin("1.2.3", "1.2.3.1", "1.2.3.1.1", 0, None)
    store.arrived("1.2.3", origin, now=0.0)
    assert store.update("1.2.3", "liver", ViewFeatures(f, 0, ts=0.0), now=0.0, origin=origin) is None
    paired = store.update("1.2.3", "kidney_liver", ViewFeatures(f, 1, ts=400.0), now=1.0, origin=origin)
    assert paired is not None  # 400 s apart: a live session would not pair them
    store.expire(now=60.0)
    assert len(store) == 1  # idle by the clock, but frames of the study still wait
    waiting.clear()
    store.expire(now=60.0)
    (ended,) = store.take_ended()
    assert ended.name == "1.2.3" and ended.why == "ttl" and set(ended.session.study.received) == {"1.2.3.1.1"}


def test_audit_log_appends_flushes_and_rotates(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "results.jsonl", max_bytes=2048, backups=3)
    for i in range(60):
        log.append({"i": i, "pad": "x" * 40})
    log.close()
    assert (tmp_path / "results.jsonl.1").exists() and not (tmp_path / "results.jsonl.4").exists()
    records = read_audit(tmp_path / "results.jsonl")
    kept = [r["i"] for r in records if "i" in r]
    assert kept == sorted(kept) and kept[-1] == 59  # oldest rotated away, order preserved, nothing torn
    retention = [r for r in records if r.get("record") == "retention"]
    assert log.retired >= 1 and retention, "a deletion by retention is counted and noted in the log"
    assert retention[-1]["deleted"] == "results.jsonl.3" and retention[-1]["records"] > 0


def test_config_validation(tmp_path: Path) -> None:
    example = load_config(ROOT / "deploy" / "edge.example.toml")
    assert example.sessions.pairing_window_s == 300 and example.transport.frames.startswith("tcp://")
    assert example.exam.hold_updates == 5 and example.exam.window_pairs == 30
    assert example.display.listen == "127.0.0.1:8080" and example.thumbnails.enabled is False
    (tmp_path / "exam.toml").write_text("[runtime.exam]\ntrim = 0.6\n")
    with pytest.raises(ConfigError, match=r"exam\.trim"):
        load_config(tmp_path / "exam.toml")
    (tmp_path / "typo.toml").write_text("[runtime.sessions]\npairing_windw_s = 3\n")
    with pytest.raises(ConfigError, match="pairing_windw_s"):
        load_config(tmp_path / "typo.toml")
    (tmp_path / "bad.toml").write_text('[runtime.transport]\nframes = "localhost"\n[runtime.model]\nthreads = 0\n')
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "bad.toml")
    assert "transport.frames" in str(info.value) and "model.threads" in str(info.value)
    overrides = {"model": {"threads": 4}, "transport": {"results": None}}  # flags override, None = not given
    assert load_config(None, overrides).model.threads == 4
