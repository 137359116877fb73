"""The one runner: a frame through the stages in order, each stage timed, every drop counted by its reason, and a
result handed to every sink. Statistics, the metrics topic, Prometheus and the page all read the same stage names
(``edge_runtime.contracts.names.Stage``), so what the runner records is what every reader shows.

A stage that raises on one frame is a bug, not a reason to stop the bedside: the frame is dropped, the stages' pulse
counts and names it, and the next frame is served. A sink that raises is counted on its own pulse and the sinks
after it still get the result, so a failing thumbnail never costs an audit record.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge_runtime.box.supervision import Kind, Pulse
from edge_runtime.box.telemetry import Telemetry
from edge_runtime.contracts import (
    VIEWS,
    Count,
    ExamEnd,
    ExamRecord,
    FrameRef,
    FrameTally,
    ResultMessage,
    Stage,
    StudyReference,
    counted,
)
from edge_runtime.model.bundle import Bundle
from edge_runtime.pipeline.frame import Drop, FrameContext
from edge_runtime.pipeline.sessions import EndedSession, Session, SessionStore
from edge_runtime.pipeline.stages import PipelineStage
from edge_runtime.pipeline.studies import StudyEvidence


@dataclass(frozen=True)
class EndedExam:
    """An exam's last word for the sinks: the final record (UIDs only, what the audit log keeps) and, for a DICOM
    study, the attributes and images its report needs (which never reach the log)."""

    record: ExamRecord
    study: StudyEvidence | None = None


class Sink(Protocol):
    """Where results and ended exams go: the results socket, the audit log, thumbnails, the PACS report queue."""

    name: str

    def on_result(self, result: ResultMessage, frame: FrameContext) -> None: ...

    def on_exam_final(self, ended: EndedExam) -> None: ...


def study_reference(ended: EndedSession) -> StudyReference | None:
    """A DICOM study's UIDs for its final record: the series and instances whose frames the gate filed."""
    track = ended.session.study
    if track is None:
        return None
    return StudyReference(
        study_instance_uid=track.study,
        series_instance_uids=sorted(track.contributed),
        sop_instance_uids=track.instances(),
        received=len(track.received),
    )


def tally(session: Session) -> FrameTally:
    """The exam's frames for its record: filed, flagged, and their median display level."""
    level = round(float(np.median(session.levels)), 2) if session.levels else None
    return FrameTally(filed=session.filed, flagged=session.flagged, display_level=level)


class Pipeline:
    """Stages in order, then sinks; ``run`` takes one frame from the queue."""

    def __init__(
        self,
        stages: Sequence[PipelineStage],
        sinks: Sequence[Sink],
        bundle: Bundle,
        sessions: SessionStore,
        telemetry: Telemetry,
    ):
        """Args:
        stages: the stages, in order (edge_runtime.compose.stages).
        sinks: where each result and each ended exam goes, in order.
        bundle: the model the stages serve (the result names it).
        sessions: the exams in progress.
        telemetry: the statistics, the log and the supervisor.
        """
        self.stages, self.sinks, self.bundle, self.sessions = list(stages), list(sinks), bundle, sessions
        self.stats, self.log = telemetry.stats, telemetry.log
        self.pulse = telemetry.pulse("stages", Kind.STAGE, threaded=False)
        self.sink_pulses: dict[str, Pulse] = {s.name: telemetry.pulse(s.name, Kind.SINK, False) for s in sinks}

    @property
    def stage_names(self) -> list[Stage]:
        return [stage.name for stage in self.stages]

    def run(self, frame: FrameContext) -> ResultMessage | None:
        """One frame: every stage in order, timed; the result (or None when a stage drops the frame or fails)."""
        self._finish(frame, Stage.QUEUE)
        for stage in self.stages:
            try:
                outcome = stage(frame)
            except Exception as exc:  # a bug must not take the bedside down: counted, named, the next frame served
                self.pulse.failed(exc, f"stage {stage.name}, session {frame.header.session}: ")
                return None
            self._finish(frame, stage.name)
            if isinstance(outcome, Drop):
                self._drop(outcome)
                return None
        result = self._result(frame)
        for sink in self.sinks:
            self._deliver(sink, "on_result", result, frame)
        return result

    def _deliver(self, sink: Sink, method: str, *args: object) -> None:
        """``sink.method(*args)``; a failure is counted on the sink's pulse."""
        try:
            getattr(sink, method)(*args)
        except Exception as exc:  # one sink's failure is its own: the sinks after it still get the result
            self.sink_pulses[sink.name].failed(exc)

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
            hri=paired[VIEWS[1]].hri,
            spread=self._spread(frame),
        )

    def _spread(self, frame: FrameContext) -> dict[str, float] | None:
        if len(self.bundle.heads) < 2:
            return None
        return {"logit": round(frame.members.logit_spread, 4), "log_pdff": round(frame.members.log_pdff_spread, 4)}

    def end_exams(self, ending: ExamEnd | None = None, cause: str | None = None) -> int:
        """Hand every ended exam (TTL, the session cap; every active one when ``ending`` names why, with its
        ``cause`` in words: shutdown, or a new model) to the sinks; how many."""
        self.sessions.expire(time.monotonic())
        if ending is not None:
            self.sessions.end_all(ending)
        ended = self.sessions.take_ended()
        for session in ended:
            exam = session.session.exam.status()
            model, study = self.bundle.model_info, study_reference(session)
            record = ExamRecord(
                session=session.name,
                ended=time.time(),
                why=session.why,
                cause=cause,
                exam=exam,
                model=model,
                study=study,
                scanner=session.session.scanner,
                frames=tally(session.session),
            )
            track = session.session.study
            final = EndedExam(record, track.evidence() if track is not None else None)
            self.stats.count(Count.EXAMS_ENDED)
            if exam.why is not None:
                self.stats.count(counted(exam.why))
            for sink in self.sinks:
                self._deliver(sink, "on_exam_final", final)
        return len(ended)
