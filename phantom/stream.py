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

from edge_runtime.contracts import AUTO_VIEW, PROTOCOL_VERSION, VIEWS, FrameHeader
from edge_runtime.wire.transport import FrameSender
from phantom.render import profile_for, render_other, render_view
from phantom.subject import Subject, draw_cohort

BREATH_PERIOD_S = 4.0
BREATH_AMPLITUDE_PX = 6


@dataclass
class StreamSession:
    name: str
    subject: Subject
    screens: dict[str, list[np.ndarray]]  # view -> speckle realisations


# A whole exam as a sonographer scans it (shot, seconds): liver, sweep to the kidney, lift the probe, look at
# the gallbladder, come back. Shots that are not views are phantom.other_views kinds.
EXAM_SCRIPT: tuple[tuple[str, float], ...] = (
    ("liver", 6.0),
    ("kidney_liver", 6.0),
    ("air", 2.0),
    ("gallbladder", 3.0),
    ("liver", 4.0),
    ("partial_contact", 1.5),
    ("kidney_liver", 4.0),
)


@dataclass(frozen=True)
class StreamCohort:
    """Who the streamed exams are: the cohort seed, the share of fatty subjects and how their PDFF is spread."""

    seed: int
    prevalence: float = 39 / 90
    pdff_distribution: str = "paper"


def prepare_sessions(
    n_sessions: int,
    seed: int | StreamCohort,
    realisations: int = 3,
    first_subject: int = 0,
    shots: tuple[str, ...] = VIEWS,
) -> list[StreamSession]:
    """Pre-render every session's screens, so streaming is only memory copies.

    Args:
        n_sessions: how many exams to stream.
        seed: the cohort seed, or the whole StreamCohort.
        realisations: speckle realisations per shot.
        first_subject: index of the first subject used.
        shots: the views, plus any other-frame kinds a script shows.
    """
    cohort = seed if isinstance(seed, StreamCohort) else StreamCohort(seed)
    seed = cohort.seed
    drawn = draw_cohort(
        max(n_sessions + first_subject, 2), seed, cohort.prevalence, pdff_distribution=cohort.pdff_distribution
    )
    subjects = drawn[first_subject : first_subject + n_sessions]
    sessions = []
    for i, subject in enumerate(subjects):
        screens = {shot: [render_shot(subject, shot, seed, k) for k in range(realisations)] for shot in shots}
        sessions.append(StreamSession(f"exam-{seed:04d}-{i + 1:03d}", subject, screens))
    return sessions


def render_shot(subject: Subject, shot: str, seed: int, frame: int) -> np.ndarray:
    """One screen of a shot.

    Args:
        subject: the subject.
        shot: a view, or an other-frame kind (phantom.other_views).
        seed: the cohort seed.
        frame: the speckle realisation.
    """
    return (render_view if shot in VIEWS else render_other)(subject, shot, seed, frame=frame).screen


def script_shot(script: tuple[tuple[str, float], ...], t: float) -> str:
    """What the script shows t seconds in (it repeats)."""
    t = t % sum(seconds for _, seconds in script)
    for shot, seconds in script:
        if t < seconds:
            return shot
        t -= seconds
    return script[-1][0]


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
    def __init__(
        self,
        sessions: list[StreamSession],
        fps: float,
        switch_every: float,
        encoding: str = "raw",
        script: tuple[tuple[str, float], ...] | None = None,
        auto: bool = False,
    ):
        """Args:
        sessions: the pre-rendered exams, streamed round-robin.
        fps: frames per second over all sessions.
        switch_every: seconds per view when there is no script.
        encoding: raw, png or jpeg.
        script: an exam script (EXAM_SCRIPT) instead of alternating views; sessions start staggered.
        auto: send view 'auto' (the bedside's view gate decides) instead of the operator's view key.
        """
        self.sessions = sessions
        self.fps = fps
        self.switch_every = switch_every
        self.encoding = encoding
        self.script = script
        self.auto = auto
        self.seqs = [0] * len(sessions)  # per session: the runtime counts a gap in a session's seq as a lost frame
        self.last_truth: dict = {}  # the latest frame's seq, session, what the screen shows, the header's view
        self._named = [VIEWS[k % 2] for k in range(len(sessions))]  # the operator's key, per session

    def view_at(self, session_index: int, t: float) -> str:
        """What the screen shows: the script's shot, or (no script) alternating views, staggered by session."""
        if self.script is not None:
            return script_shot(self.script, t + 5.0 * session_index)
        phase = int(t // self.switch_every) + session_index
        return VIEWS[phase % 2]

    def header_view(self, session_index: int, shot: str) -> str:
        """'auto', or the operator's key: the last view shown (still pressed while the probe is in air)."""
        if shot in VIEWS:
            self._named[session_index] = shot
        return AUTO_VIEW if self.auto else self._named[session_index]

    def frame(self, index: int, t: float) -> tuple[FrameHeader, np.ndarray]:
        k = index % len(self.sessions)
        session = self.sessions[k]
        shot = self.view_at(k, t)
        view = self.header_view(k, shot)
        realisations = session.screens[shot]
        screen = realisations[(index // len(self.sessions)) % len(realisations)]
        profile = profile_for(session.subject)
        # A fresh buffer per frame: ZeroMQ sends without copying, so a buffer must not change after sending.
        image = breathing_frame(screen, profile.crop_box, t, np.empty_like(screen))
        height, width = image.shape[:2]
        header = FrameHeader(
            PROTOCOL_VERSION,
            self.seqs[k],
            time.time(),
            session.name,
            profile.name,
            view,
            width,
            height,
            3,
            self.encoding,
        )
        self.last_truth = {"seq": self.seqs[k], "session": session.name, "shows": shot, "header_view": view}
        self.seqs[k] += 1
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
