"""The bedside server: threads, sockets, heartbeat and lifecycle around the declared pipeline.

The data flow itself is :func:`edge_runtime.pipeline.compose`. Here: the receive thread runs the frame source
(it only drains its SUB socket, validates and keeps the newest frame per (session, view), so receiving never waits
for inference); the worker thread owns the results PUB socket (ZeroMQ sockets are not thread-safe), runs the
pipeline on each frame and emits heartbeats and metrics. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping

import numpy as np
import zmq

from edge_runtime.audit import AuditLog
from edge_runtime.bundle import Bundle
from edge_runtime.config import RuntimeConfig
from edge_runtime.contracts import (
    INPUT_SHAPE,
    TOPIC_HEARTBEAT,
    TOPIC_METRICS,
    VIEWS,
    AuditHealth,
    HeartbeatMessage,
    MetricsMessage,
)
from edge_runtime.exam import ExamModel, ExamTracker
from edge_runtime.pipeline import FrameAdmission, Pipeline, ZmqFrameSource, compose
from edge_runtime.profiles import ScannerProfile
from edge_runtime.protocol import message_parts
from edge_runtime.sessions import LatestFrames, SessionStore
from edge_runtime.stats import RuntimeStats, ThrottledLog
from edge_runtime.transport import publisher

log = logging.getLogger("edge_runtime")


class EdgeServer:
    """One bundle served: the frame source, the pipeline and the box's health messages."""

    def __init__(
        self,
        config: RuntimeConfig,
        bundle: Bundle,
        profiles: Mapping[str, ScannerProfile],
        context: zmq.Context | None = None,
    ):
        self.config, self.bundle, self.profiles = config, bundle, dict(profiles)
        self.ctx = context or zmq.Context.instance()
        self.stats = RuntimeStats()
        self.log = ThrottledLog(config.metrics.period_s)
        self.frames = LatestFrames(max_keys=2 * config.sessions.max_active)
        self.exam_model = ExamModel.from_bundle(bundle.meta.exam, bundle.threshold, config.exam)
        sessions = config.sessions
        self.sessions = SessionStore(
            sessions.ttl_s,
            sessions.max_active,
            sessions.pairing_window_s,
            lambda: ExamTracker(config.exam, self.exam_model),
        )
        self.audit = AuditLog(config.audit.log, config.audit.max_bytes, config.audit.backups)
        reporting = (self.stats, self.log)
        self.admission = FrameAdmission(bundle, self.profiles, config, self.frames, reporting)
        self.source = ZmqFrameSource(config, self.admission, self.ctx)
        self.pipeline = self.compose(None)  # replaced by the publishing pipeline when the worker starts
        self.started_at = time.time()
        self.results_endpoint = config.transport.results
        self.prometheus = None
        self._stop, self._ready = threading.Event(), threading.Event()
        self._threads: list[threading.Thread] = []
        self._startup_failure: BaseException | None = None

    def compose(self, results: zmq.Socket | None) -> Pipeline:
        """The pipeline over this server's state; with a results socket it publishes, else it only audits."""
        state = (self.sessions, self.audit, self.stats, self.log)
        return compose(self.bundle, self.config, self.profiles, state, results)

    # -- health --------------------------------------------------------------------------------------------------------
    def metrics(self) -> MetricsMessage:
        return MetricsMessage(
            ts=time.time(),
            **self.stats.snapshot(),
            sessions=len(self.sessions),
            sessions_expired=self.sessions.expired,
            pending=len(self.frames),
        )

    def heartbeat(self) -> HeartbeatMessage:
        return HeartbeatMessage(
            ts=time.time(),
            uptime_s=round(time.time() - self.started_at, 1),
            model=self.bundle.model_info,
            sessions=len(self.sessions),
            pending=len(self.frames),
            calibrated=self.exam_model.calibrated,
            validation=self.bundle.validation,
            exams={name: session.exam.status() for name, session in self.sessions.active()},
            audit=AuditHealth(ok=self.audit.error is None, error=self.audit.error, failures=self.audit.failures),
        )

    # -- threads -------------------------------------------------------------------------------------------------------
    def _receive_loop(self) -> None:
        try:
            self.source.run(self._stop, self._ready.set)
        except Exception as exc:  # e.g. an unreachable endpoint: start() reports it
            log.exception("receive stage stopped")
            self._startup_failure = exc
            self._ready.set()

    def _worker_loop(self) -> None:
        curve = self.config.security.results_keys()
        try:
            with publisher(self.config.transport.results, hwm=1000, curve=curve, context=self.ctx) as pub:
                self.results_endpoint = pub.getsockopt(zmq.LAST_ENDPOINT).decode()
                self.pipeline = self.compose(pub)
                self._ready.set()
                self._serve(pub)
        except Exception as exc:  # e.g. the results endpoint is taken: start() reports it
            log.exception("results stage stopped")
            self._startup_failure = exc
            self._ready.set()
        finally:
            self.pipeline.end_exams(shutdown=True)
            self.audit.close()

    def _serve(self, pub: zmq.Socket) -> None:
        """Until stopped: heartbeats and metrics on time, and the pipeline on every frame in between."""
        metrics = self.config.metrics
        next_heartbeat = next_metrics = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_heartbeat:
                self.pipeline.end_exams()
                pub.send_multipart(message_parts(TOPIC_HEARTBEAT, self.heartbeat()))
                next_heartbeat = now + metrics.heartbeat_period_s
            if now >= next_metrics:
                pub.send_multipart(message_parts(TOPIC_METRICS, self.metrics()))
                next_metrics = now + metrics.period_s
            frame = self.frames.take(timeout=max(0.0, min(next_heartbeat, next_metrics) - time.monotonic()))
            if frame is None:
                continue
            try:
                self.pipeline.run(frame)
            except Exception:  # a bug must not take the bedside down: count it, log it, keep serving
                self.pipeline.fail(frame)

    # -- lifecycle -----------------------------------------------------------------------------------------------------
    def _start_thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        self._ready.clear()
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._ready.wait(10)
        if self._startup_failure is not None:
            self.stop()
            raise self._startup_failure
        return thread

    def start(self) -> None:
        if self.config.metrics.prometheus_port:
            from edge_runtime.prometheus import PrometheusExporter

            self.prometheus = PrometheusExporter(self.config.metrics.prometheus_port)
            self.stats.add_listener(self.prometheus)
        self._threads = [self._start_thread(self._worker_loop, "worker")]
        self._threads.append(self._start_thread(self._receive_loop, "receiver"))

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the inference in hand, flush the audit log, close sockets with linger 0."""
        self._stop.set()
        self.frames.close()
        for thread in self._threads:
            thread.join(timeout)
        if self.prometheus:
            self.prometheus.close()

    def serve_forever(self) -> None:
        """Run until SIGINT/SIGTERM, then stop cleanly."""
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.start()
        info = (self.bundle.name, self.bundle.version, self.bundle.sha, self.config.transport.frames)
        log.info("serving %s %s (sha %s): frames from %s, results on %s", *info, self.results_endpoint)
        while not stop.wait(0.5):
            pass
        log.info("stopping: finishing the inference in hand")
        self.stop()


def warm_up(bundle: Bundle) -> np.ndarray:
    """Run the encoder once so the first real frame does not pay the interpreter's first-invoke costs."""
    return bundle.encode(VIEWS[0], np.zeros(INPUT_SHAPE, np.uint8))
