"""What waits for the worker, between the sources and the pipeline: bounded, and honest about what it drops.

Latest-frame semantics for live video (ZeroMQ's CONFLATE does not work with multipart messages): a newer frame of the
same (session, view) replaces the pending one, which is counted as dropped (DropReason.STALE). Stored DICOM frames are
never dropped: their writer waits for room, so a scanner's store waits for the pipeline instead of losing frames.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Protocol

from edge_runtime.contracts import DropReason, FrameHeader


class Queued(Protocol):
    """What waits for the worker: anything with a frame header (the pipeline's FrameContext)."""

    header: FrameHeader


class FrameQueue:
    """What waits for the worker, in two lanes. Live frames: the newest unprocessed one per (session, view), bounded;
    a newer one replaces it. Stored frames (DICOM images and cine loops): every one, in order, in a bounded lane
    whose writer waits for room, so a scanner's store waits for the pipeline instead of losing frames. The worker
    takes from the lanes in turn, the oldest first in each."""

    def __init__(self, max_keys: int, max_stored: int = 64):
        self._frames: OrderedDict[tuple[str, str], Queued] = OrderedDict()
        self._stored: deque[Queued] = deque()
        self._cond = threading.Condition()
        self.max_keys, self.max_stored = max_keys, max_stored
        self._closed = False
        self._stored_turn = False

    def put(self, frame: Queued) -> DropReason | None:
        """Store; returns why the frame it displaced was dropped, if it displaced one."""
        key = (frame.header.session, frame.header.view)
        dropped = None
        with self._cond:
            if key in self._frames:
                del self._frames[key]
                dropped = DropReason.STALE
            elif len(self._frames) >= self.max_keys:
                self._frames.popitem(last=False)
                dropped = DropReason.OVERFLOW
            self._frames[key] = frame  # newest at the end; the worker takes the oldest key first (fairness)
            self._cond.notify_all()
        return dropped

    def put_stored(self, frames: list[Queued], timeout: float) -> int:
        """Queue a stored image's frames, each to be processed, waiting up to ``timeout`` in all for room; returns
        how many were queued (fewer when the lane stayed full or the queue closed)."""
        deadline = time.monotonic() + timeout
        queued = 0
        with self._cond:
            for frame in frames:
                while len(self._stored) >= self.max_stored and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return queued
                    self._cond.wait(left)
                if self._closed:
                    return queued
                self._stored.append(frame)
                queued += 1
                self._cond.notify_all()
        return queued

    def take(self, timeout: float) -> Queued | None:
        with self._cond:
            if not self._frames and not self._stored and not self._closed:
                self._cond.wait(timeout)
            self._stored_turn = not self._stored_turn
            if self._stored and (self._stored_turn or not self._frames):
                frame = self._stored.popleft()
                self._cond.notify_all()  # a waiting store may go on
                return frame
            if not self._frames:
                return None
            _, frame = self._frames.popitem(last=False)
            return frame

    def stored_sessions(self) -> set[str]:
        """Sessions with stored frames still waiting: their study is not idle, whatever the clock says."""
        with self._cond:
            return {frame.header.session for frame in self._stored}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames) + len(self._stored)
