"""`edge-runtime display`: subscribe to the runtime (feed thread) and serve the page (uvicorn), side by side.

The feed thread owns its SUB socket and only folds validated messages into the DisplayState; a malformed
message is counted and skipped, and ZeroMQ reconnects by itself when the runtime restarts. The display never
sends anything to the runtime, so it cannot slow it down.
"""

from __future__ import annotations

import ipaddress
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
import zmq

from edge_runtime.config import DisplayConfig
from edge_runtime.contracts import TOPIC_HEARTBEAT, TOPIC_METRICS, TOPIC_RESULT, TOPIC_THUMBNAIL
from edge_runtime.display.app import create_app
from edge_runtime.display.state import DisplayState
from edge_runtime.errors import FattyLiverError
from edge_runtime.wire.transport import CurveClientKeys, MessageHub, subscriber

TOPICS = (TOPIC_RESULT, TOPIC_METRICS, TOPIC_HEARTBEAT, TOPIC_THUMBNAIL)


class DisplayError(FattyLiverError):
    """The display cannot start as asked (listen address, token)."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise DisplayError(f"--listen {text!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
        return cls(host.strip("[]"), int(port))

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def access_token(listen: Listen, given: str | None) -> str | None:
    """Beyond localhost a token is required: the one given, or a fresh secret (printed with the URL)."""
    if given:
        if len(given) < 16:
            raise DisplayError("the access token must have at least 16 characters")
        return given
    return None if listen.loopback else secrets.token_urlsafe(24)


class PageFeed:
    """The runtime's messages into a DisplayState, on its own thread."""

    def __init__(self, endpoint: str, state: DisplayState, curve: CurveClientKeys | None = None):
        self.endpoint, self.state, self.curve = endpoint, state, curve
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="display-feed", daemon=True)
        self.hub: MessageHub | None = None

    @property
    def malformed(self) -> int:
        return self.hub.malformed if self.hub else 0

    def start(self) -> PageFeed:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        with subscriber(self.endpoint, TOPICS, curve=self.curve, context=zmq.Context.instance()) as sock:
            self.hub = MessageHub(sock)
            while not self._stop.is_set():
                received = self.hub.receive(200)
                if received is not None:
                    self.state.apply(received[1])


class DisplayServer:
    """Feed + web server; `start()` returns once the page is being served (tests and the demo use it)."""

    def __init__(self, results: str, listen: Listen, token: str | None, curve: CurveClientKeys | None = None):
        self.state = DisplayState()
        self.feed = PageFeed(results, self.state, curve)
        self.listen, self.token = listen, token
        app = create_app(self.state, token, lambda: self.feed.malformed)
        config = uvicorn.Config(app, host=listen.host, port=listen.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="display-http", daemon=True)

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1] if self.server.started else self.listen.port
        query = f"/?token={self.token}" if self.token else "/"
        return f"http://{self.listen.host}:{port}{query}"

    def start(self, timeout: float = 10.0) -> DisplayServer:
        self.feed.start()
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.05)
        if not self.server.started:
            self.feed.stop()
            raise DisplayError(f"could not serve the page on {self.listen.host}:{self.listen.port}")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self.feed.stop()


def run_display(
    results: str, settings: DisplayConfig, curve: CurveClientKeys | None, echo: Callable[[str], None]
) -> None:
    """Serve the page until SIGINT/SIGTERM; prints the URL (with the token when one is needed).

    Args:
        results: the runtime's results endpoint.
        settings: listen address and token file.
        curve: this display's CURVE keys when the runtime uses CURVE.
        echo: where the URL line goes.
    """
    listen = Listen.parse(settings.listen)
    given = settings.token_file.read_text().strip() if settings.token_file else None
    server = DisplayServer(results, listen, access_token(listen, given), curve).start()
    echo(f"bedside page: {server.url}  (following {results})")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.stop()
