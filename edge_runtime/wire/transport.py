"""Every ZeroMQ socket of the product is made here: PUB/SUB setup, high-water marks, CURVE and linger, once.

Transport stays apart from logic, as in imagezmq's ImageSender/ImageHub: the frame grabber and the phantom
scanner hold a :class:`FrameSender`, the runtime and the displays hold subscribers, and none of them knows how
a socket is secured or closed. Sockets are context managers so a socket (and its CURVE authenticator) is
always closed with linger 0, even when the code using it fails.

Who binds: the frame source binds its PUB and is the CURVE server of the frames link; the runtime binds its
results PUB and is the CURVE server of the results link (Ironhouse: only listed client keys get anything).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from edge_runtime.contracts import FrameHeader, Message, MessageError, parse_message
from edge_runtime.wire.protocol import encode_frame
from edge_runtime.wire.security import make_client, make_server


@dataclass(frozen=True)
class CurveServerKeys:
    """The binding side of a link: its own secret key and the folder of client public keys it admits."""

    secret_key: Path
    allowed_clients: Path


@dataclass(frozen=True)
class CurveClientKeys:
    """The connecting side of a link: its own secret key and the server's public key."""

    secret_key: Path
    server_key: Path


@contextmanager
def publisher(
    endpoint: str,
    *,
    hwm: int = 1000,
    curve: CurveServerKeys | None = None,
    context: zmq.Context | None = None,
) -> Iterator[zmq.Socket]:
    """A bound PUB socket; ``socket.getsockopt(zmq.LAST_ENDPOINT)`` tells the port when endpoint ends in ``:*``.

    Args:
        endpoint: where to bind, e.g. tcp://127.0.0.1:5556 (tcp://127.0.0.1:* picks a free port).
        hwm: send high-water mark: messages queued per subscriber before ZeroMQ drops.
        curve: the CURVE server keys, or None for a plain socket.
        context: the ZeroMQ context (default: the process's shared one).
    """
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, hwm)
    auth = None
    try:
        if curve is not None:
            auth = make_server(ctx, sock, curve.secret_key, curve.allowed_clients)
        sock.bind(endpoint)
        yield sock
    finally:
        sock.close(linger=0)
        if auth is not None:
            auth.stop()


@contextmanager
def subscriber(
    endpoint: str,
    topics: Sequence[bytes],
    *,
    hwm: int | None = None,
    curve: CurveClientKeys | None = None,
    context: zmq.Context | None = None,
) -> Iterator[zmq.Socket]:
    """A SUB socket connected to endpoint; it reconnects by itself when the publisher restarts.

    Args:
        endpoint: the publisher to connect to.
        topics: topic prefixes to receive.
        hwm: receive high-water mark (small, to drop stale frames rather than queue them).
        curve: the CURVE client keys, or None for a plain socket.
        context: the ZeroMQ context (default: the process's shared one).
    """
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    if hwm is not None:
        sock.setsockopt(zmq.RCVHWM, hwm)
    try:
        if curve is not None:
            make_client(sock, curve.secret_key, curve.server_key)
        for topic in topics:
            sock.setsockopt(zmq.SUBSCRIBE, topic)
        sock.connect(endpoint)
        yield sock
    finally:
        sock.close(linger=0)


class FrameSender:
    """Publishes scanner frames (protocol v1) on a PUB socket: what the grabber and the phantom scanner use."""

    def __init__(self, socket: zmq.Socket):
        self.socket = socket

    def send(self, header: FrameHeader, image: np.ndarray) -> None:
        """Send without copying: the caller must not change ``image`` afterwards (use a fresh buffer per frame)."""
        self.socket.send_multipart(encode_frame(header, image), copy=False)


class MessageHub:
    """Receives the runtime's results, metrics and heartbeats as validated messages.

    A malformed message is counted in ``malformed`` (with the last problem in ``last_problem``) and skipped, so
    a display keeps running whatever arrives.
    """

    def __init__(self, socket: zmq.Socket):
        self.socket = socket
        self.malformed = 0
        self.last_problem = ""

    def receive(self, timeout_ms: int) -> tuple[bytes, Message] | None:
        """The next well-formed message, or None when nothing valid arrived within the timeout."""
        if not self.socket.poll(timeout_ms):
            return None
        parts = self.socket.recv_multipart()
        if len(parts) != 2:
            self._skip(f"{len(parts)} message parts, expected 2")
            return None
        try:
            return parts[0], parse_message(parts[0], parts[1])
        except MessageError as exc:
            self._skip(str(exc))
            return None

    def _skip(self, problem: str) -> None:
        self.malformed += 1
        self.last_problem = problem
