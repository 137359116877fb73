"""The heartbeat: every second the box's state (its model, its exams, its audit log, its reports, every part's
health), and every metrics period its counters and latencies, into the display feed's outbox. A display that hears
no heartbeat for three seconds says STALE."""

from __future__ import annotations

import time

from edge_runtime.box.health import BoxStatus
from edge_runtime.box.parts import LoopingPart
from edge_runtime.box.supervision import Kind
from edge_runtime.box.telemetry import Telemetry
from edge_runtime.config import MetricsSettings
from edge_runtime.contracts import TOPIC_HEARTBEAT, TOPIC_METRICS
from edge_runtime.services.feed import Outbox, Outgoing


class Heartbeat(LoopingPart):
    """Heartbeats and metrics on time."""

    name, kind = "heartbeat", Kind.SERVICE

    def __init__(self, settings: MetricsSettings, status: BoxStatus, outbox: Outbox, telemetry: Telemetry):
        super().__init__(telemetry)
        self.settings, self.status, self.outbox = settings, status, outbox
        self._next_heartbeat = self._next_metrics = time.monotonic()

    def step(self) -> None:
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self.outbox.put(Outgoing(TOPIC_HEARTBEAT, self.status.heartbeat()))
            self._next_heartbeat = now + self.settings.heartbeat_period_s
        if now >= self._next_metrics:
            self.outbox.put(Outgoing(TOPIC_METRICS, self.status.metrics()))
            self._next_metrics = now + self.settings.period_s
        self._stop.wait(max(0.0, min(self._next_heartbeat, self._next_metrics) - time.monotonic()))
