"""The display feed: the one thread that owns the results PUB socket (ZeroMQ sockets are not thread-safe). Sinks and
the heartbeat put messages in the :class:`Outbox`; the feed sends them in order. A result's end-to-end time, from
capture to the moment it leaves the box, is stamped here, just before it is sent."""

from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import ExitStack
from dataclasses import dataclass

import zmq

from edge_runtime.box.parts import LoopingPart
from edge_runtime.box.supervision import Kind
from edge_runtime.box.telemetry import Telemetry
from edge_runtime.config import RuntimeConfig
from edge_runtime.contracts import Count, Message, ResultMessage, Stage
from edge_runtime.wire.protocol import message_parts
from edge_runtime.wire.transport import publisher

OUTBOX_LIMIT = 1000  # as many as the socket's own high-water mark: a display that cannot keep up loses the oldest


@dataclass(frozen=True)
class Outgoing:
    topic: bytes
    message: Message
    captured: float | None = None  # a result's capture time: its end-to-end time is stamped when it is sent


class Outbox:
    """Messages waiting for the feed, oldest first, bounded."""

    def __init__(self, limit: int = OUTBOX_LIMIT):
        self._items: deque[Outgoing] = deque(maxlen=limit)
        self._ready = threading.Condition()

    def put(self, item: Outgoing) -> None:
        with self._ready:
            self._items.append(item)
            self._ready.notify()

    def take(self, timeout: float) -> list[Outgoing]:
        """Everything waiting (waiting up to ``timeout`` for something)."""
        with self._ready:
            if not self._items:
                self._ready.wait(timeout)
            items = list(self._items)
            self._items.clear()
        return items

    def wake(self) -> None:
        with self._ready:
            self._ready.notify_all()


class DisplayFeed(LoopingPart):
    """The results PUB socket and the thread that sends everything in the outbox."""

    name, kind = "feed", Kind.SERVICE

    def __init__(self, config: RuntimeConfig, outbox: Outbox, telemetry: Telemetry, context: zmq.Context):
        super().__init__(telemetry)
        self.config, self.outbox, self.context = config, outbox, context
        self.stats = telemetry.stats
        self.socket: zmq.Socket | None = None
        self.endpoint = config.transport.results
        self._sockets = ExitStack()

    def open(self) -> None:
        """Bind the results socket now, so an endpoint that is taken refuses the start."""
        curve = self.config.security.results_keys()
        opened = publisher(self.config.transport.results, hwm=OUTBOX_LIMIT, curve=curve, context=self.context)
        self.socket = self._sockets.enter_context(opened)
        self.endpoint = self.socket.getsockopt(zmq.LAST_ENDPOINT).decode()

    def step(self) -> None:
        for item in self.outbox.take(timeout=0.5):
            self._send(item)

    def _send(self, item: Outgoing) -> None:
        if item.captured is None:
            self.socket.send_multipart(message_parts(item.topic, item.message))
            return
        result: ResultMessage = item.message
        started = time.time()
        result.latency_ms[Stage.END_TO_END] = round((started - item.captured) * 1000, 3)
        self.socket.send_multipart(message_parts(item.topic, result))
        sent = time.time()
        self.stats.observe(Stage.PUBLISH, (sent - started) * 1000)
        self.stats.observe(Stage.END_TO_END, (sent - item.captured) * 1000)
        self.stats.count(Count.RESULTS_PUBLISHED)

    def wake(self) -> None:
        self.outbox.wake()

    def close(self) -> None:
        """Send what is left, then close the socket."""
        if self.socket is None:
            return
        for item in self.outbox.take(timeout=0):
            self._send(item)
        self._sockets.close()
        self.socket = None
