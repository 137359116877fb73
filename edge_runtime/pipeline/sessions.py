"""The exams in progress: each session's latest features per view, its exam and, for a DICOM study, its track.

Sessions expire after a TTL (a study: when idle) and their number is capped (least recently seen goes first), so
memory stays bounded under any input rate and any number of exams. The worker thread owns the store; other threads
read the ``snapshot`` it publishes after each change.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge_runtime.config import RuntimeConfig
from edge_runtime.contracts import VIEWS, ExamEnd, ExamEstimate, HriReading
from edge_runtime.pipeline.exam import ExamModel, ExamTracker, study_policy
from edge_runtime.pipeline.repeats import same_image
from edge_runtime.pipeline.studies import StudyOrigin, StudyTerms, StudyTrack

KEPT_LEVELS = 200  # the filed frames' display levels an exam keeps for its record (the latest)


@dataclass
class ViewFeatures:
    features: np.ndarray
    seq: int
    ts: float
    crop: np.ndarray | None = None  # the model input, kept only when the runtime sends thumbnails (JPEG on send)
    view_confidence: float | None = None  # the view gate's confidence in the view these features are filed under
    outside: bool | None = None  # beyond the bundle's guard threshold (None: the bundle has no guard)
    fingerprint: np.ndarray | None = None  # frame_fingerprint of the model input: tells a frozen screen's repeats
    hri: HriReading | None = None  # a kidney-liver frame's hepatorenal index, when measured
    level: float | None = None  # the frame's median echo as displayed, before harmonisation
    guard_score: float | None = None  # how far from training (above GUARD_LIMIT: outside; None: no guard)


@dataclass
class Session:
    """One exam in progress."""

    exam: ExamTracker
    views: dict[str, ViewFeatures] = field(default_factory=dict)  # each view's frame the other view pairs with
    fingerprints: dict[str, np.ndarray | None] = field(default_factory=dict)  # each view's newest frame, for repeats
    last_seen: float = 0.0  # time.monotonic(): a wall-clock jump never ends an exam
    thumbnails_sent: float = -math.inf  # when this session's thumbnails last went out (monotonic)
    study: StudyTrack | None = None  # a DICOM study's session: ends when idle, pairs across the whole study
    scanner: str | None = None  # the scanner profile of the last frame filed
    filed: int = 0  # frames filed as a view
    flagged: int = 0  # of them, flagged by the guard
    levels: deque[float] = field(default_factory=lambda: deque(maxlen=KEPT_LEVELS))  # filed frames' display levels


def displaces(kept: ViewFeatures | None, new: ViewFeatures, window_s: float) -> bool:
    """Whether a new frame replaces the session's frame of its view for the other view's later pairs: always,
    unless the guard flags it and not the kept one, which is still within ``window_s`` of it. A single frame
    outside training (a sweep's transition filed as a view) is paired once, flagged, instead of flagging every pair
    until its view is shown again; a view whose frames are all flagged still pairs its newest, so the exam says it
    is outside training."""
    if kept is None or not new.outside or kept.outside:
        return True
    return new.ts - kept.ts > window_s


@dataclass(frozen=True)
class EndedSession:
    """A session that ended and awaits its final exam record."""

    name: str
    session: Session
    why: ExamEnd


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
        self.ended: list[EndedSession] = []  # not yet recorded as final exams
        self.snapshot: dict[str, ExamEstimate] = {}  # every active exam as it stands (read by other threads)
        self.studies: frozenset[str] = frozenset()  # the active sessions that are DICOM studies (read likewise)

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
            state = Session(self.study.new_exam(), study=StudyTrack(origin.study, origin.attributes))
        state = state or Session(self.new_exam())
        state.last_seen = now
        self._sessions[session] = state
        while len(self._sessions) > self.max_sessions:
            self.ended.append(EndedSession(*self._sessions.popitem(last=False), ExamEnd.CAPACITY))
            self.expired += 1
        return state

    def arrived(self, session: str, origin: StudyOrigin, now: float) -> None:
        """A stored image's frame reached the pipeline: its study's exam exists from now on (and records it), so a
        study whose frames show neither view still ends with a final record."""
        state = self._enter(session, now, origin)
        if state.study is not None:
            state.study.arrived(origin)

    def update(
        self,
        session: str,
        view: str,
        features: ViewFeatures,
        now: float | None = None,
        origin: StudyOrigin | None = None,
        scanner: str | None = None,
    ) -> dict | None:
        """Store a view's features; returns both views' features when the session is paired within the window.

        Args:
            session: the exam id.
            view: which view the features are of.
            features: the view's features with its frame's seq and capture time.
            now: the monotonic time (tests pass it; default: time.monotonic()).
            origin: the stored image the frame came from (DICOM), or None for a live frame.
            scanner: the frame's scanner profile.
        """
        now = time.monotonic() if now is None else now
        state = self._enter(session, now, origin)
        window_s = math.inf if state.study is not None else self.pairing_window_s
        if displaces(state.views.get(view), features, window_s):
            state.views[view] = features
        state.fingerprints[view] = features.fingerprint
        state.scanner, state.filed, state.flagged = scanner, state.filed + 1, state.flagged + bool(features.outside)
        if features.level is not None:
            state.levels.append(features.level)
        state.exam.saw(view)
        if state.study is not None and origin is not None:
            state.study.filed(origin)
        other = next(v for v in VIEWS if v != view)
        if other not in state.views:
            return None
        if state.study is not None or abs(state.views[other].ts - features.ts) <= self.pairing_window_s:
            return dict(state.views) | {view: features}
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
        last = state.fingerprints.get(view) if state else None
        if last is None or not same_image(last, fingerprint, min_correlation):
            return False
        state.last_seen = now
        return True

    def expire(self, now: float) -> None:
        """End every session idle past its time: a live one's TTL, a study's idle time."""
        busy = self.waiting() if self.study is not None else set()
        idle = [n for n, state in self._sessions.items() if now - state.last_seen > self._ttl(state) and n not in busy]
        for name in idle:
            self.ended.append(EndedSession(name, self._sessions.pop(name), ExamEnd.TTL))
            self.expired += 1

    def _ttl(self, state: Session) -> float:
        return self.study.idle_s if state.study is not None and self.study is not None else self.ttl_s

    def end_all(self, why: ExamEnd) -> None:
        """End every active session now (shutdown, a new model): each gets its final exam record."""
        self.ended += [EndedSession(name, state, why) for name, state in self._sessions.items()]
        self._sessions.clear()

    def publish(self) -> None:
        """Publish what every active exam says now, for the heartbeat (one reference, replaced whole)."""
        self.snapshot = {name: state.exam.status() for name, state in self._sessions.items()}
        self.studies = frozenset(name for name, state in self._sessions.items() if state.study is not None)

    def take_ended(self) -> list[EndedSession]:
        """Sessions that ended (TTL or cap) since the last call; the server writes their final exam records."""
        ended, self.ended = self.ended, []
        return ended

    def get(self, session: str) -> Session | None:
        return self._sessions.get(session)

    def active(self) -> list[tuple[str, Session]]:
        return list(self._sessions.items())

    def __len__(self) -> int:
        return len(self._sessions)
