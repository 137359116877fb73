"""The one runner: a frame through the stages in order, each stage timed, every drop counted by its reason, and a
result handed to the sinks. Statistics, the metrics topic, Prometheus and the page all read the same stage names
(``edge_runtime.contracts.names.Stage``), so what the runner records is what every reader shows."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from edge_runtime.box.stats import RuntimeStats, ThrottledLog
from edge_runtime.contracts import VIEWS, Count, ExamRecord, FrameRef, ResultMessage, Stage, StudyReference
from edge_runtime.model.bundle import Bundle
from edge_runtime.pipeline.frame import Drop, FrameContext
from edge_runtime.pipeline.sessions import Session, SessionStore
from edge_runtime.pipeline.stages import PipelineStage


class Sink(Protocol):
    """Where results and ended exams go: the results socket, the audit log, thumbnails, later the PACS."""

    def on_result(self, result: ResultMessage, frame: FrameContext) -> None: ...

    def on_exam_final(self, record: ExamRecord) -> None: ...


def study_ref(session: Session) -> StudyReference | None:
    """A DICOM study's UIDs for its final record: the series and instances whose frames the gate filed."""
    track = session.study
    if track is None:
        return None
    return StudyReference(
        study_instance_uid=track.study,
        series_instance_uids=sorted(track.contributed),
        sop_instance_uids=sorted({i for instances in track.contributed.values() for i in instances}),
        received=len(track.received),
    )


class Pipeline:
    """Stages in order, then sinks; ``run`` takes one frame from a source's queue."""

    def __init__(
        self,
        stages: Sequence[PipelineStage],
        sinks: Sequence[Sink],
        context: tuple[Bundle, SessionStore, RuntimeStats, ThrottledLog],
    ):
        """Args:
        stages: the stages, in order (edge_runtime.compose.compose).
        sinks: where each result and each ended exam goes, in order.
        context: the bundle (for the result's model), the exams, the statistics and the throttled log.
        """
        self.stages, self.sinks = list(stages), list(sinks)
        self.bundle, self.sessions, self.stats, self.log = context

    @property
    def stage_names(self) -> list[Stage]:
        return [stage.name for stage in self.stages]

    def run(self, frame: FrameContext) -> ResultMessage | None:
        """One frame: every stage in order, timed; the result (or None when a stage drops the frame)."""
        self._finish(frame, Stage.QUEUE)
        for stage in self.stages:
            outcome = stage(frame)
            self._finish(frame, stage.name)
            if isinstance(outcome, Drop):
                self._drop(outcome)
                return None
        result = self._result(frame)
        for sink in self.sinks:
            sink.on_result(result, frame)
        return result

    def _finish(self, frame: FrameContext, stage: Stage) -> None:
        previous = next(reversed(frame.finished.values()), frame.received)
        frame.finished[stage] = now = time.time()
        self.stats.observe(stage, (now - previous) * 1000)
        for count in frame.counts:
            self.stats.count(count)
        for note in frame.notes:
            self.log.once(note.key, note.text)
        frame.counts.clear()
        frame.notes.clear()

    def _drop(self, drop: Drop) -> None:
        for count in drop.counts:
            self.stats.count(count)
        if drop.reject is not None:
            self.stats.reject(drop.reject)
            self.log.once(drop.reject, drop.detail, "rejected frame")

    def _result(self, frame: FrameContext) -> ResultMessage:
        paired = frame.paired
        refs = {
            v: FrameRef(
                seq=paired[v].seq,
                ts=paired[v].ts,
                view_confidence=None if paired[v].view_confidence is None else round(paired[v].view_confidence, 4),
                out_of_distribution=paired[v].outside,
            )
            for v in VIEWS
        }
        guarded = all(paired[v].outside is not None for v in VIEWS)
        return ResultMessage(
            session=frame.header.session,
            trigger=frame.view,
            frames=refs,
            out_of_distribution=any(paired[v].outside for v in VIEWS) if guarded else None,
            p_fatty=round(frame.p_fatty, 6),
            fatty=bool(frame.p_fatty >= self.bundle.threshold),
            threshold=self.bundle.threshold,
            pdff=round(frame.pdff, 4),
            model=self.bundle.model_info,
            latency_ms={k: round(v, 3) for k, v in frame.stage_ms().items()},
            exam=frame.exam,
            spread=self._spread(frame),
        )

    def _spread(self, frame: FrameContext) -> dict[str, float] | None:
        if len(self.bundle.heads) < 2:
            return None
        return {"logit": round(frame.members.logit_spread, 4), "log_pdff": round(frame.members.log_pdff_spread, 4)}

    def end_exams(self, ending: str | None = None, cause: str | None = None) -> int:
        """Hand every ended exam (TTL, the session cap; every active one when ``ending`` names why, with its
        ``cause`` in words: shutdown, or a new model) to the sinks; how many."""
        self.sessions.expire(time.monotonic())
        if ending is not None:
            self.sessions.end_all(ending)
        ended = self.sessions.take_ended()
        for name, session, why in ended:
            exam, model = session.exam.status(), self.bundle.model_info
            record = ExamRecord(
                session=name, ended=time.time(), why=why, cause=cause, exam=exam, model=model, study=study_ref(session)
            )
            for sink in self.sinks:
                sink.on_exam_final(record)
        return len(ended)

    def fail(self, frame: FrameContext) -> None:
        """A stage raised: a bug must not take the bedside down, so it is logged and counted and serving goes on."""
        self.log.error(f"inference failed for session {frame.header.session}")
        self.stats.count(Count.INFERENCE_ERRORS)
