"""Where the pipeline's results and ended exams go: the results socket, the audit log and the thumbnails.

Each sink takes every result (``on_result``) and every exam's final answer (``on_exam_final``). The results
socket is the worker thread's own (ZeroMQ sockets are not thread-safe), so the sinks that publish hold it.
"""

from __future__ import annotations

import time

import zmq

from edge_runtime.box.stats import RuntimeStats
from edge_runtime.config import ThumbnailSettings
from edge_runtime.contracts import TOPIC_RESULT, TOPIC_THUMBNAIL, VIEWS, Count, ExamRecord, ResultMessage, Stage
from edge_runtime.hospital.link import HospitalLink
from edge_runtime.pipeline.frame import FrameContext
from edge_runtime.pipeline.sessions import SessionStore
from edge_runtime.sinks.audit import AuditLog
from edge_runtime.sinks.thumbnails import thumbnail_jpeg, thumbnail_message
from edge_runtime.wire.protocol import message_parts


class PublishResults:
    """Results on the results socket, with the end-to-end time from capture to the moment they leave."""

    def __init__(self, socket: zmq.Socket, stats: RuntimeStats):
        self.socket, self.stats = socket, stats

    def on_result(self, result: ResultMessage, frame: FrameContext) -> None:
        captured = result.frames[result.trigger].ts
        started = time.time()
        result.latency_ms[Stage.END_TO_END] = round((started - captured) * 1000, 3)
        self.socket.send_multipart(message_parts(TOPIC_RESULT, result))
        sent = time.time()
        self.stats.observe(Stage.PUBLISH, (sent - started) * 1000)
        self.stats.observe(Stage.END_TO_END, (sent - captured) * 1000)
        self.stats.count(Count.RESULTS_PUBLISHED)

    def on_exam_final(self, record: ExamRecord) -> None:
        """Final answers go to the audit log, not the results socket (heartbeats carry active exams)."""


class ReportToPacs:
    """Each ended exam's report into the PACS queue (edge_runtime.hospital), first among the sinks, so the audit log's
    final record names the report (or why there is none)."""

    NOT_LINKED = "none: linked to no study (no worklist accession, no DICOM study)"

    def __init__(self, link: HospitalLink):
        self.link = link

    def on_result(self, result: ResultMessage, frame: FrameContext) -> None:
        """Reports are per exam, not per result."""

    def on_exam_final(self, record: ExamRecord) -> None:
        record.report = self.link.exam_ended(record) or self.NOT_LINKED


class AuditResults:
    """Every result and every exam's final answer, appended to the audit log (a display that is down loses nothing)."""

    def __init__(self, audit: AuditLog, stats: RuntimeStats):
        self.audit, self.stats = audit, stats

    def on_result(self, result: ResultMessage, frame: FrameContext) -> None:
        """Recorded before it is sent, so the result says whether it was (a full disk never stops the results)."""
        result.audited = self._append(result.model_dump(mode="json", exclude={"audited"}))

    def on_exam_final(self, record: ExamRecord) -> None:
        self._append(record.model_dump(mode="json"))

    def _append(self, record: dict) -> bool:
        written = self.audit.append(record)
        if not written:
            self.stats.count(Count.AUDIT_WRITE_FAILURES)
        return written


class PublishThumbnails:
    """The view crops behind a result, as small JPEGs, at most one pair per session per period. Encoded here, not per
    frame: at most one pair per period goes out, so most frames' crops are never encoded."""

    def __init__(self, socket: zmq.Socket, sessions: SessionStore, settings: ThumbnailSettings):
        self.socket, self.sessions, self.settings = socket, sessions, settings

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
                self.socket.send_multipart(message_parts(TOPIC_THUMBNAIL, message))

    def on_exam_final(self, record: ExamRecord) -> None:
        """Thumbnails belong to live results only."""
