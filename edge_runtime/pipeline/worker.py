"""The stages' thread: it takes each frame from the queue and runs it through the pipeline of the model being served,
ends exams on time, and swaps in a model update between two frames. It alone touches the exams in progress; other
threads read the snapshot it publishes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edge_runtime.box.parts import LoopingPart
from edge_runtime.box.supervision import Kind
from edge_runtime.box.telemetry import Telemetry
from edge_runtime.contracts import ExamEnd, ModelUpdate
from edge_runtime.model.served import Served, ServedModel
from edge_runtime.pipeline.queue import FrameQueue
from edge_runtime.pipeline.runner import Pipeline
from edge_runtime.pipeline.sessions import SessionStore

EXPIRY_PERIOD_S = 1.0  # how often ended exams are looked for when frames keep coming


class Worker(LoopingPart):
    """Frames from the queue through the served model's pipeline; exams ended on time; model updates swapped in."""

    name, kind = "stages", Kind.STAGE

    def __init__(
        self,
        served: Served,
        build: Callable[[ServedModel], Pipeline],
        queue: FrameQueue,
        sessions: SessionStore,
        telemetry: Telemetry,
    ):
        """Args:
        served: the one reference to the model being served.
        build: the pipeline over a served model (edge_runtime.compose: the stages, then the sinks).
        queue: where frames wait.
        sessions: the exams in progress.
        telemetry: the statistics, the log and the supervisor.
        """
        super().__init__(telemetry)
        self.served, self.build, self.queue, self.sessions = served, build, queue, sessions
        self.pipeline = build(served.current)
        self.on_swap: Callable[[ModelUpdate], None] = lambda update: None  # compose() audits each swap
        self._next_expiry = time.monotonic()

    def step(self) -> None:
        """One frame (or half a second without one), then ended exams when due and a waiting model update."""
        frame = self.queue.take(timeout=max(0.0, min(0.5, self._next_expiry - time.monotonic())))
        if frame is not None:
            self.pipeline.run(frame)
        if time.monotonic() >= self._next_expiry:
            self.pipeline.end_exams()
            self._next_expiry = time.monotonic() + EXPIRY_PERIOD_S
        self._swap_if_updated()
        self.sessions.publish()

    def _swap_if_updated(self) -> None:
        """A verified, warmed-up model waits: end every exam with its final record, then serve the new model."""
        model = self.served.updates.take()
        if model is None:
            return
        cause = f"model update to {model.bundle.name} {model.bundle.sha}"
        ended = self.pipeline.end_exams(ExamEnd.SHUTDOWN, cause)
        previous = self.served.swap(model)
        self.pipeline = self.build(model)
        self.on_swap(self.served.updates.swapped(previous.bundle.model_info, model, ended))

    def wake(self) -> None:
        self.queue.close()

    def close(self) -> None:
        """The thread has ended: every exam still open ends now with its final record (shutdown)."""
        self.pipeline.end_exams(ExamEnd.SHUTDOWN)
        self.sessions.publish()
