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
from edge_runtime.exam import ExamModel, ExamTracker
from edge_runtime.gate import COLOUR, GUARD_LIMIT
from edge_runtime.preprocess import PreprocessError, preprocess_frame
from edge_runtime.profiles import ScannerProfile
from edge_runtime.protocol import ProtocolError, check_payload, decode_payload, message_parts, parse_header
from edge_runtime.schema import (
    AUTO_VIEW,
    INPUT_SHAPE,
    TOPIC_FRAME,
    TOPIC_HEARTBEAT,
    TOPIC_METRICS,
    TOPIC_RESULT,
    TOPIC_THUMBNAIL,
    VIEWS,
    ExamEstimate,
    ExamRecord,
    FrameHeader,
    FrameRef,
    HeartbeatMessage,
    MetricsMessage,
    ResultMessage,
    ThumbnailMessage,
)
from edge_runtime.sessions import LatestFrames, PendingFrame, SessionStore, ViewFeatures, frame_fingerprint
from edge_runtime.stats import RuntimeStats
from edge_runtime.thumbnails import thumbnail_jpeg, thumbnail_message
from edge_runtime.transport import publisher, subscriber

Routed = tuple[str, float | None]  # the view a frame is filed under, and the gate's confidence in it

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
        self.exam_model = ExamModel.from_bundle(bundle.meta.exam, bundle.threshold)
        self.sessions = SessionStore(
            config.session_ttl_s,
            config.max_sessions,
            config.pairing_window_s,
            lambda: ExamTracker(config.exam, self.exam_model),
        )
        self.audit = AuditLog(config.audit_log, config.audit_max_bytes, config.audit_backups)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_seq: dict[str, int] = {}
        self._last_log: dict[str, float] = {}
        self.started_at = time.time()
        self.prometheus = None
        self.results_endpoint = config.results
        self._ready = threading.Event()
        self._startup_failure: BaseException | None = None
        self._outbox: list[ThumbnailMessage] = []  # sent right after the result that produced them

    # -- receive stage -----------------------------------------------------------------------------------------
    def _log_reject(self, reason: str, detail: str) -> None:
        """Count every rejection; log each reason at most once per metrics period (no log floods)."""
        self.stats.reject(reason)
        self._log_once(reason, detail, "rejected frame")

    def _log_once(self, reason: str, detail: str, what: str = "frame") -> None:
        now = time.monotonic()
        if now - self._last_log.get(reason, -1e9) >= self.config.metrics_period_s:
            self._last_log[reason] = now
            log.warning("%s (%s): %s", what, reason, detail)

    def _validated_header(self, parts: list[Any]):
        """The frame's header once the message passes every check that needs no decoding."""
        if len(parts) != 3:
            raise ProtocolError("part_count", f"{len(parts)} parts, expected 3")
        if _buffer(parts[0]) != TOPIC_FRAME:
            raise ProtocolError("bad_topic", "topic is not 'frame'")
        header = parse_header(_buffer(parts[1]).tobytes(), set(self.profiles))
        profile = self.profiles[header.scanner]
        if not profile.fits(header.width, header.height):
            raise ProtocolError(
                "size_mismatch",
                f"frame {header.width}x{header.height} but scanner profile {profile.name!r} is "
                f"{profile.expected_size()}",
            )
        self._check_seen(header.scanner)
        if header.view == AUTO_VIEW and (self.bundle.gate is None or self.bundle.gate.view_head is None):
            raise ProtocolError(
                "no_view_model",
                f"session {header.session} sent view 'auto' but bundle {self.bundle.name!r} has no view gate; "
                "send liver or kidney_liver",
            )
        check_payload(header, _buffer(parts[2]).nbytes)
        return header

    def _check_seen(self, scanner: str) -> None:
        """A scanner layout the model never trained on is refused, unless the site allows it (then counted)."""
        trained = self.bundle.meta.scanners
        if trained is None or scanner in trained:
            return
        if self.config.allow_unseen_scanners:
            self.stats.count("frames_unseen_scanner")
            return
        raise ProtocolError(
            "unseen_scanner",
            f"scanner {scanner!r} is not one bundle {self.bundle.name!r} was trained on "
            f"({', '.join(sorted(trained))}); set allow_unseen_scanners to serve it anyway",
        )

    def handle_message(self, parts: list[Any], received: float) -> None:
        """Validate one multipart message and keep it as the newest frame of its (session, view)."""
        self.stats.count("frames_received")
        try:
            header = self._validated_header(parts)
        except ProtocolError as exc:
            self._log_reject(exc.reason, exc.detail)
            return
        last = self._last_seq.get(header.session)
        if last is not None and header.seq > last + 1:
            self.stats.count("frames_lost_in_transport", header.seq - last - 1)
        self._last_seq[header.session] = header.seq
        dropped = self.frames.put(PendingFrame(header, parts[2], received))
        if dropped:
            self.stats.count(f"frames_dropped_{dropped}")

    def _receive_loop(self) -> None:
        curve = self.config.security.frames_keys()
        try:
            with subscriber(
                self.config.frames, [TOPIC_FRAME], hwm=self.config.receive_hwm, curve=curve, context=self.ctx
            ) as sub:
                self._ready.set()
                while not self._stop.is_set():
                    if sub.poll(100):
                        self._drain(sub)
        except Exception as exc:  # e.g. an unreachable endpoint: start() reports it
            log.exception("receive stage stopped")
            self._startup_failure = exc
            self._ready.set()

    def _drain(self, sub: zmq.Socket) -> None:
        """Take everything queued, keeping only the newest frame per (session, view)."""
        while True:
            try:
                parts = sub.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.handle_message(parts, time.time())

    # -- inference stage ---------------------------------------------------------------------------------------
    def _model_input(self, frame: PendingFrame) -> np.ndarray | None:
        """Decode and preprocess; None (counted under its reason) when the frame carries no usable image."""
        header = frame.header
        try:
            image = decode_payload(header, _buffer(frame.payload))
            frame.stages["decode"] = time.time()
            tensor = preprocess_frame(image, self.profiles[header.scanner], harmonisation=self.bundle.harmonisation)
        except ProtocolError as exc:
            self._log_reject(exc.reason, exc.detail)
            return None
        except PreprocessError as exc:
            self._log_reject("size_mismatch", str(exc))
            return None
        frame.stages["preprocess"] = time.time()
        if int(tensor.max()) - int(tensor.min()) < BLANK_RANGE:
            self._log_reject("blank", f"session {header.session} {header.view}: no image in the B-mode box")
            return None
        return tensor

    def _thumbnails(self, session: str, paired: dict, now: float) -> list[ThumbnailMessage]:
        """The pair's view crops as JPEGs, when thumbnails are on and this session's period has passed. Encoded
        here, not per frame: at most one pair per period goes out, so most frames' crops are never sent."""
        state = self.sessions.get(session)
        if not self.config.thumbnails or state is None or now - state.thumbnails_sent < self.config.thumbnail_period_s:
            return []
        state.thumbnails_sent = now
        return [
            thumbnail_message(session, view, paired[view].seq, paired[view].ts, thumbnail_jpeg(paired[view].crop))
            for view in VIEWS
            if paired[view].crop is not None
        ]

    def process(self, frame: PendingFrame) -> ResultMessage | None:
        """One new frame: decode, preprocess, encode its view; run the head when the session is paired."""
        header = frame.header
        frame.stages["queue"] = time.time()
        self.stats.observe("queue", frame.stage_ms()["queue"])
        tensor = self._model_input(frame)
        if tensor is None:
            return None
        features = self.bundle.encode(header.view if header.view in VIEWS else VIEWS[0], tensor)
        frame.stages["encode"] = time.time()
        self.stats.count("frames_encoded")
        routed = self._route(header, tensor, features)
        paired = self._file(header, routed, tensor, features, time.time()) if routed else None
        frame.stages["gate"] = time.time()  # the gate stage: colour check, view head, repeat check, guard
        if paired is None:
            stages = frame.stage_ms()
            for stage in ("decode", "preprocess", "encode", "gate"):
                self.stats.observe(stage, stages[stage])
            return None
        p_fatty, pdff = self.bundle.head({v: paired[v].features for v in VIEWS})
        frame.stages["head"] = time.time()
        outside = any(paired[v].outside for v in VIEWS)
        exam = self.sessions.get(header.session).exam.add(header.ts, p_fatty, pdff, outside)
        if outside and self.config.out_of_distribution == "withhold":
            self.stats.count("results_withheld_out_of_distribution")
            return None
        self._outbox += self._thumbnails(header.session, paired, frame.stages["head"])
        return self._result(frame, routed[0], paired, (p_fatty, pdff), exam)

    def _file(
        self, header: FrameHeader, routed: Routed, tensor: np.ndarray, features: np.ndarray, now: float
    ) -> dict | None:
        """File a routed frame's features in its session (guard-checked); both views' features once paired.
        A repeat of the view's last kept frame (a frozen screen) is counted frames_repeated and not filed.

        Args:
            header: the frame's header.
            routed: (view, gate confidence) from _route.
            tensor: its model input.
            features: its encoder features.
            now: the time the gate finished.
        """
        view, confidence = routed
        fingerprint = frame_fingerprint(tensor)
        if self.sessions.repeats(header.session, view, fingerprint, self.config.repeated_frame_correlation, now):
            self.stats.count("frames_repeated")
            return None
        crop = tensor if self.config.thumbnails else None
        outside = self._outside(view, tensor, features)
        kept = ViewFeatures(features, header.seq, header.ts, crop, confidence, outside, fingerprint)
        return self.sessions.update(header.session, view, kept, now)

    def _route(self, header: FrameHeader, tensor: np.ndarray, features: np.ndarray) -> Routed | None:
        """The view a frame is paired under, with the gate's confidence; None when the gate keeps it out.

        A named view is used as sent unless the gate confidently says otherwise; the disagreement is counted
        view_mismatch whoever wins (with view_authority = "header", or a gate below its bar, the header does).
        An 'auto' frame needs a confident liver or kidney_liver prediction. A grey-scale check comes first:
        colour in the box (Doppler, overlays) is not a view. Frames kept out are counted
        gate_rejected_<predicted, or colour>.
        """
        head = self.bundle.gate.view_head if self.bundle.gate else None
        if head is None:
            return header.view, None
        predicted, confidence = self.bundle.gate.sort(tensor, features)
        if predicted == COLOUR:  # B-mode is grey: colour flow or an overlay is not a view, whatever is named
            self.stats.count("gate_rejected")
            self.stats.count(f"gate_rejected_{COLOUR}")
            return None
        confident = confidence >= self.bundle.meta.view_gate.confidence_floor
        named = header.view in VIEWS
        disagrees = named and confident and predicted != header.view
        if disagrees:
            self.stats.count("view_mismatch")
            self._log_once("view_mismatch", f"session {header.session}: header says {header.view}, gate {predicted}")
        header_wins = self.config.view_authority == "header" or not self.bundle.meta.view_gate.meets_bar
        if named and (header_wins or not disagrees):
            return header.view, confidence if predicted == header.view else None
        if predicted in VIEWS and confident:
            return predicted, confidence
        self.stats.count("gate_rejected")
        self.stats.count(f"gate_rejected_{predicted}")
        return None

    def _outside(self, view: str, tensor: np.ndarray, features: np.ndarray) -> bool | None:
        """Whether the guard flags this frame (counted, and by which part); None when the bundle has no guard."""
        scored = self.bundle.gate.guard_score(view, tensor, features) if self.bundle.gate else None
        if scored is None:
            return None
        score, reason = scored
        outside = score > GUARD_LIMIT
        if outside:
            self.stats.count("frames_out_of_distribution")
            self.stats.count(f"frames_out_of_distribution_{reason}")
        return outside

    def _result(
        self, frame: PendingFrame, view: str, paired: dict, outputs: tuple[float, float], exam: ExamEstimate
    ) -> ResultMessage:
        p_fatty, pdff = outputs
        stages = frame.stage_ms()
        for stage in ("decode", "preprocess", "encode", "gate", "head"):
            self.stats.observe(stage, stages[stage])
        refs = {
            v: FrameRef(
                seq=paired[v].seq,
                ts=paired[v].ts,
                view_confidence=None if paired[v].view_confidence is None else round(paired[v].view_confidence, 4),
                out_of_distribution=paired[v].outside,
            )
            for v in VIEWS
        }
        guarded = all(paired[v].outside is not None for v in VIEWS)
        return ResultMessage(
            session=frame.header.session,
            trigger=view,
            frames=refs,
            out_of_distribution=any(paired[v].outside for v in VIEWS) if guarded else None,
            p_fatty=round(p_fatty, 6),
            fatty=bool(p_fatty >= self.bundle.threshold),
            threshold=self.bundle.threshold,
            pdff=round(pdff, 4),
            model=self.bundle.model_info,
            latency_ms={k: round(v, 3) for k, v in stages.items()},
            exam=exam,
        )

    # -- publish stage -----------------------------------------------------------------------------------------
    def _publish_result(self, pub: zmq.Socket, result: ResultMessage) -> None:
        captured = result.frames[result.trigger].ts
        t = time.time()
        result.latency_ms["end_to_end"] = round((t - captured) * 1000, 3)
        pub.send_multipart(message_parts(TOPIC_RESULT, result))
        t_sent = time.time()
        self.stats.observe("publish", (t_sent - t) * 1000)
        self.stats.observe("end_to_end", (t_sent - captured) * 1000)
        self.stats.count("results_published")
        self.audit.append(result.model_dump(mode="json"))

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
        )

    def record_ended_exams(self, shutdown: bool = False) -> int:
        """Write each ended session's final exam to the audit log (all active ones too at shutdown)."""
        self.sessions.expire(time.time())
        ended = self.sessions.take_ended()
        if shutdown:
            ended += [(name, session, "shutdown") for name, session in self.sessions.active()]
        for name, session, why in ended:
            record = ExamRecord(
                session=name, ended=time.time(), why=why, exam=session.exam.status(), model=self.bundle.model_info
            )
            self.audit.append(record.model_dump(mode="json"))
        return len(ended)

    def _infer_one(self, pub: zmq.Socket, timeout: float) -> None:
        frame = self.frames.take(timeout=timeout)
        if frame is None:
            return
        try:
            result = self.process(frame)
        except Exception:  # a bug must not take the bedside down: count it, log it, keep serving
            log.exception("inference failed for session %s", frame.header.session)
            self.stats.count("inference_errors")
            return
        if result is not None:
            self._publish_result(pub, result)
        for thumbnail in self._outbox:
            pub.send_multipart(message_parts(TOPIC_THUMBNAIL, thumbnail))
        self._outbox.clear()

    def _worker_loop(self) -> None:
        curve = self.config.security.results_keys()
        try:
            with publisher(self.config.results, hwm=1000, curve=curve, context=self.ctx) as pub:
                self.results_endpoint = pub.getsockopt(zmq.LAST_ENDPOINT).decode()
                self._ready.set()
                next_heartbeat = next_metrics = time.monotonic()
                while not self._stop.is_set():
                    now = time.monotonic()
                    if now >= next_heartbeat:
                        self.record_ended_exams()
                        pub.send_multipart(message_parts(TOPIC_HEARTBEAT, self.heartbeat()))
                        next_heartbeat = now + self.config.heartbeat_period_s
                    if now >= next_metrics:
                        pub.send_multipart(message_parts(TOPIC_METRICS, self.metrics()))
                        next_metrics = now + self.config.metrics_period_s
                    self._infer_one(pub, max(0.0, min(next_heartbeat, next_metrics) - time.monotonic()))
        except Exception as exc:  # e.g. the results endpoint is taken: start() reports it
            log.exception("results stage stopped")
            self._startup_failure = exc
            self._ready.set()
        finally:
            self.record_ended_exams(shutdown=True)
            self.audit.close()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def _start_thread(self, target, name: str) -> threading.Thread:
        self._ready.clear()
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._ready.wait(10)
        if self._startup_failure is not None:
            self.stop()
            raise self._startup_failure
        return thread

    def start(self) -> None:
        if self.config.prometheus_port:
            from edge_runtime.prometheus import PrometheusExporter

            self.prometheus = PrometheusExporter(self.config.prometheus_port)
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
    return bundle.encode(VIEWS[0], np.zeros(INPUT_SHAPE, np.uint8))
