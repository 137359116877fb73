"""The bedside server: threads, sockets, heartbeat and lifecycle around the declared pipeline
(:func:`edge_runtime.compose.compose`); the main thread supervises the stages (edge_runtime.box.supervision) and takes
model updates on SIGHUP (edge_runtime.model.served). Nothing here imports TensorFlow."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping

import zmq

from edge_runtime.box.health import health_report, heartbeat_message, metrics_message
from edge_runtime.box.stats import RuntimeStats, ThrottledLog
from edge_runtime.box.supervision import ServiceManager, StageClock, supervise
from edge_runtime.compose import compose
from edge_runtime.config import RuntimeConfig
from edge_runtime.contracts import TOPIC_HEARTBEAT, TOPIC_METRICS, HeartbeatMessage
from edge_runtime.hospital import open_hospital
from edge_runtime.model.bundle import Bundle
from edge_runtime.model.served import ConfiguredModel, ModelUpdates, ServedModel
from edge_runtime.pipeline.exam import ExamModel
from edge_runtime.pipeline.runner import Pipeline
from edge_runtime.pipeline.sessions import LatestFrames, SessionStore
from edge_runtime.scanners.profiles import ScannerProfile
from edge_runtime.sinks.audit import AuditLog
from edge_runtime.sources.dicom import open_listener
from edge_runtime.sources.frames import FrameAdmission, ZmqFrameSource
from edge_runtime.wire.protocol import message_parts
from edge_runtime.wire.transport import publisher

log = logging.getLogger("edge_runtime")


class EdgeServer:
    """One bundle served at a time: the frame source, the pipeline, the box's health messages and model updates."""

    def __init__(
        self,
        config: RuntimeConfig,
        bundle: Bundle,
        profiles: Mapping[str, ScannerProfile],
        context: zmq.Context | None = None,
        loader: ConfiguredModel | None = None,
    ):
        """Args:
        config: the runtime's configuration.
        bundle: the verified, warmed-up bundle to serve first.
        profiles: every known scanner profile.
        context: the ZeroMQ context (default: the process's).
        loader: where SIGHUP reads the next bundle from; None: updates are refused.
        """
        self.config, self.ctx = config, context or zmq.Context.instance()
        self.stats, self.log = RuntimeStats(), ThrottledLog(config.metrics.period_s)
        self.frames = LatestFrames(max_keys=2 * config.sessions.max_active)
        self.sessions = SessionStore.configured(config, lambda: self.exam_model, self.frames.stored_sessions)
        self.audit = AuditLog(config.audit.log, config.audit.max_bytes, config.audit.backups, config.audit.max_age_days)
        self.admission = FrameAdmission(bundle, dict(profiles), config, self.frames, (self.stats, self.log))
        self.source = ZmqFrameSource(config, self.admission, self.ctx)
        self.hospital = open_hospital(config, self.stats)
        studies = self.hospital.studies if self.hospital else None
        self.dicom = open_listener(config, self.admission, self.frames, (self.stats, self.log), studies)
        self.updates, self.clock = ModelUpdates(loader), StageClock(config.metrics.stall_s)
        self.updates.on_refused = lambda update: self.audit.append(update.model_dump())
        self.started_at, self.results_endpoint, self.prometheus = time.time(), config.transport.results, None
        self._stop, self._ready = threading.Event(), threading.Event()
        self._threads: list[threading.Thread] = []
        self._startup_failure: BaseException | None = None
        self._install(ServedModel(bundle, dict(profiles)), None)  # the worker composes it again with its socket

    def _install(self, served: ServedModel, results: zmq.Socket | None) -> None:
        """Serve this model from the next frame on: its exam model, admission rules and pipeline."""
        self.bundle, self.profiles, self.model_since = served.bundle, served.profiles, time.time()
        self.exam_model = ExamModel.from_bundle(served.bundle.meta.exam, served.bundle.threshold, self.config.exam)
        self.admission.bundle, self.admission.profiles = served.bundle, served.profiles
        self.pipeline = self.compose(results)

    def compose(self, results: zmq.Socket | None) -> Pipeline:
        """The pipeline over this server's state; with a results socket it publishes, else it only audits."""
        state = (self.sessions, self.audit, self.stats, self.log)
        return compose(self.bundle, self.config, self.profiles, state, results, self.hospital)

    def heartbeat(self) -> HeartbeatMessage:
        return heartbeat_message(self)

    def _receive_loop(self) -> None:
        try:
            self.source.run(self._stop, self._ready.set, lambda: self.clock.tick("receiver"))
        except Exception as exc:  # e.g. an unreachable endpoint: start() reports it, the supervisor after that
            log.exception("receive stage stopped")
            self.clock.ended("receiver", f"{type(exc).__name__}: {exc}")
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
        except Exception as exc:  # e.g. the results endpoint is taken: start() reports it, the supervisor after that
            log.exception("results stage stopped")
            self.clock.ended("worker", f"{type(exc).__name__}: {exc}")
            self._startup_failure = exc
            self._ready.set()
        finally:
            self.pipeline.end_exams(ending="shutdown")
            self.audit.close()

    def _serve(self, pub: zmq.Socket) -> None:
        """Until stopped: heartbeats and metrics on time, a new model between frames, the pipeline on every frame."""
        metrics = self.config.metrics
        next_heartbeat = next_metrics = time.monotonic()
        while not self._stop.is_set():
            self.clock.tick("worker")
            now = time.monotonic()
            if now >= next_heartbeat:
                self.pipeline.end_exams()
                pub.send_multipart(message_parts(TOPIC_HEARTBEAT, self.heartbeat()))
                next_heartbeat = now + metrics.heartbeat_period_s
            if now >= next_metrics:
                pub.send_multipart(message_parts(TOPIC_METRICS, metrics_message(self)))
                next_metrics = now + metrics.period_s
            self._swap_if_updated(pub)
            frame = self.frames.take(timeout=max(0.0, min(next_heartbeat, next_metrics, now + 0.5) - time.monotonic()))
            if frame is None:
                continue
            try:
                self.pipeline.run(frame)
            except Exception:  # a bug must not take the bedside down: count it, log it, keep serving
                self.pipeline.fail(frame)

    def _swap_if_updated(self, pub: zmq.Socket) -> None:
        """A verified, warmed-up model waits: end every exam with its final record, then serve the new model."""
        served = self.updates.take()
        if served is not None:
            previous = self.bundle.model_info
            ended = self.pipeline.end_exams("shutdown", f"model update to {served.bundle.name} {served.bundle.sha}")
            self._install(served, pub)
            self.audit.append(self.updates.swapped(previous, served, ended).model_dump())

    def _start_thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        self._ready.clear()
        thread = threading.Thread(target=target, name=name, daemon=True)
        self.clock.watch(name, thread)
        thread.start()
        self._ready.wait(10)
        if self._startup_failure is not None:
            self.stop()
            raise self._startup_failure
        return thread

    def start(self) -> None:
        if self.config.metrics.prometheus_port:
            from edge_runtime.box.prometheus import PrometheusExporter

            self.prometheus = PrometheusExporter(self.config.metrics.prometheus_port, lambda: health_report(self))
            self.stats.add_listener(self.prometheus)
        if self.dicom is not None:  # first: a DICOM port that is taken refuses the start before any thread runs
            self.dicom.start()
        if self.hospital is not None:
            self.hospital.start()
        self._threads = [self._start_thread(self._worker_loop, "worker")]
        self._threads.append(self._start_thread(self._receive_loop, "receiver"))

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the inference in hand, flush the audit log, close sockets with linger 0."""
        for part in (self.dicom, self.hospital):  # no store answered for frames the worker will not take
            if part is not None:
                part.stop()
        self._stop.set()
        self.frames.close()
        for thread in self._threads:
            thread.join(timeout)
        if self.prometheus:
            self.prometheus.close()

    def serve_forever(self) -> str | None:
        """Run until SIGINT/SIGTERM (None: stopped as asked) or until a stage dies (what died); SIGHUP updates."""
        stop, update = threading.Event(), threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        signal.signal(signal.SIGHUP, lambda *_: update.set())
        self.start()
        info = (self.bundle.name, self.bundle.version, self.bundle.sha, self.config.transport.frames)
        log.info("serving %s %s (sha %s): frames from %s, results on %s", *info, self.results_endpoint)
        manager = ServiceManager()
        manager.notify("READY=1", f"STATUS=serving {self.bundle.name} {self.bundle.sha}")
        failure = supervise(self.clock, stop, (update, lambda: self.updates.request(self.bundle.model_info)), manager)
        manager.notify("STOPPING=1")
        log.info("stopping: finishing the inference in hand")
        self.stop()
        return failure
