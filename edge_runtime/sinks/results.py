"""Results for the displays: each result, and the view crops behind it as thumbnails, into the display feed's outbox
(edge_runtime.services.feed sends them). Final answers go to the audit log, not to the displays: the heartbeat carries
the exams in progress."""

from __future__ import annotations

import time

from edge_runtime.config import ThumbnailSettings
from edge_runtime.contracts import TOPIC_RESULT, TOPIC_THUMBNAIL, VIEWS, ResultMessage
from edge_runtime.pipeline.frame import FrameContext
from edge_runtime.pipeline.runner import EndedExam
from edge_runtime.pipeline.sessions import SessionStore
from edge_runtime.services.feed import Outbox, Outgoing
from edge_runtime.sinks.thumbnails import thumbnail_jpeg, thumbnail_message


class PublishResults:
    """Every result, to be sent with its end-to-end time from capture to the moment it leaves."""

    name = "results"

    def __init__(self, outbox: Outbox):
        self.outbox = outbox

    def on_result(self, result: ResultMessage, frame: FrameContext) -> None:
        self.outbox.put(Outgoing(TOPIC_RESULT, result, captured=result.frames[result.trigger].ts))

    def on_exam_final(self, ended: EndedExam) -> None:
        """Final answers go to the audit log (heartbeats carry the exams in progress)."""


class PublishThumbnails:
    """The view crops behind a result, as small JPEGs, at most one pair per session per period. Encoded here, not per
    frame: at most one pair per period goes out, so most frames' crops are never encoded."""

    name = "thumbnails"

    def __init__(self, outbox: Outbox, sessions: SessionStore, settings: ThumbnailSettings):
        self.outbox, self.sessions, self.settings = outbox, sessions, settings

    def on_result(self, result: ResultMessage, frame: FrameContext) -> None:
        state = self.sessions.get(result.session)
        now = time.monotonic()
        if state is None or now - state.thumbnails_sent < self.settings.period_s:
            return
        state.thumbnails_sent = now
        for view in VIEWS:
            kept = frame.paired[view]
            if kept.crop is not None:
                message = thumbnail_message(result.session, view, kept.seq, kept.ts, thumbnail_jpeg(kept.crop))
                self.outbox.put(Outgoing(TOPIC_THUMBNAIL, message))

    def on_exam_final(self, ended: EndedExam) -> None:
        """Thumbnails belong to live results only."""
