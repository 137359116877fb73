"""Per-stage latency and counters: what the metrics topic, the Prometheus endpoint and benchmarks report, and a log
that says each kind of trouble at most once per metrics period.

Latencies keep a bounded window of recent samples (so memory stays flat over days) for percentiles, plus lifetime
count and max. One window per :class:`Stage`, in its order. Thread-safe: the receive thread and the worker both
record.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from typing import Any

import numpy as np

from edge_runtime.contracts import Count, Reject, Stage

PERCENTILES = (50, 90, 99, 99.9)
log = logging.getLogger("edge_runtime")


class LatencyWindow:
    def __init__(self, size: int = 4096):
        self.samples: deque[float] = deque(maxlen=size)
        self.count = 0
        self.max = 0.0

    def add(self, ms: float) -> None:
        self.samples.append(ms)
        self.count += 1
        self.max = max(self.max, ms)

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {"count": self.count}
        values = np.fromiter(self.samples, dtype=np.float64)
        out = {f"p{p:g}".replace(".", "_"): float(np.percentile(values, p)) for p in PERCENTILES}
        out.update(count=self.count, max=self.max, mean=float(values.mean()))
        return out


class RuntimeStats:
    def __init__(self, window: int = 4096):
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.latency = {stage: LatencyWindow(window) for stage in Stage}
        self._listeners: list[Any] = []

    def add_listener(self, listener: Any) -> None:
        """An object with count(name, n), reject(reason) and observe(stage, ms): e.g. the Prometheus exporter."""
        self._listeners.append(listener)

    def count(self, name: Count, n: int = 1) -> None:
        with self._lock:
            self.counters[str(name)] += n
        for listener in self._listeners:
            listener.count(name, n)

    def reject(self, reason: Reject) -> None:
        with self._lock:
            self.rejected[str(reason)] += 1
            self.counters[Count.FRAMES_REJECTED.value] += 1
        for listener in self._listeners:
            listener.reject(reason)

    def observe(self, stage: Stage, ms: float) -> None:
        with self._lock:
            self.latency[stage].add(ms)
        for listener in self._listeners:
            listener.observe(stage, ms)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "counters": dict(self.counters),
                "rejected": dict(self.rejected),
                "latency_ms": {str(stage): window.summary() for stage, window in self.latency.items()},
            }


class ThrottledLog:
    """Warnings at most once per period per key: a hostile sender must not flood the bedside's log."""

    def __init__(self, period_s: float):
        self.period_s = period_s
        self._last: dict[str, float] = {}

    def once(self, key: str, detail: str, what: str = "frame") -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self.period_s:
            self._last[key] = now
            log.warning("%s (%s): %s", what, key, detail)

    def error(self, text: str) -> None:
        """A bug caught while serving: always logged, with its traceback."""
        log.exception(text)
