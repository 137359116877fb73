"""Prometheus endpoint with the same counters and latency histograms as the metrics topic, and ``/healthz``: 200
while every stage is ticking, 503 naming the stage that died or stalled (edge_runtime.box.supervision)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app

BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # scrapes every few seconds would flood the journal
        pass


class _ReportQueueGauges:
    """The PACS report queue as gauges, read from the health report at each scrape (nothing to keep in step)."""

    def __init__(self, health: Callable[[], dict]):
        self.health = health

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        pacs = self.health().get("pacs")
        if not pacs:
            return
        gauge = GaugeMetricFamily("fatty_liver_edge_report_queue", "PACS reports waiting, by state", labels=["state"])
        for key in ("queued", "oldest_age_s", "not_linked"):
            gauge.add_metric([key], float(pacs.get(key) or 0))
        yield gauge


VERDICT_GAUGE = {"pass": 1.0, "fail": 0.0, "insufficient": -1.0}


class _SiteWatchGauges:
    """The last reconciliation's verdict and the standing drift alarms, read from the health report at each scrape."""

    def __init__(self, health: Callable[[], dict]):
        self.health = health

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        said = self.health()
        outcomes, drift = said.get("outcomes"), said.get("drift")
        if outcomes:
            verdict = GaugeMetricFamily(
                "fatty_liver_edge_outcomes_verdict", "Last reconciliation with MRI-PDFF: 1 pass, 0 fail, -1 too few"
            )
            verdict.add_metric([], VERDICT_GAUGE[outcomes["verdict"]])
            exams = GaugeMetricFamily("fatty_liver_edge_outcomes_exams", "Exams reconciled with MRI-PDFF")
            exams.add_metric([], float(outcomes["exams"]))
            yield from (verdict, exams)
        if drift is not None:
            alarm = GaugeMetricFamily(
                "fatty_liver_edge_drift_alarm", "1 while a scanner's statistic is beyond its bound",
                labels=["scanner", "statistic"],
            )  # fmt: skip
            for a in drift:
                alarm.add_metric([a["scanner"], a["statistic"]], 1.0)
            yield alarm


class PrometheusExporter:
    def __init__(self, port: int, health: Callable[[], dict], address: str = "127.0.0.1"):
        """Serve /metrics (any path) and /healthz, whose body is ``health()`` and whose status its ``healthy``."""
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
        self.registry.register(_ReportQueueGauges(health))
        self.registry.register(_SiteWatchGauges(health))
        self.health, self._metrics = health, make_wsgi_app(self.registry)
        self.server = make_server(address, port, self._app, _ThreadingServer, _QuietHandler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, name="prometheus", daemon=True)
        self.thread.start()

    def _app(self, environ: dict, start_response: Callable) -> list[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            return self._metrics(environ, start_response)
        health = self.health()
        body = json.dumps(health).encode()
        status = "200 OK" if health.get("healthy") else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def count(self, name: str, n: int) -> None:
        self.events.labels(name).inc(n)

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def observe(self, stage: str, ms: float) -> None:
        self.latency.labels(stage).observe(ms / 1000.0)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
