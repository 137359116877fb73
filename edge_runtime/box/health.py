"""What the box says about itself: the heartbeat and metrics topics, and /healthz. It reads the parts compose() made and
changes none of them; every value it reads is a snapshot another thread published whole, or a counter under a lock."""

from __future__ import annotations

import time
from dataclasses import dataclass

from edge_runtime.box.telemetry import Telemetry
from edge_runtime.contracts import AuditHealth, HeartbeatMessage, MetricsMessage, PacsStatus
from edge_runtime.hospital.queue import ReportQueue
from edge_runtime.model.served import Served
from edge_runtime.pipeline.queue import FrameQueue
from edge_runtime.pipeline.sessions import SessionStore
from edge_runtime.sinks.audit import AuditLog
from edge_runtime.sinks.reports import linked
from edge_runtime.validation.watch import SiteWatch


@dataclass(frozen=True)
class BoxStatus:
    """The parts the box's own messages read."""

    served: Served
    telemetry: Telemetry
    queue: FrameQueue
    sessions: SessionStore
    audit: AuditLog
    reports: ReportQueue | None
    worklist: bool  # whether a worklist links screen-grab exams to their study
    started_at: float
    watch: SiteWatch | None = None  # the reconciliation verdict and drift alarms (None: not watched)

    def metrics(self) -> MetricsMessage:
        return MetricsMessage(
            ts=time.time(),
            **self.telemetry.stats.snapshot(),
            sessions=len(self.sessions.snapshot),
            sessions_expired=self.sessions.expired,
            pending=len(self.queue),
        )

    def audit_health(self) -> AuditHealth:
        audit = self.audit
        return AuditHealth(ok=audit.error is None, error=audit.error, failures=audit.failures, retired=audit.retired)

    def pacs(self) -> PacsStatus | None:
        """The report queue's state, and which active sessions will end with no report."""
        if self.reports is None:
            return None
        state = self.reports.snapshot()
        studies = self.sessions.studies
        unlinked = [name for name in self.sessions.snapshot if not linked(name, name in studies, self.worklist)]
        return PacsStatus(**state.__dict__, unlinked=unlinked)

    def heartbeat(self) -> HeartbeatMessage:
        model = self.served.current
        return HeartbeatMessage(
            ts=time.time(),
            uptime_s=round(time.time() - self.started_at, 1),
            model=model.bundle.model_info,
            sessions=len(self.sessions.snapshot),
            pending=len(self.queue),
            calibrated=model.exam.calibrated,
            validation=model.bundle.validation,
            exams=dict(self.sessions.snapshot),
            audit=self.audit_health(),
            model_since=self.served.since,
            model_update=self.served.updates.last,
            pacs=self.pacs(),
            health=self.telemetry.supervisor.health().summary(),
            outcomes=self.watch.verdict.current() if self.watch else None,
            drift=self.watch.alarms() if self.watch else None,
        )

    def health(self) -> dict:
        """What /healthz answers: every part's pulse decides; the audit log, the model and the reports beside."""
        said = self.telemetry.supervisor.health().as_json()
        said |= {"audit": self.audit_health().model_dump(), "model": self.served.current.bundle.model_info.model_dump()}
        pacs = self.pacs()
        said |= self.watch.as_json() if self.watch else {}
        return said | {"pacs": pacs.model_dump() if pacs is not None else None}
