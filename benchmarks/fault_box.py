"""One live bedside box for the fault suite: `edge-runtime serve` as its own process, the phantom scanner as
another, and a results subscriber here that keeps every message it hears with the time it heard it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from edge_runtime.contracts import TOPIC_HEARTBEAT, TOPIC_METRICS, TOPIC_RESULT, parse_message
from edge_runtime.tools.ports import free_port

FAKETIME_LIBRARY = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


@dataclass
class Heard:
    """What the subscriber heard: (monotonic time, message) per topic."""

    results: list[tuple[float, Any]] = field(default_factory=list)
    heartbeats: list[tuple[float, Any]] = field(default_factory=list)
    metrics: list[tuple[float, Any]] = field(default_factory=list)

    def results_after(self, t: float) -> list[tuple[float, Any]]:
        return [(when, r) for when, r in self.results if when >= t]


@dataclass
class Exit:
    """How a serve process ended."""

    code: int | None
    last_line: str
    results_published: int
    frames_received: int


class LiveBox:
    """serve + phantom stream + subscriber, on free loopback ports; every process is its own, as in the field."""

    def __init__(self, work: Path, bundle: Path, trusted: Path, audit_log: Path):
        self.work, self.bundle, self.trusted, self.audit_log = work, bundle, trusted, audit_log
        work.mkdir(parents=True, exist_ok=True)
        self.frames_port, self.results_port = free_port(), free_port()
        self.heard, self.serves, self.exits = Heard(), [], []
        self.stream: subprocess.Popen | None = None
        self.frames_sent, self.stream_seconds, self._stream_started = 0, 0.0, 0.0
        self._ctx, self._stop = zmq.Context(), threading.Event()
        self._listener = threading.Thread(target=self._listen, daemon=True)
        self._listener.start()

    # -- processes -----------------------------------------------------------------------------------------------------
    def start_serve(
        self, faketime_file: Path | None = None, timeout: float = 90, extra: tuple[str, ...] = ()
    ) -> subprocess.Popen:
        """A serve process (``extra``: more serve flags); returns once it publishes heartbeats."""
        args = ["serve", "--bundle", str(self.bundle), "--trusted-keys", str(self.trusted), *extra]
        args += ["--frames", f"tcp://127.0.0.1:{self.frames_port}", "--results", f"tcp://127.0.0.1:{self.results_port}"]
        args += ["--audit-log", str(self.audit_log), "--metrics-period", "1"]
        env = dict(os.environ)
        if faketime_file is not None:  # the wall clock moves as the file says; the monotonic clock does not
            env |= {"LD_PRELOAD": str(FAKETIME_LIBRARY), "FAKETIME_TIMESTAMP_FILE": str(faketime_file)}
            env |= {"FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        log = open(self.work / f"serve{len(self.serves)}.log", "w")  # noqa: SIM115 - the process writes it
        proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", *args], stderr=log, env=env)
        self.serves.append(proc)
        before = len(self.heard.heartbeats)
        deadline = time.monotonic() + timeout
        while len(self.heard.heartbeats) == before:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start: {self._log_tail(len(self.serves) - 1)}")
            time.sleep(0.1)
        return proc

    def start_stream(self, fps: float, sessions: int = 2) -> None:
        args = ["stream", "--frames", f"tcp://127.0.0.1:{self.frames_port}", "--fps", str(fps)]
        args += ["--sessions", str(sessions), "--switch-every", "1", "--duration", "600", "--seed", "3"]
        self.stream = subprocess.Popen(
            [sys.executable, "-m", "phantom.cli", *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        self._stream_started = time.monotonic()

    def wait_results(self, n: int, timeout: float = 120, after: float = 0.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.heard.results_after(after)) < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def stop_stream(self) -> None:
        if self.stream is None:
            return
        self.stream.send_signal(signal.SIGCONT)
        self.stream.terminate()
        _, err = self.stream.communicate(timeout=30)
        said = re.search(r"sent (\d+) frames in ([\d.]+) s", err or "")
        self.frames_sent += int(said.group(1)) if said else 0
        self.stream_seconds += float(said.group(2)) if said else time.monotonic() - self._stream_started
        self.stream = None

    def stop_serve(self, proc: subprocess.Popen, how: int = signal.SIGTERM) -> Exit:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(how)
        code = proc.wait(60)
        tail = self._log_tail(self.serves.index(proc))
        counts = re.search(r"(\d+) results, (\d+) frames received", tail)
        done = Exit(
            code,
            tail.strip().splitlines()[-1] if tail.strip() else "",
            *(map(int, counts.groups()) if counts else (0, 0)),
        )
        self.exits.append(done)
        return done

    def _log_tail(self, index: int) -> str:
        return (self.work / f"serve{index}.log").read_text(errors="replace")[-4000:]

    def close(self) -> None:
        self.stop_stream()
        for proc in self.serves:
            if proc.poll() is None:
                self.stop_serve(proc)
        self._stop.set()
        self._listener.join(5)
        self._ctx.destroy(linger=0)

    # -- the subscriber ------------------------------------------------------------------------------------------------
    def _listen(self) -> None:
        sub = self._ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 100_000)
        for topic in (TOPIC_RESULT, TOPIC_HEARTBEAT, TOPIC_METRICS):
            sub.setsockopt(zmq.SUBSCRIBE, topic)
        sub.connect(f"tcp://127.0.0.1:{self.results_port}")
        lists = {
            TOPIC_RESULT: self.heard.results,
            TOPIC_HEARTBEAT: self.heard.heartbeats,
            TOPIC_METRICS: self.heard.metrics,
        }
        while not self._stop.is_set():
            if sub.poll(100):
                topic, body = sub.recv_multipart()
                lists[topic].append((time.monotonic(), parse_message(topic, body)))
        sub.close(linger=0)
