"""Reports waiting for the PACS, on disk, so none is lost to a down PACS, a restart or kill -9.

Each report is a job file, ``pending/<SOP Instance UID>.json``: the exam's final record, the study it belongs to
(its patient and study attributes and contributing images, or the accession number a worklist resolves), the
report's own UIDs (fixed when the exam ends, so every resend is the same instance and the PACS never holds two),
the destinations still to acknowledge it, and its attempts. A job is written beside its name, fsync'ed and renamed,
so a reader never sees half a file. Once every destination has it, the job is deleted and one line of UIDs goes to
``sent.jsonl``: patient data stay on the box only until the report is sent.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PENDING, QUARANTINE, SENT_LOG = "pending", "quarantine", "sent.jsonl"
QUARANTINE_SHOWN = 20  # the newest quarantined reports the heartbeat and the page name
FOLLOWUPS_SHOWN = 10  # the newest comparisons with prior reports the heartbeat carries


@dataclass
class Job:
    """One report to send, as its file holds it."""

    sop_instance_uid: str
    series_uid: str
    record: dict[str, Any]  # the ExamRecord
    study: dict[str, Any]  # {"attributes": DICOM JSON, "evidence": [...]} or {"accession": "..."}
    remaining: list[str]  # destinations not yet acknowledged
    queued_at: float
    attempts: int = 0
    next_try: float = 0.0
    last_error: str | None = None
    study_uid: str | None = None  # known once the report is built (a worklist job resolves it when sent)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


@dataclass
class QueueState:
    """What the heartbeat, the metrics and the page say about the queue."""

    queued: int = 0
    sent: int = 0
    failed: int = 0  # failed attempts since start
    oldest_age_s: float | None = None
    last_error: str | None = None
    not_linked: int = 0  # exams that ended linked to no study: no report
    destinations: list[str] = field(default_factory=list)
    quarantined: int = 0  # reports that cannot be built, set aside with their reason (never retried by themselves)
    quarantine: list[dict[str, Any]] = field(default_factory=list)  # the newest: report UID, session, reason
    followups: list[dict[str, Any]] = field(default_factory=list)  # the newest ExamFollowUp records (JSON)


def _write_synced(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, path)
    _sync_dir(path.parent)


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ReportQueue:
    """The store-and-forward queue: put on exam end, take what is due, mark sent or failed (with backoff)."""

    def __init__(self, folder: Path, destinations: list[str], backoff: tuple[float, float] = (5.0, 600.0)):
        self.folder, self.destinations, self.backoff = Path(folder), list(destinations), backoff
        for folder in (PENDING, QUARANTINE):
            (self.folder / folder).mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._jobs = {job.sop_instance_uid: job for job in self._load()}
        self.state = QueueState(queued=len(self._jobs), destinations=list(destinations))
        self.state.quarantine = [self._said_file(p) for p in self._quarantined()][-QUARANTINE_SHOWN:]
        self.state.quarantined = len(self._quarantined())

    def _load(self) -> list[Job]:
        """Jobs left by an earlier run (a restart or kill -9 loses none); half-written ones are dropped."""
        jobs = []
        for path in sorted((self.folder / PENDING).glob("*.partial")):
            path.unlink(missing_ok=True)
        for path in sorted((self.folder / PENDING).glob("*.json")):
            try:
                jobs.append(Job(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):  # never sent half-known: set aside, named, for a person
                os.replace(path, self.folder / QUARANTINE / path.name)
        return jobs

    def put(self, job: Job) -> None:
        with self._lock:
            job.remaining = job.remaining or list(self.destinations)
            _write_synced(self._path(job), job.to_json())
            self._jobs[job.sop_instance_uid] = job
            self.state.queued = len(self._jobs)

    def followed(self, record: dict[str, Any]) -> None:
        """A comparison with the prior was made: the heartbeat shows the newest."""
        with self._lock:
            self.state.followups = [*self.state.followups, record][-FOLLOWUPS_SHOWN:]

    def due(self, now: float | None = None) -> list[Job]:
        now = time.time() if now is None else now
        with self._lock:
            return [job for job in self._jobs.values() if job.next_try <= now]

    def acknowledged(self, job: Job, destination: str) -> None:
        """One destination holds the report; when all do, the job (and its patient data) is deleted."""
        with self._lock:
            job.remaining = [d for d in job.remaining if d != destination]
            if job.remaining:
                _write_synced(self._path(job), job.to_json())
                return
            line = {
                "sop_instance_uid": job.sop_instance_uid,
                "study_instance_uid": job.study_uid,
                "session": job.record.get("session"),
                "sent": time.time(),
            }
            with open(self.folder / SENT_LOG, "a") as fh:
                fh.write(json.dumps(line) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            self._path(job).unlink(missing_ok=True)
            self._jobs.pop(job.sop_instance_uid, None)
            self.state.queued, self.state.sent = len(self._jobs), self.state.sent + 1

    def failed(self, job: Job, error: str, now: float | None = None) -> None:
        """An attempt failed: retried after an exponential backoff, the error kept for the page."""
        now = time.time() if now is None else now
        with self._lock:
            job.attempts += 1
            base, ceiling = self.backoff
            job.next_try, job.last_error = now + min(ceiling, base * 2 ** (job.attempts - 1)), error
            _write_synced(self._path(job), job.to_json())
            self.state.failed += 1
            self.state.last_error = error

    def quarantine(self, job: Job, reason: str) -> None:
        """A report that cannot be built is set aside with its reason: never retried by itself, never blocking the
        reports behind it. Its file moves to ``quarantine/`` (patient data stay on the box until someone acts:
        moving the file back to ``pending/`` and restarting retries it)."""
        with self._lock:
            job.last_error = reason
            _write_synced(self._path(job), job.to_json())
            os.replace(self._path(job), self.folder / QUARANTINE / self._path(job).name)
            _sync_dir(self.folder / PENDING)
            self._jobs.pop(job.sop_instance_uid, None)
            self.state.queued, self.state.quarantined = len(self._jobs), self.state.quarantined + 1
            self.state.quarantine = [*self.state.quarantine, self._said(job.__dict__)][-QUARANTINE_SHOWN:]

    def _quarantined(self) -> list[Path]:
        return sorted((self.folder / QUARANTINE).glob("*.json"), key=lambda p: p.stat().st_mtime)

    def _said_file(self, path: Path) -> dict[str, Any]:
        try:
            return self._said(json.loads(path.read_text()))
        except (OSError, ValueError, AttributeError):
            return {"sop_instance_uid": path.stem, "session": None, "reason": "an unreadable job file"}

    @staticmethod
    def _said(job: dict[str, Any]) -> dict[str, Any]:
        """A quarantined report as the page names it: UIDs, the session and the reason, never a patient field."""
        session = (job.get("record") or {}).get("session")
        return {"sop_instance_uid": job.get("sop_instance_uid"), "session": session, "reason": job.get("last_error")}

    def snapshot(self, now: float | None = None) -> QueueState:
        now = time.time() if now is None else now
        with self._lock:
            oldest = min((job.queued_at for job in self._jobs.values()), default=None)
            self.state.oldest_age_s = None if oldest is None else round(now - oldest, 1)
            return QueueState(**{**self.state.__dict__, "quarantine": list(self.state.quarantine)})

    def _path(self, job: Job) -> Path:
        return self.folder / PENDING / f"{job.sop_instance_uid}.json"
