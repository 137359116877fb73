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
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from edge_runtime.contracts import VIEWS, FrameHeader
from edge_runtime.exam import ExamTracker


class Queued(Protocol):
    """What waits for the worker: anything with a frame header (the pipeline's FrameContext)."""

    header: FrameHeader


class LatestFrames:
    """The newest unprocessed frame per (session, view), bounded; the worker takes the oldest key first."""

    def __init__(self, max_keys: int):
        self._frames: OrderedDict[tuple[str, str], Queued] = OrderedDict()
        self._cond = threading.Condition()
        self.max_keys = max_keys
        self._closed = False

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
            self._cond.notify()
        return dropped

    def take(self, timeout: float) -> Queued | None:
        with self._cond:
            if not self._frames and not self._closed:
                self._cond.wait(timeout)
            if not self._frames:
                return None
            _, frame = self._frames.popitem(last=False)
            return frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)


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


@dataclass
class Session:
    exam: ExamTracker
    views: dict[str, ViewFeatures] = field(default_factory=dict)
    last_seen: float = 0.0  # time.monotonic(): a wall-clock jump never ends an exam
    thumbnails_sent: float = -math.inf  # when this session's thumbnails last went out (monotonic)


class SessionStore:
    def __init__(self, ttl_s: float, max_sessions: int, pairing_window_s: float, new_exam: Callable[[], ExamTracker]):
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self.pairing_window_s = pairing_window_s
        self.new_exam = new_exam
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self.expired = 0
        self.ended: list[tuple[str, Session, str]] = []  # (name, session, why) not yet recorded as final exams

    def update(self, session: str, view: str, features: ViewFeatures, now: float | None = None) -> dict | None:
        """Store a view's features; returns both views' features when the session is paired within the window.

        Args:
            session: the exam id.
            view: which view the features are of.
            features: the view's features with its frame's seq and capture time.
            now: the monotonic time (tests pass it; default: time.monotonic()).
        """
        now = time.monotonic() if now is None else now
        self.expire(now)
        state = self._sessions.pop(session, None) or Session(self.new_exam())
        state.views[view] = features
        state.exam.saw(view)
        state.last_seen = now
        self._sessions[session] = state
        while len(self._sessions) > self.max_sessions:
            self.ended.append((*self._sessions.popitem(last=False), "capacity"))
            self.expired += 1
        other = next(v for v in VIEWS if v != view)
        if other in state.views and abs(state.views[other].ts - features.ts) <= self.pairing_window_s:
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
        while self._sessions:
            name, state = next(iter(self._sessions.items()))
            if now - state.last_seen <= self.ttl_s:
                break
            self.ended.append((name, self._sessions.pop(name), "ttl"))
            self.expired += 1

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
