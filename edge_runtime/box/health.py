"""What the box says about itself: the metrics and heartbeat topics, and /healthz. Each reads the server's state
and changes none of it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from edge_runtime.contracts import AuditHealth, HeartbeatMessage, MetricsMessage

if TYPE_CHECKING:
    from edge_runtime.server import EdgeServer


def metrics_message(server: EdgeServer) -> MetricsMessage:
    return MetricsMessage(
        ts=time.time(),
        **server.stats.snapshot(),
        sessions=len(server.sessions),
        sessions_expired=server.sessions.expired,
        pending=len(server.frames),
    )


def audit_health(server: EdgeServer) -> AuditHealth:
    audit = server.audit
    return AuditHealth(ok=audit.error is None, error=audit.error, failures=audit.failures, retired=audit.retired)


def heartbeat_message(server: EdgeServer) -> HeartbeatMessage:
    return HeartbeatMessage(
        ts=time.time(),
        uptime_s=round(time.time() - server.started_at, 1),
        model=server.bundle.model_info,
        sessions=len(server.sessions),
        pending=len(server.frames),
        calibrated=server.exam_model.calibrated,
        validation=server.bundle.validation,
        exams={name: session.exam.status() for name, session in server.sessions.active()},
        audit=audit_health(server),
        model_since=server.model_since,
        model_update=server.updates.last,
        pacs=server.hospital.status(server.sessions.active()) if server.hospital is not None else None,
    )


def health_report(server: EdgeServer) -> dict:
    """What /healthz answers: the stages' pulse decides; the audit log and the model are said alongside."""
    health = server.clock.health().as_json()
    said = {"audit": audit_health(server).model_dump(), "model": server.bundle.model_info.model_dump()}
    said["pacs"] = server.hospital.status().model_dump() if server.hospital is not None else None
    return health | said
