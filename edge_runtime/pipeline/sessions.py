"""Two pieces of bounded state: the newest unprocessed frame per (session, view), and per-session features.

Latest-frame semantics (ZeroMQ CONFLATE does not work with multipart messages): a newer frame of the same
(session, view) replaces the pending one, which is counted as dropped-stale. Sessions expire after a TTL
and the number of sessions is capped (least recently seen goes first), so memory stays bounded under any
input rate and any number of exams.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from edge_runtime.config import RuntimeConfig
from edge_runtime.contracts import VIEWS, FrameHeader
from edge_runtime.pipeline.exam import ExamModel, ExamTracker, study_policy


class Queued(Protocol):
    """What waits for the worker: anything with a frame header (the pipeline's FrameContext)."""

    header: FrameHeader


class LatestFrames:
    """What waits for the worker, in two lanes. Live frames: the newest unprocessed one per (session, view), bounded;
    a newer one replaces it. Stored frames (DICOM images and cine loops): every one, in order, in a bounded lane
    whose writer waits for room, so a scanner's store waits for the pipeline instead of losing frames. The worker
    takes from the lanes in turn, the oldest first in each."""

    def __init__(self, max_keys: int, max_stored: int = 64):
        self._frames: OrderedDict[tuple[str, str], Queued] = OrderedDict()
        self._stored: deque[Queued] = deque()
        self._cond = threading.Condition()
        self.max_keys, self.max_stored = max_keys, max_stored
        self._closed = False
        self._stored_turn = False

    def put(self, frame: Queued) -> str | None:
        """Store; returns the drop reason of the frame it displaced ('stale' or 'overflow'), if any."""
        key = (frame.header.session, frame.header.view)
        dropped = None
        with self._cond:
            if key in self._frames:
                del self._frames[key]
                dropped = "stale"
            elif len(self._frames) >= self.max_keys:
                self._frames.popitem(last=False)
                dropped = "overflow"
            self._frames[key] = frame  # newest at the end; the worker takes the oldest key first (fairness)
            self._cond.notify_all()
        return dropped

    def put_stored(self, frames: list[Queued], timeout: float) -> int:
        """Queue a stored image's frames, each to be processed, waiting up to ``timeout`` in all for room; returns
        how many were queued (fewer when the lane stayed full or the queue closed)."""
        deadline = time.monotonic() + timeout
        queued = 0
        with self._cond:
            for frame in frames:
                while len(self._stored) >= self.max_stored and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return queued
                    self._cond.wait(left)
                if self._closed:
                    return queued
                self._stored.append(frame)
                queued += 1
                self._cond.notify_all()
        return queued

    def take(self, timeout: float) -> Queued | None:
        with self._cond:
            if not self._frames and not self._stored and not self._closed:
                self._cond.wait(timeout)
            self._stored_turn = not self._stored_turn
            if self._stored and (self._stored_turn or not self._frames):
                frame = self._stored.popleft()
                self._cond.notify_all()  # a waiting store may go on
                return frame
            if not self._frames:
                return None
            _, frame = self._frames.popitem(last=False)
            return frame

    def stored_sessions(self) -> set[str]:
        """Sessions with stored frames still waiting: their study is not idle, whatever the clock says."""
        with self._cond:
            return {frame.header.session for frame in self._stored}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames) + len(self._stored)


@dataclass
class ViewFeatures:
    features: np.ndarray
    seq: int
    ts: float
    crop: np.ndarray | None = None  # the model input, kept only when the runtime sends thumbnails (JPEG on send)
    view_confidence: float | None = None  # the view gate's confidence in the view these features are filed under
    outside: bool | None = None  # beyond the bundle's guard threshold (None: the bundle has no guard)
    fingerprint: np.ndarray | None = None  # frame_fingerprint of the model input: tells a frozen screen's repeats


FINGERPRINT_SIZE = 56  # the model input averaged over 4 x 4 pixels: capture noise averages out, speckle does not
CHANNEL_MEAN = np.full((1, 3), 1 / 3, np.float32)  # cv2.transform's matrix: RGB -> their mean


def frame_fingerprint(tensor: np.ndarray) -> np.ndarray:
    """A small grey picture of a model input, to tell a repeat of the same image (a frozen screen, resent)
    from a new live frame: live speckle decorrelates between frames, a frozen screen differs by noise only."""
    small = cv2.resize(tensor, (FINGERPRINT_SIZE, FINGERPRINT_SIZE), interpolation=cv2.INTER_AREA)
    return cv2.transform(small.astype(np.float32), CHANNEL_MEAN).ravel()  # numpy's mean over axis 2: 20x slower


def same_image(a: np.ndarray, b: np.ndarray, min_correlation: float) -> bool:
    """Whether two fingerprints show one image: correlation at or above ``min_correlation``. Correlation, not a
    grey-level difference, because harmonisation rescales a frozen frame when grabber noise moves its median."""
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return norm > 0 and float(np.dot(a, b)) / norm >= min_correlation


@dataclass(frozen=True)
class StudyOrigin:
    """Where a frame stored over DICOM came from: its study is its session (edge_runtime.sources.dicom)."""

    study: str  # StudyInstanceUID
    series: str  # SeriesInstanceUID
    instance: str  # SOPInstanceUID
    frame: int  # the frame of a cine loop (0 for one image)
    region: int | None  # the tissue region of a dual or quad display (None: the whole image)


@dataclass(frozen=True)
class StudyTerms:
    """How a DICOM study's session differs from a live one: it ends when no image has come for ``idle_s``, its
    views pair however far apart they were stored, and its exam follows the study policy (``new_exam``)."""

    idle_s: float
    new_exam: Callable[[], ExamTracker]


@dataclass
class StudyTrack:
    """What one study's exam saw: every instance that reached the pipeline and those whose frames were filed."""

    study: str
    received: set[str] = field(default_factory=set)
    contributed: dict[str, set[str]] = field(default_factory=dict)  # series -> instances with a filed frame


@dataclass
class Session:
    exam: ExamTracker
    views: dict[str, ViewFeatures] = field(default_factory=dict)
    last_seen: float = 0.0  # time.monotonic(): a wall-clock jump never ends an exam
    thumbnails_sent: float = -math.inf  # when this session's thumbnails last went out (monotonic)
    study: StudyTrack | None = None  # a DICOM study's session: ends when idle, pairs across the whole study


class SessionStore:
    def __init__(
        self,
        ttl_s: float,
        max_sessions: int,
        pairing_window_s: float,
        new_exam: Callable[[], ExamTracker],
        study: StudyTerms | None = None,
        waiting: Callable[[], set[str]] = set,
    ):
        """Args:
        ttl_s: a live session with no new frame for this long ends.
        max_sessions: sessions kept at once; the least recently seen ends first.
        pairing_window_s: a live session's views pair only when captured this close in time.
        new_exam: a live session's exam.
        study: a DICOM study's terms (None: this box takes no DICOM).
        waiting: the sessions whose stored frames still wait for the worker (never idle while they do).
        """
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self.pairing_window_s = pairing_window_s
        self.new_exam = new_exam
        self.study, self.waiting = study, waiting
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self.expired = 0
        self.ended: list[tuple[str, Session, str]] = []  # (name, session, why) not yet recorded as final exams

    @classmethod
    def configured(
        cls, config: RuntimeConfig, exam_model: Callable[[], ExamModel], waiting: Callable[[], set[str]] = set
    ) -> SessionStore:
        """The store ``[runtime.sessions]``, ``[runtime.exam]`` and ``[runtime.dicom]`` describe; ``exam_model`` gives
        the served model's exam statements when a session starts (a model update changes them); ``waiting`` the
        sessions whose stored frames are still queued."""
        live, study = config.exam, study_policy(config.exam)
        terms = StudyTerms(config.dicom.study_idle_s, lambda: ExamTracker(study, exam_model()))
        s = config.sessions
        return cls(s.ttl_s, s.max_active, s.pairing_window_s, lambda: ExamTracker(live, exam_model()), terms, waiting)

    def _enter(self, session: str, now: float, origin: StudyOrigin | None) -> Session:
        """The session, created when new, moved to the most recently seen end; the cap ends the oldest."""
        self.expire(now)
        state = self._sessions.pop(session, None)
        if state is None and origin is not None and self.study is not None:
            state = Session(self.study.new_exam(), study=StudyTrack(origin.study))
        state = state or Session(self.new_exam())
        state.last_seen = now
        self._sessions[session] = state
        while len(self._sessions) > self.max_sessions:
            self.ended.append((*self._sessions.popitem(last=False), "capacity"))
            self.expired += 1
        return state

    def arrived(self, session: str, origin: StudyOrigin, now: float) -> None:
        """A stored image's frame reached the pipeline: its study's exam exists from now on (and records it), so a
        study whose frames show neither view still ends with a final record."""
        state = self._enter(session, now, origin)
        if state.study is not None:
            state.study.received.add(origin.instance)

    def update(
        self,
        session: str,
        view: str,
        features: ViewFeatures,
        now: float | None = None,
        origin: StudyOrigin | None = None,
    ) -> dict | None:
        """Store a view's features; returns both views' features when the session is paired within the window.

        Args:
            session: the exam id.
            view: which view the features are of.
            features: the view's features with its frame's seq and capture time.
            now: the monotonic time (tests pass it; default: time.monotonic()).
            origin: the stored image the frame came from (DICOM), or None for a live frame.
        """
        now = time.monotonic() if now is None else now
        state = self._enter(session, now, origin)
        state.views[view] = features
        state.exam.saw(view)
        if state.study is not None and origin is not None:
            state.study.contributed.setdefault(origin.series, set()).add(origin.instance)
        other = next(v for v in VIEWS if v != view)
        if other not in state.views:
            return None
        if state.study is not None or abs(state.views[other].ts - features.ts) <= self.pairing_window_s:
            return dict(state.views)
        return None

    def repeats(self, session: str, view: str, fingerprint: np.ndarray, min_correlation: float, now: float) -> bool:
        """Whether a frame repeats the session's last kept frame of its view (same_image). A repeat keeps the
        session alive but is not paired again: a frozen screen sent for a minute is one image, not 1800 votes
        in the exam.

        Args:
            session: the exam id.
            view: the view the frame would be filed under.
            fingerprint: frame_fingerprint of its model input.
            min_correlation: fingerprints correlated at least this much are one image; above 1 turns this off.
            now: the current time.
        """
        state = self._sessions.get(session)
        last = state.views.get(view) if state else None
        if last is None or last.fingerprint is None or not same_image(last.fingerprint, fingerprint, min_correlation):
            return False
        state.last_seen = now
        return True

    def expire(self, now: float) -> None:
        """End every session idle past its time: a live one's TTL, a study's idle time."""
        busy = self.waiting() if self.study is not None else set()
        idle = [n for n, state in self._sessions.items() if now - state.last_seen > self._ttl(state) and n not in busy]
        for name in idle:
            self.ended.append((name, self._sessions.pop(name), "ttl"))
            self.expired += 1

    def _ttl(self, state: Session) -> float:
        return self.study.idle_s if state.study is not None and self.study is not None else self.ttl_s

    def end_all(self, why: str) -> None:
        """End every active session now (shutdown, a new model): each gets its final exam record."""
        self.ended += [(name, state, why) for name, state in self._sessions.items()]
        self._sessions.clear()

    def take_ended(self) -> list[tuple[str, Session, str]]:
        """Sessions that ended (TTL or cap) since the last call; the server writes their final exam records."""
        ended, self.ended = self.ended, []
        return ended

    def get(self, session: str) -> Session | None:
        return self._sessions.get(session)

    def active(self) -> list[tuple[str, Session]]:
        return list(self._sessions.items())

    def __len__(self) -> int:
        return len(self._sessions)
