"""A box that never stops silently: every part's pulse, the health they add up to, and the service manager.

Each part of the bedside (a source, the stages, a sink, a service) has a :class:`Pulse`. A part with a thread beats
it after each piece of work that succeeded (at least once a second while idle); any part counts and names every
unexpected exception on it, and logs its traceback the first time it meets that kind of exception. The server's
main thread reads :meth:`Supervisor.health` twice a second:

- a part whose thread has **died** ends the process with one log line naming it and a non-zero exit, so systemd
  restarts it (/healthz answers 503 meanwhile);
- a threaded part that has not beaten for ``stall_s`` is **stalled** (stuck, or failing at every try): ``/healthz``
  answers 503 naming it, and the systemd watchdog is no longer fed, so systemd restarts the box after
  ``WatchdogSec``;
- otherwise the watchdog is fed (:class:`ServiceManager`, the sd_notify protocol of sd_notify(3)).

:func:`run_supervised` is every thread's loop: a failed step is counted and the loop goes on, but a step that fails
``GIVE_UP_AFTER`` times in a row ends the thread, naming why, so a broken part restarts the box instead of failing
unseen forever.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from edge_runtime.box.stats import RuntimeStats
from edge_runtime.contracts import BoxHealth, Count, PartHealth

log = logging.getLogger("edge_runtime")
GIVE_UP_AFTER = 3  # a thread's step that fails this many times in a row ends the thread


class Kind(StrEnum):
    """What a part of the bedside is (compose() declares each)."""

    SOURCE = "source"
    STAGE = "stage"
    SINK = "sink"
    SERVICE = "service"


ERRORS_COUNTED = {
    Kind.SOURCE: Count.SOURCE_ERRORS,
    Kind.STAGE: Count.INFERENCE_ERRORS,
    Kind.SINK: Count.SINK_ERRORS,
    Kind.SERVICE: Count.SERVICE_ERRORS,
}


@dataclass
class Pulse:
    """One part as the supervisor sees it: when it last did its work, how often it failed and why it ended."""

    name: str
    kind: Kind
    threaded: bool
    stats: RuntimeStats | None = None
    patience_s: float = 0.0  # more than stall_s a step may take by design (a send to a slow PACS, say)
    last_beat: float = field(default_factory=time.monotonic)
    errors: int = 0
    last_error: str | None = None
    ended: str | None = None  # why its thread ended, when it did
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def failed(self, exc: BaseException, what: str = "") -> None:
        """An unexpected exception in this part: counted and named; its traceback logged the first time."""
        said = f"{what}{type(exc).__name__}: {exc}"[:400]
        with self._lock:
            self.errors, self.last_error = self.errors + 1, said
            first = type(exc).__name__ not in self._seen
            self._seen.add(type(exc).__name__)
        if self.stats is not None:
            self.stats.count(ERRORS_COUNTED[self.kind])
        if first:
            log.error("%s %s failed: %s", self.kind, self.name, said, exc_info=exc)
        else:
            log.warning("%s %s failed again (%d so far): %s", self.kind, self.name, self.errors, said)


@dataclass(frozen=True)
class PartState:
    kind: Kind
    alive: bool
    stalled: bool
    idle_s: float | None
    errors: int
    last_error: str | None


@dataclass(frozen=True)
class HealthCheck:
    """One look at every part: which died, which stalled, and what each has failed at."""

    parts: dict[str, PartState]
    dead: dict[str, str] = field(default_factory=dict)  # part -> why its thread ended
    stalled: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.dead and not self.stalled

    def problem(self) -> str | None:
        """One line naming what is wrong, or None."""
        if self.dead:
            return "; ".join(f"{self.parts[n].kind} {n} stopped: {why}" for n, why in self.dead.items())
        if self.stalled:
            said = (f"{self.parts[n].kind} {n} stalled for {self.parts[n].idle_s:.1f} s" for n in self.stalled)
            return "; ".join(said)
        return None

    def summary(self) -> BoxHealth:
        """The health as the heartbeat says it."""
        parts = {
            name: PartHealth(
                kind=part.kind, alive=part.alive, stalled=part.stalled, errors=part.errors, last_error=part.last_error
            )
            for name, part in self.parts.items()
        }
        return BoxHealth(healthy=self.healthy, problem=self.problem(), parts=parts)

    def as_json(self) -> dict:
        parts = {
            name: {**part.__dict__, "idle_s": None if part.idle_s is None else round(part.idle_s, 2)}
            for name, part in self.parts.items()
        }
        return {"healthy": self.healthy, "problem": self.problem(), "parts": parts}


class Supervisor:
    """Every part's pulse and, for a threaded part, its thread."""

    def __init__(self, stall_s: float, stats: RuntimeStats | None = None):
        self.stall_s, self.stats = stall_s, stats
        self._pulses: dict[str, Pulse] = {}
        self._threads: dict[str, threading.Thread] = {}

    def pulse(self, name: str, kind: Kind, threaded: bool = True, patience_s: float = 0.0) -> Pulse:
        """The part's pulse, made on first use (a part keeps its pulse across a model update).

        Args:
            name: the part's name, as /healthz and the log say it.
            kind: source, stage, sink or service.
            threaded: whether it has a thread of its own (then it must beat, or it is stalled).
            patience_s: how much longer than stall_s one step may take by design.
        """
        if name not in self._pulses:
            self._pulses[name] = Pulse(name, kind, threaded, self.stats, patience_s)
        return self._pulses[name]

    def watch(self, name: str, thread: threading.Thread) -> None:
        self._threads[name] = thread
        self._pulses[name].beat()

    def health(self) -> HealthCheck:
        now, parts, dead, stalled = time.monotonic(), {}, {}, []
        for name, pulse in list(self._pulses.items()):
            thread = self._threads.get(name)
            alive = thread is None or thread.is_alive()
            idle = now - pulse.last_beat if pulse.threaded else None
            stuck = alive and idle is not None and thread is not None and idle > self.stall_s + pulse.patience_s
            parts[name] = PartState(pulse.kind, alive, stuck, idle, pulse.errors, pulse.last_error)
            if not alive:
                dead[name] = pulse.ended or "its thread ended"
            elif stuck:
                stalled.append(name)
        return HealthCheck(parts, dead, stalled)


def run_supervised(pulse: Pulse, step: Callable[[], None], stop: threading.Event) -> None:
    """A thread's loop: ``step`` until ``stop``, beating after each success; a failed step is counted and named, and
    GIVE_UP_AFTER failures in a row end the thread (the supervisor then names it and the box restarts)."""
    failures = 0
    while not stop.is_set():
        try:
            step()
        except Exception as exc:  # any failure of a step: counted, named, and survived unless it persists
            failures += 1
            pulse.failed(exc)
            if failures >= GIVE_UP_AFTER:
                pulse.ended = f"{pulse.last_error} ({failures} times in a row)"
                return
            stop.wait(0.1 * 2**failures)
            continue
        failures = 0
        pulse.beat()


def start_thread(
    pulse: Pulse, supervisor: Supervisor, step: Callable[[], None], stop: threading.Event
) -> threading.Thread:
    """A daemon thread running ``step`` under :func:`run_supervised`, watched by the supervisor.

    Args:
        pulse: the part's pulse (its name names the thread).
        supervisor: who watches the thread.
        step: one piece of the part's work.
        stop: set to end the loop.
    """
    thread = threading.Thread(target=run_supervised, args=(pulse, step, stop), name=pulse.name, daemon=True)
    supervisor.watch(pulse.name, thread)
    thread.start()
    return thread


class ServiceManager:
    """systemd's notification socket (Type=notify): READY, STATUS, STOPPING and WATCHDOG pings. Outside systemd
    (no NOTIFY_SOCKET) every call does nothing."""

    def __init__(self, environ: dict[str, str] | None = None):
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = environ.get("WATCHDOG_USEC", "")
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() else None
        self._last_ping = 0.0

    def notify(self, *lines: str) -> bool:
        """Send one notification; False when there is no service manager or it could not be reached."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError:
            return False
        return True

    def feed_watchdog(self) -> None:
        """A WATCHDOG=1 ping, at most twice per watchdog period (what sd_watchdog_enabled(3) advises)."""
        if self.watchdog_s is None or time.monotonic() - self._last_ping < self.watchdog_s / 2:
            return
        if self.notify("WATCHDOG=1"):
            self._last_ping = time.monotonic()


def supervise(
    supervisor: Supervisor,
    stop: threading.Event,
    update: tuple[threading.Event, Callable[[], None]],
    manager: ServiceManager,
) -> str | None:
    """Twice a second until ``stop``: take a model update asked for, feed the watchdog while every part is well, and
    give up (naming the part) when one has died, so that the service manager restarts the box.

    Args:
        supervisor: every part's pulse.
        stop: set by SIGINT/SIGTERM.
        update: the event SIGHUP sets, and what starts the update.
        manager: the service manager to feed.
    """
    asked, start_update = update
    said_stalled = False
    while not stop.wait(0.5):
        if asked.is_set():
            asked.clear()
            start_update()
        health = supervisor.health()
        if health.dead:
            log.error("%s: exiting non-zero so the service manager restarts the box", health.problem())
            return health.problem()
        if health.stalled and not said_stalled:
            log.error("%s: /healthz answers 503 and the watchdog is no longer fed", health.problem())
        said_stalled = bool(health.stalled)
        if health.healthy:
            manager.feed_watchdog()
    return None
