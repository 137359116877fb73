"""The bedside server: receive -> validate -> (latest frame per session/view) -> decode -> preprocess ->
encode (int8) -> pair -> head -> publish + audit. Capture, inference and publishing are separate stages with
their own statistics, like a camera NVR pipeline.

Threads: the receive thread only drains the SUB socket, validates and keeps the newest frame per
(session, view), so receiving never waits for inference. The worker thread owns the results PUB socket (ZeroMQ
sockets are not thread-safe) and also emits heartbeats and metrics. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import zmq

from edge_runtime.audit import AuditLog
from edge_runtime.bundle import Bundle
from edge_runtime.config import RuntimeConfig
from edge_runtime.preprocess import PreprocessError, preprocess_frame
from edge_runtime.profiles import ScannerProfile
from edge_runtime.protocol import (
    TOPIC_FRAME,
    TOPIC_HEARTBEAT,
    TOPIC_METRICS,
    TOPIC_RESULT,
    VERSION,
    ProtocolError,
    check_payload,
    decode_payload,
    json_message,
    parse_header,
)
from edge_runtime.sessions import LatestFrames, PendingFrame, SessionStore, ViewFeatures
from edge_runtime.stats import RuntimeStats

log = logging.getLogger("edge_runtime")
BLANK_RANGE = 8  # a preprocessed frame whose pixels span fewer grey levels than this carries no image


def _buffer(part: zmq.Frame | bytes) -> memoryview:
    """Zero-copy view of one message part (zmq.Frame from recv_multipart(copy=False), or plain bytes)."""
    return memoryview(part.buffer if isinstance(part, zmq.Frame) else part)


class EdgeServer:
    def __init__(
        self,
        config: RuntimeConfig,
        bundle: Bundle,
        profiles: Mapping[str, ScannerProfile],
        context: zmq.Context | None = None,
    ):
        self.config = config
        self.bundle = bundle
        self.profiles = dict(profiles)
        self.ctx = context or zmq.Context.instance()
        self.stats = RuntimeStats()
        self.frames = LatestFrames(max_keys=2 * config.max_sessions)
        self.sessions = SessionStore(config.session_ttl_s, config.max_sessions, config.pairing_window_s)
        self.audit = AuditLog(config.audit_log, config.audit_max_bytes, config.audit_backups)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._auth: list[Any] = []
        self._last_seq: dict[str, int] = {}
        self._last_log: dict[str, float] = {}
        self.started_at = time.time()
        self.prometheus = None
        self.results_endpoint = config.results
        self._ready = threading.Event()

    # -- sockets -----------------------------------------------------------------------------------------------
    def _frames_socket(self) -> zmq.Socket:
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, self.config.receive_hwm)
        sub.setsockopt(zmq.LINGER, 0)
        sec = self.config.security
        if sec.enabled:
            from edge_runtime.security import make_client

            make_client(sub, sec.secret_key, sec.frames_server_key)
        sub.setsockopt(zmq.SUBSCRIBE, TOPIC_FRAME)
        sub.connect(self.config.frames)
        return sub

    def _results_socket(self) -> zmq.Socket:
        pub = self.ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 1000)
        sec = self.config.security
        if sec.enabled:
            from edge_runtime.security import make_server

            self._auth.append(make_server(self.ctx, pub, sec.secret_key, sec.allowed_clients))
        pub.bind(self.config.results)
        self.results_endpoint = pub.getsockopt(zmq.LAST_ENDPOINT).decode()
        return pub

    # -- receive stage -----------------------------------------------------------------------------------------
    def _log_reject(self, reason: str, detail: str) -> None:
        """Count every rejection; log each reason at most once per metrics period (no log floods)."""
        self.stats.reject(reason)
        now = time.monotonic()
        if now - self._last_log.get(reason, -1e9) >= self.config.metrics_period_s:
            self._last_log[reason] = now
            log.warning("rejected frame (%s): %s", reason, detail)

    def handle_message(self, parts: list[Any], received: float) -> None:
        """Validate one multipart message and keep it as the newest frame of its (session, view)."""
        self.stats.count("frames_received")
        if len(parts) != 3:
            self._log_reject("part_count", f"{len(parts)} parts, expected 3")
            return
        if _buffer(parts[0]) != TOPIC_FRAME:
            self._log_reject("bad_topic", "topic is not 'frame'")
            return
        try:
            header = parse_header(_buffer(parts[1]).tobytes(), set(self.profiles))
            profile = self.profiles[header.scanner]
            if (header.width, header.height) != profile.screen_size:
                raise ProtocolError(
                    "size_mismatch",
                    f"frame {header.width}x{header.height} but scanner profile "
                    f"{profile.name!r} is {profile.screen_width}x{profile.screen_height}",
                )
            payload = parts[2]
            check_payload(header, _buffer(payload).nbytes)
        except ProtocolError as exc:
            self._log_reject(exc.reason, exc.detail)
            return
        last = self._last_seq.get(header.session)
        if last is not None and header.seq > last + 1:
            self.stats.count("frames_lost_in_transport", header.seq - last - 1)
        self._last_seq[header.session] = header.seq
        dropped = self.frames.put(PendingFrame(header, payload, received))
        if dropped:
            self.stats.count(f"frames_dropped_{dropped}")

    def _receive_loop(self) -> None:
        sub = self._frames_socket()
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        self._ready.set()
        try:
            while not self._stop.is_set():
                if not poller.poll(100):
                    continue
                while True:  # drain everything queued, keeping only the newest per (session, view)
                    try:
                        parts = sub.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self.handle_message(parts, time.time())
        finally:
            sub.close(linger=0)

    # -- inference stage ---------------------------------------------------------------------------------------
    def process(self, frame: PendingFrame) -> dict[str, Any] | None:
        """One new frame: decode, preprocess, encode its view; run the head when the session is paired."""
        header = frame.header
        t0 = time.time()
        self.stats.observe("queue", (t0 - frame.received) * 1000)
        try:
            image = decode_payload(header, _buffer(frame.payload))
            t1 = time.time()
            tensor = preprocess_frame(image, self.profiles[header.scanner])
        except ProtocolError as exc:
            self._log_reject(exc.reason, exc.detail)
            return None
        except PreprocessError as exc:
            self._log_reject("size_mismatch", str(exc))
            return None
        t2 = time.time()
        if int(tensor.max()) - int(tensor.min()) < BLANK_RANGE:
            self._log_reject("blank", f"session {header.session} {header.view}: no image in the B-mode box")
            return None
        features = self.bundle.encode(header.view, tensor)
        t3 = time.time()
        self.stats.count("frames_encoded")
        stages = {
            "queue": (t0 - frame.received) * 1000,
            "decode": (t1 - t0) * 1000,
            "preprocess": (t2 - t1) * 1000,
            "encode": (t3 - t2) * 1000,
        }
        for stage in ("decode", "preprocess", "encode"):
            self.stats.observe(stage, stages[stage])
        paired = self.sessions.update(header.session, header.view, ViewFeatures(features, header.seq, header.ts), t3)
        if paired is None:
            return None
        p_fatty, pdff = self.bundle.head({v: paired[v].features for v in ("liver", "kidney_liver")})
        t4 = time.time()
        stages["head"] = (t4 - t3) * 1000
        self.stats.observe("head", stages["head"])
        return {
            "v": VERSION,
            "session": header.session,
            "trigger": header.view,
            "frames": {v: {"seq": paired[v].seq, "ts": paired[v].ts} for v in ("liver", "kidney_liver")},
            "p_fatty": round(p_fatty, 6),
            "fatty": bool(p_fatty >= self.bundle.threshold),
            "threshold": self.bundle.threshold,
            "pdff": round(pdff, 4),
            "model": {"name": self.bundle.name, "version": self.bundle.version, "sha": self.bundle.sha},
            "latency_ms": {k: round(v, 3) for k, v in stages.items()},
        }

    def _publish_result(self, pub: zmq.Socket, result: dict[str, Any]) -> None:
        t = time.time()
        result["latency_ms"]["end_to_end"] = round((t - result["frames"][result["trigger"]]["ts"]) * 1000, 3)
        pub.send_multipart(json_message(TOPIC_RESULT, result))
        t_sent = time.time()
        self.stats.observe("publish", (t_sent - t) * 1000)
        self.stats.observe("end_to_end", (t_sent - result["frames"][result["trigger"]]["ts"]) * 1000)
        self.stats.count("results_published")
        self.audit.append(result)

    def metrics(self) -> dict[str, Any]:
        snap = self.stats.snapshot()
        return {
            "v": VERSION,
            "ts": time.time(),
            **snap,
            "sessions": len(self.sessions),
            "sessions_expired": self.sessions.expired,
            "pending": len(self.frames),
        }

    def _worker_loop(self) -> None:
        pub = self._results_socket()
        self._ready.set()
        next_heartbeat = next_metrics = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_heartbeat:
                    pub.send_multipart(
                        json_message(
                            TOPIC_HEARTBEAT,
                            {
                                "v": VERSION,
                                "ts": time.time(),
                                "uptime_s": round(time.time() - self.started_at, 1),
                                "model": {
                                    "name": self.bundle.name,
                                    "version": self.bundle.version,
                                    "sha": self.bundle.sha,
                                },
                                "sessions": len(self.sessions),
                                "pending": len(self.frames),
                            },
                        )
                    )
                    next_heartbeat = now + self.config.heartbeat_period_s
                if now >= next_metrics:
                    pub.send_multipart(json_message(TOPIC_METRICS, self.metrics()))
                    next_metrics = now + self.config.metrics_period_s
                frame = self.frames.take(timeout=max(0.0, min(next_heartbeat, next_metrics) - time.monotonic()))
                if frame is None:
                    continue
                try:
                    result = self.process(frame)
                except Exception:  # a bug must not take the bedside down: count it, log it, keep serving
                    log.exception("inference failed for session %s", frame.header.session)
                    self.stats.count("inference_errors")
                    continue
                if result is not None:
                    self._publish_result(pub, result)
        finally:
            pub.close(linger=0)
            self.audit.close()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.config.prometheus_port:
            from edge_runtime.prometheus import PrometheusExporter

            self.prometheus = PrometheusExporter(self.config.prometheus_port)
            self.stats.add_listener(self.prometheus)
        worker = threading.Thread(target=self._worker_loop, name="worker", daemon=True)
        worker.start()
        self._ready.wait(5)
        self._ready.clear()
        receiver = threading.Thread(target=self._receive_loop, name="receiver", daemon=True)
        receiver.start()
        self._ready.wait(5)
        self._threads = [receiver, worker]

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the inference in hand, flush the audit log, close sockets with linger 0."""
        self._stop.set()
        self.frames.close()
        for thread in self._threads:
            thread.join(timeout)
        for auth in self._auth:
            auth.stop()
        if self.prometheus:
            self.prometheus.close()

    def serve_forever(self) -> None:
        """Run until SIGINT/SIGTERM, then stop cleanly."""
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.start()
        log.info(
            "serving %s %s (sha %s): frames from %s, results on %s",
            self.bundle.name,
            self.bundle.version,
            self.bundle.sha,
            self.config.frames,
            self.results_endpoint,
        )
        while not stop.wait(0.5):
            pass
        log.info("stopping: finishing the inference in hand")
        self.stop()


def warm_up(bundle: Bundle) -> np.ndarray:
    """Run the encoder once so the first real frame does not pay the interpreter's first-invoke costs."""
    probe = np.zeros((224, 224, 3), np.uint8)
    return bundle.encode("liver", probe)
