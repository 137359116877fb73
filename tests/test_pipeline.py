"""The declared pipeline: its stages in order, every drop counted by its declared reason, and, for the same frames
in the same order, the same per-pair answers and counters as the runtime before it (the exam answer changed on
purpose since: it is compared in tests/test_exam.py)."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import breathed, frame_context, offline_server

from edge_runtime.contracts import AUTO_VIEW, PIPELINE_STAGES, TOPIC_FRAME, Count, FrameHeader, Reject, Stage
from edge_runtime.wire.protocol import encode_frame
from phantom.render import profile_for, render_other, render_view
from phantom.subject import draw_cohort

ROOT = Path(__file__).resolve().parents[1]
BEFORE_PIPELINE = "42df79d"  # the last commit whose runtime was one server class
pytestmark = pytest.mark.slow


def _message(seq: int, session: str, view: str, scanner: str, image: np.ndarray, encoding: str = "raw") -> list:
    header = FrameHeader(1, seq, 5000.0 + 0.5 * seq, session, scanner, view, *image.shape[1::-1], 3, encoding)
    return [bytes(part) for part in encode_frame(header, image)]


def _exam_frames() -> list[list[bytes]]:
    """Two live exams (one with named views, one 'auto' with other shots between), a frozen screen, and frames
    every stage refuses: malformed messages, an unknown scanner, a wrong size, a blank box, colour flow."""
    subjects = draw_cohort(2, 31)
    shots = {}
    for s in subjects:
        shots[s.index] = {v: render_view(s, v, 31).screen for v in ("liver", "kidney_liver")}
        shots[s.index] |= {k: render_other(s, k, 31).screen for k in ("air", "doppler")}
    scanners = {s.index: profile_for(s).name for s in subjects}
    messages, seq = [], 0
    for k in range(14):  # exam a: named views, breathing
        for view in ("liver", "kidney_liver"):
            messages.append(_message(seq, "exam-a", view, scanners[0], breathed(shots[0][view], k)))
            seq += 1
    for k in range(10):  # exam b: no view key; air and Doppler between the views
        for shot in ("liver", "air", "kidney_liver", "doppler") if k % 3 == 0 else ("liver", "kidney_liver"):
            messages.append(_message(seq, "exam-b", AUTO_VIEW, scanners[1], breathed(shots[1][shot], k)))
            seq += 1
    frozen = shots[0]["liver"]
    messages += [_message(seq + i, "exam-a", "liver", scanners[0], frozen) for i in range(2)]  # repeats
    seq += 2
    blank = np.zeros_like(frozen)
    messages += [
        _message(seq, "exam-a", "liver", scanners[0], blank),
        _message(seq + 1, "exam-a", "liver", "no-such-scanner", frozen),
        _message(seq + 2, "exam-a", "liver", scanners[0], frozen[:-2]),
        [*_message(seq + 3, "exam-a", "kidney_liver", scanners[0], frozen, encoding="png")[:2], b"\x89PNG garbage"],
        [TOPIC_FRAME, b"{not json", b""],
        [TOPIC_FRAME],
    ]
    return messages


def _transcript(bundle: Path, frames: Path, out: Path, pythonpath: Path | None = None) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(out.parent)}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    command = [sys.executable, str(ROOT / "tests" / "replay_runtime.py"), str(bundle), str(frames), str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def _runtime_before_pipeline(tmp_path: Path) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the repository's git history (a fresh clone has it)")
    known = subprocess.run(["git", "cat-file", "-e", f"{BEFORE_PIPELINE}^{{commit}}"], cwd=ROOT, capture_output=True)
    if known.returncode != 0:
        pytest.skip(f"commit {BEFORE_PIPELINE} is not in this clone's history (a shallow clone?)")
    old = tmp_path / "before"
    old.mkdir()
    archive = subprocess.run(["git", "archive", BEFORE_PIPELINE, "edge_runtime"], cwd=ROOT, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    return old


def _single_head(bundle_dir: Path, tmp_path: Path) -> Path:
    """The bundle with its first head only: the answer the runtime before the ensemble gave."""
    copy = tmp_path / "single-head"
    shutil.copytree(bundle_dir, copy)
    meta = json.loads((copy / "bundle.json").read_text())
    meta.pop("ensemble", None)
    (copy / "bundle.json").write_text(json.dumps(meta))
    return copy


def _per_pair(results: list) -> list:
    """What a result says about its pair, without the exam and the HRI (a PDFF below 0 reads as 0 now)."""
    out = []
    for r in results:
        if r is not None:
            r = {k: v for k, v in r.items() if k not in ("exam", "hri")} | {"pdff": round(max(r["pdff"], 0.0), 4)}
        out.append(r)
    return out


def test_the_same_frames_give_the_same_answers_as_the_runtime_before_the_pipeline(
    bundle_dir: Path, tmp_path: Path
) -> None:
    old = _runtime_before_pipeline(tmp_path)
    frames = tmp_path / "frames.pickle"
    frames.write_bytes(pickle.dumps(_exam_frames(), protocol=5))
    single = _single_head(bundle_dir, tmp_path)
    now = _transcript(single, frames, tmp_path / "now.json")
    before = _transcript(single, frames, tmp_path / "before.json", pythonpath=old)
    assert Path(before["runtime"]).is_relative_to(old) and Path(now["runtime"]) == ROOT / "edge_runtime"
    assert sum(r is not None for r in now["results"]) >= 10, "the replay should make results"
    assert _per_pair(now["results"]) == _per_pair(before["results"])
    assert now["rejected"] == before["rejected"]
    assert {k: v for k, v in now["counters"].items() if k in before["counters"]} == before["counters"]
    new = set(now["counters"]) - set(before["counters"])  # counted now, not then
    assert {c for c in new if not c.startswith("hri_")} <= {Count.FRAMES_AWAITING_PAIR}
    assert set(now["rejected"]) >= {"unknown_scanner", "size_mismatch", "blank", "decode_failed", "bad_json"}


def test_the_stages_run_in_their_declared_order_and_each_is_timed(bundle_dir: Path, tmp_path: Path) -> None:
    server = offline_server(bundle_dir, tmp_path)
    assert server.pipeline.stage_names == list(PIPELINE_STAGES)
    subject = draw_cohort(1, 5)[0]
    scanner = profile_for(subject).name
    server.pipeline.run(frame_context("liver", 1, render_view(subject, "liver", 5).screen, scanner))
    result = server.pipeline.run(
        frame_context("kidney_liver", 2, render_view(subject, "kidney_liver", 5).screen, scanner)
    )
    assert list(result.latency_ms) == [Stage.QUEUE, *PIPELINE_STAGES]
    latency = server.stats.snapshot()["latency_ms"]
    assert list(latency) == list(map(str, Stage))  # one window per declared stage, in order
    assert all(latency[stage]["count"] == 2 for stage in PIPELINE_STAGES[:-2])
    assert server.stats.counters[Count.FRAMES_AWAITING_PAIR] == 1  # the first frame waited for its pair
    server.bedside.audit.close()


def test_a_frame_that_is_not_an_image_is_dropped_with_its_reason_and_serving_goes_on(
    bundle_dir: Path, tmp_path: Path
) -> None:
    server = offline_server(bundle_dir, tmp_path)
    subject = draw_cohort(1, 5)[0]
    screen, scanner = render_view(subject, "liver", 5).screen, profile_for(subject).name
    assert server.pipeline.run(frame_context("liver", 1, np.zeros_like(screen), scanner)) is None
    broken = frame_context("liver", 2, screen, scanner)
    broken.payload = b"short"  # a payload the decoder cannot shape: a bug upstream, not a crash here
    assert server.pipeline.run(broken) is None
    assert server.stats.snapshot()["rejected"] == {Reject.BLANK: 1}
    assert server.stats.counters[Count.INFERENCE_ERRORS] == 1
    stages = server.telemetry.supervisor.health().parts["stages"]
    assert stages.errors == 1 and "stage decode" in stages.last_error and "ValueError" in stages.last_error
    assert server.pipeline.run(frame_context("liver", 3, screen, scanner)) is None  # filed, awaiting its pair
    assert server.bedside.worker.sessions.get("s").views.keys() == {"liver"}
    server.bedside.audit.close()


def test_a_wall_clock_jump_of_an_hour_ends_no_exam(bundle_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Session TTLs run on the monotonic clock: NTP stepping the wall clock an hour on (TTL 15 min) keeps the exam."""
    import time

    from helpers import phantom_screens

    server = offline_server(bundle_dir, tmp_path)
    screens = phantom_screens(1)
    for seq, view in enumerate(("liver", "kidney_liver")):
        scanner, screen = screens[(0, view)]
        server.pipeline.run(frame_context(view, seq, screen, scanner, session="exam-1"))
    assert len(server.bedside.worker.sessions) == 1
    wall = time.time
    monkeypatch.setattr(time, "time", lambda: wall() + 3600)
    assert server.pipeline.end_exams() == 0 and len(server.bedside.worker.sessions) == 1, "the jump ended the exam"
    server.bedside.audit.close()
