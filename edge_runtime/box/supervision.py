"""A box that never stops silently: each stage thread's pulse, the health it adds up to, and the service manager.

Every stage loop ticks its :class:`StageClock` at least once a second while it is well. The server's main thread
reads :func:`StageClock.health` twice a second:

- a stage whose thread has **died** ends the process with one log line naming it and a non-zero exit, so systemd
  restarts it;
- a stage that has not ticked for ``stall_s`` is **stalled**: ``/healthz`` answers 503 naming it, and the systemd
  watchdog is no longer fed, so systemd restarts the box after ``WatchdogSec``;
- otherwise the watchdog is fed (:class:`ServiceManager`, the sd_notify protocol of sd_notify(3)).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("edge_runtime")


@dataclass(frozen=True)
class StageHealth:
    """One look at the stages: which died, which stalled, and how long since each ticked."""

    idle_s: dict[str, float]
    dead: dict[str, str] = field(default_factory=dict)  # stage -> why its thread ended
    stalled: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.dead and not self.stalled

    def problem(self) -> str | None:
        """One line naming what is wrong, or None."""
        if self.dead:
            return "; ".join(f"stage {name} stopped: {why}" for name, why in self.dead.items())
        if self.stalled:
            return "; ".join(f"stage {name} stalled for {self.idle_s[name]:.1f} s" for name in self.stalled)
        return None

    def as_json(self) -> dict:
        stages = {
            name: {"idle_s": round(idle, 2), "alive": name not in self.dead, "stalled": name in self.stalled}
            for name, idle in self.idle_s.items()
        }
        return {"healthy": self.healthy, "problem": self.problem(), "stages": stages}


class StageClock:
    """The last tick of each stage thread (monotonic), and why a stage's thread ended if it did."""

    def __init__(self, stall_s: float):
        self.stall_s = stall_s
        self._ticks: dict[str, float] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._ended: dict[str, str] = {}

    def watch(self, name: str, thread: threading.Thread) -> None:
        self._threads[name] = thread
        self._ticks[name] = time.monotonic()

    def tick(self, name: str) -> None:
        self._ticks[name] = time.monotonic()

    def ended(self, name: str, why: str) -> None:
        """A stage's loop ended by an exception: say why before its thread goes."""
        self._ended[name] = why

    def health(self) -> StageHealth:
        now = time.monotonic()
        idle = {name: now - tick for name, tick in self._ticks.items()}
        dead = {
            name: self._ended.get(name, "its thread ended")
            for name, thread in self._threads.items()
            if not thread.is_alive()
        }
        stalled = [name for name, seconds in idle.items() if seconds > self.stall_s and name not in dead]
        return StageHealth(idle, dead, stalled)


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
    clock: StageClock,
    stop: threading.Event,
    update: tuple[threading.Event, Callable[[], None]],
    manager: ServiceManager,
) -> str | None:
    """Twice a second until ``stop``: take a model update asked for, feed the watchdog while every stage ticks, and
    give up (naming the stage) when one has died, so that the service manager restarts the box.

    Args:
        clock: the stages' pulse.
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
        health = clock.health()
        if health.dead:
            log.error("%s: exiting non-zero so the service manager restarts the box", health.problem())
            return health.problem()
        if health.stalled and not said_stalled:
            log.error("%s: /healthz answers 503 and the watchdog is no longer fed", health.problem())
        said_stalled = bool(health.stalled)
        if health.healthy:
            manager.feed_watchdog()
    return None
