"""What every part of the bedside reports to, handed to compose() as one object: counters and latencies, the log that
says each kind of trouble once per period, and the supervisor that keeps every part's pulse."""

from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.box.stats import RuntimeStats, ThrottledLog
from edge_runtime.box.supervision import Kind, Pulse, Supervisor
from edge_runtime.config import MetricsSettings


@dataclass(frozen=True)
class Telemetry:
    stats: RuntimeStats
    log: ThrottledLog
    supervisor: Supervisor

    @classmethod
    def configured(cls, metrics: MetricsSettings) -> Telemetry:
        """``[runtime.metrics]``: the log's period and how long a part may be silent before it counts as stalled."""
        stats = RuntimeStats()
        return cls(stats, ThrottledLog(metrics.period_s), Supervisor(metrics.stall_s, stats))

    def pulse(self, name: str, kind: Kind, threaded: bool = True, patience_s: float = 0.0) -> Pulse:
        """The part's pulse.

        Args:
            name: the part's name, as /healthz and the log say it.
            kind: source, stage, sink or service.
            threaded: whether it has a thread of its own.
            patience_s: how much longer than stall_s one step may take by design.
        """
        return self.supervisor.pulse(name, kind, threaded, patience_s)
