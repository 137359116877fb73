"""What sources and services share: a name, ``start``, ``stop`` and a pulse (compose() declares them; the server starts
and stops them in order). :class:`LoopingPart` is a part with one supervised thread of its own."""

from __future__ import annotations

import threading
from typing import Protocol

from edge_runtime.box.supervision import Kind, Pulse, start_thread
from edge_runtime.box.telemetry import Telemetry


class Part(Protocol):
    """A source or a service: started before frames flow, stopped in order at the end."""

    name: str
    pulse: Pulse

    def start(self) -> None: ...

    def stop(self) -> None: ...


class LoopingPart:
    """A part whose thread repeats :meth:`step` under supervision until it is stopped. A subclass sets ``name`` and
    ``kind``, and may open what its thread uses in :meth:`open` (on the caller's thread, so a port that is taken
    refuses the start) and close it in :meth:`close`."""

    name: str
    kind: Kind

    def __init__(self, telemetry: Telemetry, patience_s: float = 0.0):
        self.telemetry = telemetry
        self.pulse = telemetry.pulse(self.name, self.kind, patience_s=patience_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        """Open what the thread uses (sockets, servers) before it runs."""

    def close(self) -> None:
        """Close what :meth:`open` opened, once the thread has ended."""

    def step(self) -> None:
        """One piece of work, waiting at most about a second for it."""
        raise NotImplementedError

    def wake(self) -> None:
        """Make a waiting step return now (stop calls it)."""

    def start(self) -> None:
        self.open()
        self._stop.clear()
        self._thread = start_thread(self.pulse, self.telemetry.supervisor, self.step, self._stop)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        self.close()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()
