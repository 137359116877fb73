"""The bedside server: it runs what :func:`edge_runtime.compose.compose` declares. It starts the parts in order, keeps
the main thread for signals and supervision (edge_runtime.box.supervision: a dead or stalled part turns /healthz red
and stops the watchdog; a dead one ends the process, naming it), asks for a model update on SIGHUP, and stops the
parts in the reverse order. Nothing here imports TensorFlow."""

from __future__ import annotations

import logging
import signal
import threading

import zmq

from edge_runtime.box.supervision import ServiceManager, supervise
from edge_runtime.box.telemetry import Telemetry
from edge_runtime.compose import Bedside, compose
from edge_runtime.config import RuntimeConfig
from edge_runtime.contracts import HeartbeatMessage
from edge_runtime.model.served import ConfiguredModel, Served, ServedModel

log = logging.getLogger("edge_runtime")


class EdgeServer:
    """One bedside: the model it serves, its telemetry, and the parts compose() declared."""

    def __init__(
        self,
        config: RuntimeConfig,
        model: ServedModel,
        context: zmq.Context | None = None,
        loader: ConfiguredModel | None = None,
    ):
        """Args:
        config: the runtime's configuration.
        model: the verified, warmed-up model to serve first.
        context: the ZeroMQ context (default: the process's).
        loader: where SIGHUP reads the next bundle from; None: updates are refused.
        """
        self.config, self.served = config, Served(model, loader)
        self.telemetry = Telemetry.configured(config.metrics)
        self.bedside: Bedside = compose(config, self.served, self.telemetry, context)
        self.prometheus = None
        self._started: list = []

    @property
    def stats(self):
        return self.telemetry.stats

    @property
    def pipeline(self):
        return self.bedside.worker.pipeline

    @property
    def results_endpoint(self) -> str:
        return self.bedside.part("feed").endpoint

    def heartbeat(self) -> HeartbeatMessage:
        return self.bedside.status.heartbeat()

    def start(self) -> None:
        """Services, then the worker, then the sources; a part that cannot start stops those already started."""
        if self.config.metrics.prometheus_port:
            from edge_runtime.box.prometheus import PrometheusExporter

            self.prometheus = PrometheusExporter(self.config.metrics.prometheus_port, self.bedside.status.health)
            self.stats.add_listener(self.prometheus)
        for part in (*self.bedside.services, self.bedside.worker, *self.bedside.sources):
            try:
                part.start()
            except Exception:
                self.stop()
                raise
            self._started.append(part)

    def stop(self, timeout: float = 10.0) -> None:
        """Sources first (no store answered for frames nobody will take), then the worker (every exam ends with its
        final record), then the services (the feed sends what is left, the report sender stops), the audit log."""
        for part in reversed(self._started):
            part.stop()
        self._started.clear()
        self.bedside.audit.close()
        if self.prometheus:
            self.prometheus.close()
            self.prometheus = None

    def serve_forever(self) -> str | None:
        """Run until SIGINT/SIGTERM (None: stopped as asked) or until a part dies (what died); SIGHUP updates."""
        stop, update = threading.Event(), threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        signal.signal(signal.SIGHUP, lambda *_: update.set())
        self.start()
        bundle = self.served.current.bundle
        said = (bundle.name, bundle.version, bundle.sha, self.config.transport.frames, self.results_endpoint)
        log.info("serving %s %s (sha %s): frames from %s, results on %s", *said)
        manager = ServiceManager()
        manager.notify("READY=1", f"STATUS=serving {bundle.name} {bundle.sha}")
        asked = (update, lambda: self.served.updates.request(self.served.current.bundle.model_info))
        failure = supervise(self.telemetry.supervisor, stop, asked, manager)
        manager.notify("STOPPING=1")
        log.info("stopping: finishing the inference in hand")
        self.stop()
        return failure
