"""Helpers for loopback tests of the runtime: a frame source, a display, and waiting for conditions."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zmq

from edge_runtime.bundle import load_bundle
from edge_runtime.config import RuntimeConfig
from edge_runtime.profiles import default_profiles
from edge_runtime.protocol import encode_frame
from edge_runtime.schema import TOPIC_RESULT, FrameHeader, ResultMessage, parse_message
from edge_runtime.server import EdgeServer
from phantom.render import profile_for, render_view
from phantom.subject import draw_cohort


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def phantom_screens(n_subjects: int = 2, seed: int = 9) -> dict[tuple[int, str], tuple[str, np.ndarray]]:
    """(subject index, view) -> (scanner profile name, RGB screen)."""
    out = {}
    for s in draw_cohort(n_subjects, seed):
        for view in ("liver", "kidney_liver"):
            out[(s.index, view)] = (profile_for(s).name, render_view(s, view, seed).screen)
    return out


def breathed(screen: np.ndarray, k: int) -> np.ndarray:
    """The k-th live frame of a still screen: shifted 3k pixels down, as breathing moves the picture. The runtime
    pairs a frame only once (a frozen screen is one image), so a test that wants several results sends these."""
    return np.roll(screen, 3 * k, axis=0)


def send_until_encoded(server, source: Source, session: str, view: str, scanner: str, image: np.ndarray) -> int:
    """Send one frame (again if the SUB was not connected yet) until the worker has encoded it; returns its seq."""
    before = server.stats.counters["frames_encoded"]
    for _ in range(20):
        header = source.send(session, view, scanner, image)
        if wait_for(lambda: server.stats.counters["frames_encoded"] > before, timeout=3):
            return header.seq
    raise AssertionError(f"frame of {session}/{view} was never encoded")


class Source:
    """A frame source bound on a free loopback port (PUB), like the grabber or the phantom stream."""

    def __init__(self, ctx: zmq.Context, endpoint: str = "tcp://127.0.0.1:*"):
        self.sock = ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.LINGER, 0)
        for attempt in range(50):  # a just-closed socket frees its port asynchronously
            try:
                self.sock.bind(endpoint)
                break
            except zmq.ZMQError:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.seq = 0

    def send(self, session: str, view: str, scanner: str, image: np.ndarray, encoding: str = "raw") -> FrameHeader:
        header = FrameHeader(
            1, self.seq, time.time(), session, scanner, view, image.shape[1], image.shape[0], image.shape[2], encoding
        )
        self.seq += 1
        self.sock.send_multipart(encode_frame(header, image))
        return header

    def send_parts(self, parts: list) -> None:
        self.sock.send_multipart(parts)

    def close(self) -> None:
        self.sock.close(linger=0)


class Display:
    def __init__(self, ctx: zmq.Context, endpoint: str, topics=(b"result",)):
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        for t in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, t)
        self.sock.connect(endpoint)
        self.received: list[ResultMessage] = []

    def poll(self, timeout_ms: int = 100) -> None:
        """Collect results, read through the declared contract (a malformed one fails the test)."""
        while self.sock.poll(timeout_ms):
            topic, body = self.sock.recv_multipart()
            if topic == TOPIC_RESULT:
                self.received.append(parse_message(topic, body))
            timeout_ms = 0

    def close(self) -> None:
        self.sock.close(linger=0)


def start_server(bundle_dir: Path, frames: str, tmp_path: Path, **overrides) -> EdgeServer:
    overrides.setdefault("results", "tcp://127.0.0.1:*")
    config = RuntimeConfig(
        bundle=bundle_dir,
        frames=frames,
        audit_log=tmp_path / "audit" / "results.jsonl",
        metrics_period_s=0.5,
        **overrides,
    )
    server = EdgeServer(config, load_bundle(bundle_dir, num_threads=2), default_profiles(), context=zmq.Context())
    server.start()
    time.sleep(0.3)  # let the SUB connect (ZeroMQ slow joiner)
    return server
