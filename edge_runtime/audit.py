"""Append-only JSON-lines audit log of every result and every session's final exam: a display that is down
loses nothing.

Each line is flushed (and fsync'ed) as it is written; files rotate by size (results.jsonl -> .1 -> .2 ...).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class AuditLog:
    def __init__(self, path: str | Path, max_bytes: int = 50_000_000, backups: int = 5, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        self._lock = threading.Lock()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open for the server's lifetime

    def _rotate(self) -> None:
        self._fh.close()
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            if self._fh.tell() + len(line) > self.max_bytes and self._fh.tell() > 0:
                self._rotate()
            self._fh.write(line)
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                self._fh.close()


def read_audit(path: str | Path) -> list[dict[str, Any]]:
    """All records, oldest first, across rotated files."""
    path = Path(path)
    files = sorted(
        path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0
    )
    records = []
    for f in [*files, path]:
        if f.exists():
            records += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return records


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The per-pair result records (the log also holds one final exam record per ended session)."""
    return [r for r in read_audit(path) if "record" not in r]


def read_final_exams(path: str | Path) -> list[dict[str, Any]]:
    """The final exam records (schema.ExamRecord), one per session that ended by TTL, capacity or shutdown."""
    return [r for r in read_audit(path) if r.get("record") == "exam_final"]
