"""Where live frames come from: the scanner's video output over ZeroMQ (protocol v1).

:class:`FrameAdmission` checks a message before anything is decoded (limits before any allocation), counts what it
refuses by reason, and keeps only the newest frame per (session, view) for the worker, so receiving never waits for
inference. :class:`ZmqFrames` is the source: its thread drains the SUB socket into it.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

import zmq

from edge_runtime.box.parts import LoopingPart
from edge_runtime.box.supervision import Kind
from edge_runtime.box.telemetry import Telemetry
from edge_runtime.config import RuntimeConfig
from edge_runtime.contracts import AUTO_VIEW, TOPIC_FRAME, Count, FrameHeader, Reject, counted
from edge_runtime.model.served import Served
from edge_runtime.pipeline.frame import FrameContext
from edge_runtime.pipeline.queue import FrameQueue
from edge_runtime.pipeline.stages import payload_view
from edge_runtime.scanners.seen import seen, unseen_refusal
from edge_runtime.wire.protocol import ProtocolError, check_payload, parse_header
from edge_runtime.wire.transport import subscriber


class FrameAdmission:
    """Protocol checks that need no decoding, then the newest frame per (session, view) waits for the worker."""

    def __init__(self, served: Served, config: RuntimeConfig, queue: FrameQueue, telemetry: Telemetry):
        """Args:
        served: the model being served (its scanners, its profiles and whether it has a view gate).
        config: the runtime's configuration (scanners.allow_unseen).
        queue: where admitted frames wait.
        telemetry: the statistics and the throttled log.
        """
        self.served, self.config, self.queue = served, config, queue
        self.stats, self.log = telemetry.stats, telemetry.log
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
        if dropped is not None:
            self.stats.count(counted(dropped))

    def _validated_header(self, parts: list[Any]) -> FrameHeader:
        """The frame's header once the message passes every check that needs no decoding."""
        if len(parts) != 3:
            raise ProtocolError(Reject.PART_COUNT, f"{len(parts)} parts, expected 3")
        if payload_view(parts[0]) != TOPIC_FRAME:
            raise ProtocolError(Reject.BAD_TOPIC, "topic is not 'frame'")
        model = self.served.current
        header = parse_header(payload_view(parts[1]).tobytes(), set(model.profiles))
        profile = model.profiles[header.scanner]
        if not profile.fits(header.width, header.height):
            raise ProtocolError(
                Reject.SIZE_MISMATCH,
                f"frame {header.width}x{header.height} but scanner profile {profile.name!r} is "
                f"{profile.expected_size()}",
            )
        refusal = unseen_refusal(model.bundle, header.scanner, self.config.scanners.allow_unseen)
        if refusal is not None:
            raise ProtocolError(Reject.UNSEEN_SCANNER, refusal)
        if not seen(model.bundle, header.scanner):
            self.stats.count(Count.FRAMES_UNSEEN_SCANNER)
        bundle = model.bundle
        if header.view == AUTO_VIEW and (bundle.gate is None or bundle.gate.view_head is None):
            raise ProtocolError(
                Reject.NO_VIEW_MODEL,
                f"session {header.session} sent view 'auto' but bundle {bundle.name!r} has no view gate; "
                "send liver or kidney_liver",
            )
        check_payload(header, payload_view(parts[2]).nbytes)
        return header


class ZmqFrames(LoopingPart):
    """The live source: a SUB socket connected to the grabber, drained on its own thread into the admission."""

    name, kind = "frames", Kind.SOURCE

    def __init__(self, config: RuntimeConfig, admission: FrameAdmission, telemetry: Telemetry, context: zmq.Context):
        super().__init__(telemetry)
        self.config, self.admission, self.context = config, admission, context
        self._sockets, self.socket = ExitStack(), None

    def open(self) -> None:
        transport = self.config.transport
        curve = self.config.security.frames_keys()
        hwm = transport.receive_hwm
        opened = subscriber(transport.frames, [TOPIC_FRAME], hwm=hwm, curve=curve, context=self.context)
        self.socket = self._sockets.enter_context(opened)

    def step(self) -> None:
        """Everything queued (waiting up to 0.1 s for it), keeping only the newest frame per (session, view)."""
        if not self.socket.poll(100):
            return
        while True:
            try:
                parts = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.admission.admit(parts, time.time())

    def close(self) -> None:
        self._sockets.close()
