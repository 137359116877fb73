"""Prometheus endpoint with the same counters and latency histograms as the metrics topic."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)


class PrometheusExporter:
    def __init__(self, port: int, address: str = "127.0.0.1"):
        self.registry = CollectorRegistry()
        self.events = Counter(
            "fatty_liver_edge_events", "Frames and inferences by event", ["event"], registry=self.registry
        )
        self.rejected = Counter(
            "fatty_liver_edge_frames_rejected", "Malformed frames by reason", ["reason"], registry=self.registry
        )
        self.latency = Histogram(
            "fatty_liver_edge_stage_seconds", "Per-stage latency", ["stage"], buckets=BUCKETS, registry=self.registry
        )
        self.server, self.thread = start_http_server(port, addr=address, registry=self.registry)

    def count(self, name: str, n: int) -> None:
        self.events.labels(name).inc(n)

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def observe(self, stage: str, ms: float) -> None:
        self.latency.labels(stage).observe(ms / 1000.0)

    def close(self) -> None:
        self.server.shutdown()
