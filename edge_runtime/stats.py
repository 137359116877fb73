"""Per-stage latency and counters: what the metrics topic, the Prometheus endpoint and benchmarks report.

Latencies keep a bounded window of recent samples (so memory stays flat over days) for percentiles, plus
lifetime count and max. Thread-safe: the receive thread and the worker both record.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any

import numpy as np

STAGES = ("queue", "decode", "preprocess", "encode", "gate", "head", "publish", "end_to_end")
PERCENTILES = (50, 90, 99, 99.9)


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
        self.latency = {stage: LatencyWindow(window) for stage in STAGES}
        self._listeners: list[Any] = []

    def add_listener(self, listener: Any) -> None:
        """An object with count(name, n), reject(reason) and observe(stage, ms): e.g. the Prometheus exporter."""
        self._listeners.append(listener)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n
        for listener in self._listeners:
            listener.count(name, n)

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1
            self.counters["frames_rejected"] += 1
        for listener in self._listeners:
            listener.reject(reason)

    def observe(self, stage: str, ms: float) -> None:
        with self._lock:
            self.latency[stage].add(ms)
        for listener in self._listeners:
            listener.observe(stage, ms)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "counters": dict(self.counters),
                "rejected": dict(self.rejected),
                "latency_ms": {stage: window.summary() for stage, window in self.latency.items()},
            }
