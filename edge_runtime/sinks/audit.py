"""Append-only JSON-lines audit log of every result and every session's final exam: a display that is down
loses nothing, and an edited or removed line shows.

Each line is flushed (and fsync'ed) as it is written; files rotate by size (results.jsonl -> .1 -> .2 ...).
Retention deletes a rotated file when more than ``backups`` are kept, or (``max_age_days``) when its last line is
older than that; each deletion is counted, logged and recorded in the log itself as a ``retention`` line.
Every record carries ``prev_sha256``, the SHA-256 of the line before it (across rotations and restarts; the first
line of a new log names ``GENESIS``), so ``edge-runtime audit verify`` finds the first line that was edited,
inserted or removed. A line torn by kill -9 is closed off at the next start and reported, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.box.stats import RuntimeStats
from edge_runtime.config import AuditSettings
from edge_runtime.contracts import Count, Message, ResultMessage
from edge_runtime.errors import ConfigError

if TYPE_CHECKING:
    from edge_runtime.pipeline.runner import EndedExam
    from edge_runtime.sinks.identity import ExamIdentities

CHAIN_FIELD = "prev_sha256"
GENESIS = "0" * 64
TAIL_BYTES = 1 << 16  # a record is far shorter: the last complete line is always inside this tail

log = logging.getLogger("edge_runtime")


def line_sha256(line: str) -> str:
    return hashlib.sha256(line.rstrip("\n").encode()).hexdigest()


def log_files(path: str | Path) -> list[Path]:
    """The log's files, oldest first: results.jsonl.N ... results.jsonl.1, results.jsonl."""
    path = Path(path)
    rotated = [p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()]
    return [*sorted(rotated, key=lambda p: -int(p.suffix[1:])), path]


def _tail(path: Path) -> tuple[str | None, str | None]:
    """The file's last complete line, and the unterminated fragment after it (a write cut short), if any."""
    if not path.is_file() or path.stat().st_size == 0:
        return None, None
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - TAIL_BYTES))
        tail = fh.read().decode("utf-8", errors="replace")
    complete, _, fragment = tail.rpartition("\n")
    lines = [line for line in complete.split("\n") if line.strip()]
    return (lines[-1] if lines else None), (fragment or None)


class AuditFolderError(ConfigError):
    """The audit log's folder cannot be written at start: a misconfigured volume, said before anything is served."""


def ensure_writable(path: Path) -> None:
    """Create the log's folder and prove a file can be created, written, synced and removed in it (rotation needs
    that too); a device such as /dev/full is its own target and is not probed."""
    if path.is_char_device():
        return
    folder, probe = path.parent, path.parent / f".{path.name}.probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"probe")
            os.fsync(fh.fileno())
        probe.unlink()
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(f"{path.name} is read-only")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise AuditFolderError(
            f"the audit folder {folder} is not writable ({reason}) for user {os.geteuid()}: mount a writable "
            "volume there, or set [runtime.audit] log (--audit-log) to a folder this user may write"
        ) from None


def _whole_record(fragment: str) -> bool:
    """A fragment that is a whole record lacks only its newline: it stays in the chain."""
    try:
        return isinstance(json.loads(fragment), dict)
    except json.JSONDecodeError:
        return False


class AuditLog:
    """The log at the bedside. A write that fails (a full or read-only disk) never stops the results: ``append``
    says so, ``failures`` and ``error`` tell the heartbeat and the page, and the next write that the disk accepts
    goes on (after ending any line the failure cut short)."""

    def __init__(
        self,
        path: str | Path,
        max_bytes: int = 50_000_000,
        backups: int = 5,
        max_age_days: float | None = None,
        fsync: bool = True,
    ):
        """Args:
        path: the current file; rotated ones sit beside it as path.1, path.2, ...
        max_bytes: rotate before a file grows past this.
        backups: rotated files kept; the oldest beyond them is deleted (counted in ``retired``).
        max_age_days: rotated files whose last write is older are deleted too; None keeps them by size only.
        fsync: fsync each line (tests of speed turn it off).
        """
        self.path = Path(path)
        ensure_writable(self.path)
        self.max_bytes, self.backups, self.max_age_days, self.fsync = max_bytes, backups, max_age_days, fsync
        self.failures, self.error, self.retired = 0, None, 0
        self.last_error: str | None = None  # kept after writes resume, for the exit line
        self._lock = threading.Lock()
        self._notes: list[dict[str, Any]] = []  # retention lines still to be written into the chain
        last, fragment = _tail(self.path)
        self._cut_short = fragment is not None  # a line without its newline: end it before the next one
        self.torn_at_start = self._cut_short and not _whole_record(fragment)
        self._head = self._chain_head(fragment if self._cut_short and not self.torn_at_start else last)
        self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 - held open for the server's lifetime
        self._rotates = self.path.is_file()  # a device such as /dev/full is written, never renamed
        if self._rotates:
            self._retire_old()

    def _chain_head(self, newest: str | None) -> str:
        """The hash the next record chains to: the current file's newest whole line, else a rotated file's."""
        for path in reversed(log_files(self.path)[:-1]) if newest is None else []:
            newest, _ = _tail(path)
            if newest is not None:
                break
        return line_sha256(newest) if newest is not None else GENESIS

    def _rotate(self) -> None:
        self._fh.close()
        oldest = self.path.with_name(f"{self.path.name}.{self.backups}")
        if oldest.exists():
            self._retire(oldest, f"more than {self.backups} rotated files")
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115
        self._retire_old()

    def _retire_old(self) -> None:
        if self.max_age_days is None:
            return
        limit = time.time() - self.max_age_days * 86400
        for path in log_files(self.path)[:-1]:
            if path.is_file() and path.stat().st_mtime < limit:
                self._retire(path, f"last written over {self.max_age_days:g} days ago")

    def _retire(self, path: Path, why: str) -> None:
        """Delete a rotated file by the retention rule: counted, logged, and noted in the chain."""
        with open(path, "rb") as fh:
            records = sum(1 for line in fh if line.strip())
        path.unlink()
        self.retired += 1
        log.warning("audit retention: deleted %s (%d records): %s", path, records, why)
        self._notes.append(
            {"record": "retention", "at": time.time(), "deleted": path.name, "records": records, "why": why}
        )

    def _write(self, data: bytes) -> None:
        """Every byte or an OSError (os.write may write part of a buffer); fsync'ed when asked."""
        view = memoryview(data)
        while view:
            view = view[self._fh.write(view) or 0 :]
        if self.fsync:
            os.fsync(self._fh.fileno())

    @classmethod
    def configured(cls, settings: AuditSettings) -> AuditLog:
        """``[runtime.audit]``: the log file, its rotation and retention."""
        return cls(settings.log, settings.max_bytes, settings.backups, settings.max_age_days)

    def append_record(self, record: Message) -> bool:
        """A record that is a declared message (a model update, say), as its JSON."""
        return self.append(record.model_dump(mode="json"))

    def append(self, record: dict[str, Any]) -> bool:
        """Write one record; False (counted in ``failures``, said in ``error``) when the disk refused it."""
        with self._lock:
            try:
                line = self._line(record)
                size = os.fstat(self._fh.fileno()).st_size
                if self._rotates and size > 0 and size + len(line) > self.max_bytes:
                    self._rotate()
                if self._notes:  # retention lines go first, so the record chains to the last of them
                    while self._notes:
                        self._put(self._line(self._notes[0]))
                        self._notes.pop(0)
                    line = self._line(record)
                self._put(line)
            except OSError as exc:
                self.failures, self._cut_short = self.failures + 1, True
                self.error = self.last_error = f"{self.path}: {exc.strerror or exc}"
                return False
            self.error = None
            return True

    def _line(self, record: dict[str, Any]) -> str:
        """The record's line, chained to the line written last."""
        return json.dumps(record | {CHAIN_FIELD: self._head}, separators=(",", ":")) + "\n"

    def _put(self, line: str) -> None:
        self._write((b"\n" if self._cut_short else b"") + line.encode())
        self._head, self._cut_short = line_sha256(line), False

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()


@dataclass
class AuditVerdict:
    """What `edge-runtime audit verify` found: intact, or the first broken line; torn lines are reported apart."""

    records: int = 0
    broken: str | None = None  # "FILE:LINE: why", the first place the chain does not hold
    torn: list[str] = field(default_factory=list)  # "FILE:LINE" of lines a crash cut short
    starts_after_rotation: bool = False  # the oldest kept line chains to a file rotated away

    @property
    def intact(self) -> bool:
        return self.broken is None


def verify_audit(path: str | Path) -> AuditVerdict:
    """Walk the chain over every file of the log, oldest first."""
    verdict, expected = AuditVerdict(), None
    for f in log_files(path):
        if not f.is_file():
            continue
        for number, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{f}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                verdict.torn.append(where)
                continue
            prev = record.get(CHAIN_FIELD) if isinstance(record, dict) else None
            if prev is None:
                verdict.broken = f"{where}: no {CHAIN_FIELD} (an inserted line, or a log from before the chain)"
                return verdict
            if expected is None:
                verdict.starts_after_rotation = prev != GENESIS
            elif prev != expected:
                verdict.broken = f"{where}: {CHAIN_FIELD} does not match the line before it (edited or removed)"
                return verdict
            expected, verdict.records = line_sha256(line), verdict.records + 1
    return verdict


def read_audit(path: str | Path) -> list[dict[str, Any]]:
    """All records, oldest first, across rotated files; lines a crash tore are skipped (`audit verify` names them)."""
    records = []
    for f in log_files(path):
        if f.exists():
            for line in filter(str.strip, f.read_text().splitlines()):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return records


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The per-pair result records (the log also holds one final exam record per ended session)."""
    return [r for r in read_audit(path) if "record" not in r]


def read_final_exams(path: str | Path) -> list[dict[str, Any]]:
    """The final exam records (schema.ExamRecord), one per session that ended by TTL, capacity or shutdown, each
    joined with its comparison with the prior report when the report sender has made one."""
    records = read_audit(path)
    followups = {r.get("report"): r.get("followup") for r in records if r.get("record") == "exam_followup"}
    finals = [r for r in records if r.get("record") == "exam_final"]
    return [f | {"followup": followups[f.get("report")]} if f.get("report") in followups else f for f in finals]


class AuditResults:
    """The sink: every result and every exam's final answer, appended to the audit log (a display that is down loses
    nothing). A result is recorded before it is sent, so it says whether it was; a full disk never stops results."""

    name = "audit"

    def __init__(self, audit: AuditLog, stats: RuntimeStats, identities: ExamIdentities | None = None):
        """Args:
        audit: the log.
        stats: the counters.
        identities: pseudonymises each ended exam for reconciliation (None: the record names nobody).
        """
        self.audit, self.stats, self.identities = audit, stats, identities

    def on_result(self, result: ResultMessage, frame: object) -> None:
        result.audited = self._append(result.model_dump(mode="json", exclude={"audited"}))

    def on_exam_final(self, ended: EndedExam) -> None:
        record = ended.record
        if self.identities is not None:
            record = record.model_copy(update={"identity": self.identities.of(ended)})
        self._append(record.model_dump(mode="json"))

    def _append(self, record: dict) -> bool:
        written = self.audit.append(record)
        if not written:
            self.stats.count(Count.AUDIT_WRITE_FAILURES)
        return written
