"""What the box says about its own validity after go-live: the last reconciliation's verdict (the file `edge-runtime
outcomes` writes beside the audit log, re-read when it changes) and the drift alarms standing now."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_runtime.contracts import DriftAlarm, OutcomesVerdict
from edge_runtime.validation.drift import DriftMonitor
from edge_runtime.validation.report import VERDICT_FILE


class PublishedVerdict:
    """The reconciliation verdict file, read again only when its modification time changes."""

    def __init__(self, path: Path | None):
        self.path = path
        self._seen: tuple[float, OutcomesVerdict | None] = (-1.0, None)

    @classmethod
    def beside(cls, audit_log: Path) -> PublishedVerdict:
        return cls(None if audit_log.is_char_device() else audit_log.parent / VERDICT_FILE)

    def current(self) -> OutcomesVerdict | None:
        """The last verdict, or None (none written, or unreadable: a half-written file is read on the next beat)."""
        try:
            mtime = self.path.stat().st_mtime if self.path is not None else -1.0
        except OSError:
            return None
        if mtime != self._seen[0]:
            try:
                self._seen = (mtime, OutcomesVerdict.model_validate_json(self.path.read_text()))
            except (OSError, ValueError):
                return None
        return self._seen[1]


@dataclass(frozen=True)
class SiteWatch:
    """The reconciliation verdict and the drift monitor, as the heartbeat and /healthz read them."""

    verdict: PublishedVerdict
    drift: DriftMonitor | None

    def alarms(self) -> list[DriftAlarm] | None:
        return list(self.drift.alarms) if self.drift is not None else None

    def as_json(self) -> dict:
        verdict = self.verdict.current()
        alarms = self.alarms()
        return {
            "outcomes": verdict.model_dump(mode="json") if verdict is not None else None,
            "drift": [a.model_dump(mode="json") for a in alarms] if alarms is not None else None,
        }
