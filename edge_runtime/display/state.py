"""What the bedside page shows, kept in memory from the runtime's messages: bounded, thread-safe, JSON-ready.

The feed thread calls ``apply`` with each validated message; the web server calls ``snapshot`` for the page.
Sessions, trend points and thumbnails are capped, so memory stays flat however long the box runs.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.contracts import (
    HeartbeatMessage,
    Message,
    MetricsMessage,
    ResultMessage,
    ThumbnailMessage,
)

MAX_SESSIONS = 16  # the page shows the most recently active exams
TREND_POINTS = 240  # PDFF points per session (4 minutes at one result a second)
SESSION_IDLE_S = 600.0  # an exam with no result for this long leaves the page
STALE_AFTER_S = 2.5  # no heartbeat for this long: the page says the runtime is stale (heartbeats are 1/s)


@dataclass
class SessionView:
    """One exam as the page draws it."""

    last_result: dict[str, Any] | None = None
    trend: deque = field(default_factory=lambda: deque(maxlen=TREND_POINTS))
    thumbnails: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # view -> (seq, jpeg)
    updated: float = 0.0  # wall time of the last result

    def add_result(self, result: ResultMessage, now: float) -> None:
        exam = result.exam
        self.trend.append(
            {
                "ts": result.frames[result.trigger].ts,
                "pdff": result.pdff,
                "exam_pdff": exam.pdff if exam else None,
                "exam_interval": exam.pdff_interval if exam else None,
            }
        )
        self.last_result = result.model_dump(mode="json")
        self.updated = now


class DisplayState:
    def __init__(self, clock=time.time):
        self._lock = threading.Lock()
        self._clock = clock
        self.sessions: OrderedDict[str, SessionView] = OrderedDict()
        self.heartbeat: dict[str, Any] | None = None
        self.heartbeat_at: float | None = None
        self.metrics: dict[str, Any] | None = None
        self.messages = 0
        self.version = 0  # bumps on every change; the event stream pushes when it moves

    def apply(self, message: Message) -> None:
        """Fold one validated runtime message into the state."""
        now = self._clock()
        with self._lock:
            self.messages += 1
            self.version += 1
            if isinstance(message, ResultMessage):
                self._session(message.session, now).add_result(message, now)
            elif isinstance(message, ThumbnailMessage):
                self._session(message.session, now).thumbnails[message.view] = (message.seq, _jpeg(message))
            elif isinstance(message, HeartbeatMessage):
                self.heartbeat, self.heartbeat_at = message.model_dump(mode="json"), now
            elif isinstance(message, MetricsMessage):
                self.metrics = message.model_dump(mode="json")

    def _session(self, name: str, now: float) -> SessionView:
        view = self.sessions.pop(name, None) or SessionView(updated=now)
        self.sessions[name] = view  # most recent last
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)
        for old in [k for k, v in self.sessions.items() if now - v.updated > SESSION_IDLE_S]:
            del self.sessions[old]
        return view

    def thumbnail(self, session: str, view: str) -> bytes | None:
        with self._lock:
            found = self.sessions.get(session)
            return found.thumbnails[view][1] if found and view in found.thumbnails else None

    def snapshot(self, malformed: int = 0) -> dict[str, Any]:
        """Everything the page draws, as JSON-ready data (thumbnails as URLs with their frame seq)."""
        now = self._clock()
        with self._lock:
            age = None if self.heartbeat_at is None else now - self.heartbeat_at
            return {
                "now": now,
                "heartbeat": self.heartbeat,
                "heartbeat_age_s": age,
                "stale": age is None or age > STALE_AFTER_S,
                "metrics": self.metrics,
                "messages": self.messages,
                "malformed": malformed,
                "sessions": [_session_json(name, v) for name, v in reversed(self.sessions.items())],
            }


def _jpeg(message: ThumbnailMessage) -> bytes:
    import base64

    return base64.b64decode(message.jpeg)


def _session_json(name: str, view: SessionView) -> dict[str, Any]:
    thumbs = {v: f"/thumb/{name}/{v}.jpg?seq={seq}" for v, (seq, _) in view.thumbnails.items()}
    return {"session": name, "result": view.last_result, "trend": list(view.trend), "thumbnails": thumbs}
