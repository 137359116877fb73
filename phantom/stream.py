"""The phantom scanner live: pre-rendered screens replayed over ZeroMQ as protocol-v1 frames.

Each session is one exam on one phantom subject. Its sonographer holds a view for ``switch_every`` seconds,
then switches to the other view. Every frame differs: speckle decorrelates (a few pre-rendered speckle
realisations) and the B-mode content moves with breathing (a vertical shift of a few pixels). All the
expensive work is done before streaming, so 60 frames/s of 1080p screens is only memory copies.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.schema import PROTOCOL_VERSION, VIEWS, FrameHeader
from edge_runtime.transport import FrameSender
from phantom.render import profile_for, render_view
from phantom.subject import Subject, draw_cohort

BREATH_PERIOD_S = 4.0
BREATH_AMPLITUDE_PX = 6


@dataclass
class StreamSession:
    name: str
    subject: Subject
    screens: dict[str, list[np.ndarray]]  # view -> speckle realisations


def prepare_sessions(n_sessions: int, seed: int, realisations: int = 3, first_subject: int = 0) -> list[StreamSession]:
    """Pre-render every session's screens, so streaming is only memory copies.

    Args:
        n_sessions: how many exams to stream.
        seed: the cohort seed.
        realisations: speckle realisations per view.
        first_subject: index of the first subject used.
    """
    subjects = draw_cohort(max(n_sessions + first_subject, 2), seed)[first_subject : first_subject + n_sessions]
    sessions = []
    for i, subject in enumerate(subjects):
        screens = {v: [render_view(subject, v, seed, frame=k).screen for k in range(realisations)] for v in VIEWS}
        sessions.append(StreamSession(f"exam-{seed:04d}-{i + 1:03d}", subject, screens))
    return sessions


def write_truth(path: Path, sessions: list[StreamSession]) -> None:
    """Session -> the phantom's truth (subject, vendor, PDFF, fatty): what exam answers are scored against."""
    truth = {
        s.name: {
            "subject_id": s.subject.subject_id,
            "vendor": s.subject.vendor,
            "pdff": s.subject.pdff,
            "fatty": s.subject.fatty,
        }
        for s in sessions
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(truth, indent=2))


def breathing_frame(screen: np.ndarray, crop: tuple[int, int, int, int], t: float, out: np.ndarray) -> np.ndarray:
    """Copy the screen into out with the B-mode box shifted vertically by the breathing phase.

    Args:
        screen: the pre-rendered screen.
        crop: the B-mode box that moves.
        t: seconds since the stream started.
        out: the buffer written into (a fresh one per frame).
    """
    np.copyto(out, screen)
    shift = round(BREATH_AMPLITUDE_PX * math.sin(2 * math.pi * t / BREATH_PERIOD_S))
    if shift:
        x, y, w, h = crop
        out[y : y + h, x : x + w] = np.roll(screen[y : y + h, x : x + w], shift, axis=0)
    return out


class PhantomStream:
    def __init__(self, sessions: list[StreamSession], fps: float, switch_every: float, encoding: str = "raw"):
        self.sessions = sessions
        self.fps = fps
        self.switch_every = switch_every
        self.encoding = encoding
        self.seq = 0

    def view_at(self, session_index: int, t: float) -> str:
        """Sessions start on alternating views so every view is seen early; each switches every switch_every s."""
        phase = int(t // self.switch_every) + session_index
        return VIEWS[phase % 2]

    def frame(self, index: int, t: float) -> tuple[FrameHeader, np.ndarray]:
        k = index % len(self.sessions)
        session = self.sessions[k]
        view = self.view_at(k, t)
        realisations = session.screens[view]
        screen = realisations[(index // len(self.sessions)) % len(realisations)]
        profile = profile_for(session.subject)
        # A fresh buffer per frame: ZeroMQ sends without copying, so a buffer must not change after sending.
        image = breathing_frame(screen, profile.crop_box, t, np.empty_like(screen))
        height, width = image.shape[:2]
        header = FrameHeader(
            PROTOCOL_VERSION, self.seq, time.time(), session.name, profile.name, view, width, height, 3, self.encoding
        )
        self.seq += 1
        return header, image

    def run(
        self,
        sender: FrameSender,
        duration: float | None = None,
        count: int | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_frame: Callable[[FrameHeader], None] | None = None,
    ) -> int:
        """Publish at a steady rate (absolute schedule: no drift); returns the number of frames sent.

        Args:
            sender: the bound frame publisher.
            duration: stop after this many seconds.
            count: stop after this many frames.
            should_stop: polled before each frame (signal handlers set it).
            on_frame: called with each header after sending.
        """
        start = time.perf_counter()
        sent = 0
        while not should_stop():
            t = time.perf_counter() - start
            if (duration is not None and t >= duration) or (count is not None and sent >= count):
                break
            header, image = self.frame(sent, t)
            sender.send(header, image)
            if on_frame:
                on_frame(header)
            sent += 1
            delay = start + sent / self.fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        return sent
