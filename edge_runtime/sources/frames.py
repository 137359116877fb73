"""Where frames come from: the scanner's video output over ZeroMQ (protocol v1).

:class:`FrameAdmission` checks a message before anything is decoded (limits before any allocation), counts what it
refuses by reason, and keeps only the newest frame per (session, view) for the worker, so receiving never waits for
inference. :class:`ZmqFrameSource` drains the SUB socket into it on the receive thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from edge_runtime.box.stats import RuntimeStats, ThrottledLog
from edge_runtime.config import RuntimeConfig
from edge_runtime.contracts import AUTO_VIEW, TOPIC_FRAME, Count, FrameHeader, Reject
from edge_runtime.model.bundle import Bundle
from edge_runtime.pipeline.frame import FrameContext
from edge_runtime.pipeline.sessions import LatestFrames
from edge_runtime.pipeline.stages import payload_view
from edge_runtime.scanners.profiles import ScannerProfile
from edge_runtime.wire.protocol import ProtocolError, check_payload, parse_header
from edge_runtime.wire.transport import subscriber


class FrameAdmission:
    """Protocol checks that need no decoding, then the newest frame per (session, view) waits for the worker."""

    def __init__(
        self,
        bundle: Bundle,
        profiles: dict[str, ScannerProfile],
        config: RuntimeConfig,
        queue: LatestFrames,
        reporting: tuple[RuntimeStats, ThrottledLog],
    ):
        """Args:
        bundle: what the frames are for (its scanners and whether it has a view gate).
        profiles: every known scanner profile.
        config: the runtime's configuration (scanners.allow_unseen).
        queue: where admitted frames wait.
        reporting: the statistics and the throttled log.
        """
        self.bundle, self.profiles, self.config, self.queue = bundle, profiles, config, queue
        self.stats, self.log = reporting
        self._last_seq: dict[str, int] = {}

    def admit(self, parts: list[Any], received: float) -> None:
        """Validate one multipart message and keep it as the newest frame of its (session, view)."""
        self.stats.count(Count.FRAMES_RECEIVED)
        try:
            header = self._validated_header(parts)
        except ProtocolError as exc:
            self.stats.reject(Reject(exc.reason))
            self.log.once(exc.reason, exc.detail, "rejected frame")
            return
        last = self._last_seq.get(header.session)
        if last is not None and header.seq > last + 1:
            self.stats.count(Count.FRAMES_LOST_IN_TRANSPORT, header.seq - last - 1)
        self._last_seq[header.session] = header.seq
        dropped = self.queue.put(FrameContext(header, parts[2], received))
        if dropped:
            self.stats.count(Count(f"frames_dropped_{dropped}"))

    def _validated_header(self, parts: list[Any]) -> FrameHeader:
        """The frame's header once the message passes every check that needs no decoding."""
        if len(parts) != 3:
            raise ProtocolError(Reject.PART_COUNT, f"{len(parts)} parts, expected 3")
        if payload_view(parts[0]) != TOPIC_FRAME:
            raise ProtocolError(Reject.BAD_TOPIC, "topic is not 'frame'")
        header = parse_header(payload_view(parts[1]).tobytes(), set(self.profiles))
        profile = self.profiles[header.scanner]
        if not profile.fits(header.width, header.height):
            raise ProtocolError(
                Reject.SIZE_MISMATCH,
                f"frame {header.width}x{header.height} but scanner profile {profile.name!r} is "
                f"{profile.expected_size()}",
            )
        self._check_seen(header.scanner)
        if header.view == AUTO_VIEW and (self.bundle.gate is None or self.bundle.gate.view_head is None):
            raise ProtocolError(
                Reject.NO_VIEW_MODEL,
                f"session {header.session} sent view 'auto' but bundle {self.bundle.name!r} has no view gate; "
                "send liver or kidney_liver",
            )
        check_payload(header, payload_view(parts[2]).nbytes)
        return header

    def _check_seen(self, scanner: str) -> None:
        """A scanner layout the model never trained on is refused, unless the site allows it (then counted)."""
        trained = self.bundle.meta.scanners
        if scanner in trained:
            return
        if self.config.scanners.allow_unseen:
            self.stats.count(Count.FRAMES_UNSEEN_SCANNER)
            return
        raise ProtocolError(
            Reject.UNSEEN_SCANNER,
            f"scanner {scanner!r} is not one bundle {self.bundle.name!r} was trained on "
            f"({', '.join(sorted(trained))}); set scanners.allow_unseen to serve it anyway",
        )


class ZmqFrameSource:
    """The receive thread's loop: drain the SUB socket, admitting every message, until told to stop."""

    def __init__(self, config: RuntimeConfig, admission: FrameAdmission, context: zmq.Context):
        self.config, self.admission, self.context = config, admission, context

    def run(self, stop: threading.Event, ready: Callable[[], None], tick: Callable[[], None] = lambda: None) -> None:
        """Until ``stop``: admit every message; ``ready`` once subscribed, ``tick`` at least ten times a second."""
        transport = self.config.transport
        curve = self.config.security.frames_keys()
        with subscriber(
            transport.frames, [TOPIC_FRAME], hwm=transport.receive_hwm, curve=curve, context=self.context
        ) as sub:
            ready()
            while not stop.is_set():
                tick()
                if sub.poll(100):
                    self._drain(sub)

    def _drain(self, sub: zmq.Socket) -> None:
        """Take everything queued, keeping only the newest frame per (session, view)."""
        while True:
            try:
                parts = sub.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.admission.admit(parts, time.time())
