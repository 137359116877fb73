"""Whole phantom exams played through the runtime's own pipeline on a simulated clock, every frame's fate kept.

Many exams run at once, interleaved as a box sees them, each for a set time of frame time at a set rate per exam.
The clock is the frames' own (the exam's windows and hysteresis read frame time), and every frame is processed,
so the answers are those of a box that keeps up; a slower box drops stale frames and answers later, not otherwise.
Per frame the suite keeps what the screen showed and what the pipeline did with it (the view it was filed under,
the guard's flag), so gate, guard and exam can be scored together.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import zmq
from tqdm.auto import tqdm

from edge_runtime.config import load_config, merge
from edge_runtime.contracts import ExamRecord, ResultMessage
from edge_runtime.model.bundle import Bundle
from edge_runtime.model.served import ServedModel
from edge_runtime.pipeline.frame import FrameContext
from edge_runtime.scanners.profiles import default_profiles
from edge_runtime.server import EdgeServer
from edge_runtime.sinks.audit import read_final_exams
from phantom.stream import EXAM_SCRIPT, PhantomStream, StreamSession

START = 1_800_000_000.0  # the simulated clock's first frame time (unix s)
WHOLE_EXAM_S = 1e9  # an exam window no replay outlasts


@dataclass
class FrameFate:
    """One frame: what the screen showed, where the pipeline filed it (None: kept out or a repeat), whether the
    guard flagged it, and the counters it moved (why it went no further, when it did not)."""

    seq: int
    shows: str
    filed: str | None
    outside: bool | None
    counted: tuple[str, ...] = ()


@dataclass
class PlayedExam:
    session: StreamSession
    results: list[ResultMessage] = field(default_factory=list)
    frames: list[FrameFate] = field(default_factory=list)
    final: ExamRecord | None = None


def offline_server(bundle: Bundle, audit: Path, tables: dict | None = None) -> EdgeServer:
    """A server that is never started: its pipeline runs frames handed to it (audit log in ``audit``)."""
    config = load_config(None, {"audit": {"log": audit}, **(tables or {})})
    profiles = {**default_profiles()}
    return EdgeServer(config, ServedModel.prepared(bundle, profiles, config), zmq.Context())


def play_exams(
    bundle: Bundle, sessions: list[StreamSession], seconds: float, fps_per_exam: float, tables: dict | None = None
) -> dict[str, PlayedExam]:
    """Every session an exam of ``seconds`` frame time with view 'auto', all at once; each exam's results, frames
    and the final record the runtime wrote when the exams ended.

    Args:
        bundle: the bundle to serve.
        sessions: the pre-rendered exams (phantom.stream.prepare_sessions with the script's shots).
        seconds: frame time per exam.
        fps_per_exam: frames per second of frame time, per exam.
        tables: edge.toml tables to change (e.g. {"exam": {"min_pairs": 3}}).
    """
    played = {s.name: PlayedExam(s) for s in sessions}
    # The exam's window runs on the box's own clock; a replay slower than frame time would otherwise keep only each
    # exam's last pairs. Every pair of the played time counts (up to window_pairs), as on a box that keeps up.
    tables = merge({"exam": {"window_s": WHOLE_EXAM_S}}, tables or {})
    rate = fps_per_exam * len(sessions)
    stream = PhantomStream(sessions, rate, 1.0, script=EXAM_SCRIPT, auto=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = offline_server(bundle, Path(tmp) / "audit.jsonl", tables)
        for i in tqdm(range(int(seconds * rate)), desc="playing exams", unit="frame", mininterval=5):
            header, image = stream.frame(i, i / rate)
            header = replace(header, ts=START + i / rate)
            frame = FrameContext(header, image, time.time())
            before = dict(server.stats.counters)
            result = server.pipeline.run(frame)
            counted = tuple(k for k, n in server.stats.counters.items() if n != before.get(k, 0))
            exam = played[header.session]
            outside = frame.kept.outside if frame.kept is not None else None
            exam.frames.append(FrameFate(header.seq, stream.last_truth["shows"], frame.view, outside, counted))
            if result is not None:
                exam.results.append(result)
        server.pipeline.end_exams(ending="shutdown")
        server.bedside.audit.close()
        for record in read_final_exams(server.config.audit.log):
            played[record["session"]].final = ExamRecord.model_validate(record)
    return played
