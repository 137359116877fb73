"""Frame grabber: the scanner's video output (capture card, video file or folder of screenshots) -> protocol v1.

The video signal does not say which view is on screen, so frames go as view ``auto`` and the bundle's view gate
decides. An operator who wants to name the view anyway can: a flag, or a key (``l`` liver, ``k`` kidney-liver,
``a`` back to auto; a footswitch can be mapped to those keys) typed on the grabber's terminal.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.contracts import AUTO_VIEW, PROTOCOL_VERSION, VIEWS, FrameHeader
from edge_runtime.errors import FattyLiverError
from edge_runtime.wire.transport import FrameSender

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
VIEW_KEYS = {"l": "liver", "k": "kidney_liver", "a": AUTO_VIEW}  # a: back to the view gate


class SourceError(FattyLiverError):
    """The video source cannot be opened or read."""


def frames_from(source: str) -> Iterator[np.ndarray]:
    """RGB uint8 frames from a capture index ('0'), a video file, or a folder of screenshots (sorted)."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for f in files:
            bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if bgr is None:
                raise SourceError(f"{f}: not a readable image")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return
    capture = cv2.VideoCapture(int(source) if source.isdigit() else str(path))
    if not capture.isOpened():
        raise SourceError(f"cannot open video source {source!r} (capture index, video file or folder)")
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


class ViewSelector:
    """The current view, changed by the operator's keys on stdin (one letter + Enter works on any terminal)."""

    def __init__(self, initial: str):
        if initial not in (*VIEWS, AUTO_VIEW):
            raise ValueError(f"view must be one of {', '.join((*VIEWS, AUTO_VIEW))}")
        self.view = initial

    def listen(self, stream=sys.stdin) -> threading.Thread:
        def loop() -> None:
            for line in stream:
                key = line.strip().lower()[:1]
                if key in VIEW_KEYS:
                    self.view = VIEW_KEYS[key]

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread


@dataclass(frozen=True)
class GrabTarget:
    """Where grabbed frames go and how they are labelled on the wire."""

    scanner: str  # scanner profile name of the screen layout
    session: str  # opaque exam id
    encoding: str = "raw"
    fps: float | None = None  # cap; None sends as fast as the source delivers


def grab(
    source: str,
    sender: FrameSender,
    target: GrabTarget,
    selector: ViewSelector,
    loop: bool = False,
    on_frame: Callable[[FrameHeader], None] | None = None,
) -> int:
    """Publish every frame of source as protocol-v1 frames; returns how many were sent.

    Args:
        source: capture index ('0'), video file or folder of screenshots.
        sender: the bound frame publisher.
        target: scanner profile, session, wire encoding and frame-rate cap.
        selector: the view currently on screen (changed by the operator's keys).
        loop: replay a file or folder forever.
        on_frame: called with each header after sending (tests, progress).
    """
    sent = 0
    start = time.perf_counter()  # one schedule across loops, so a replay keeps the same rate
    while True:
        for image in frames_from(source):
            height, width = image.shape[:2]
            view, now = selector.view, time.time()
            header = FrameHeader(
                PROTOCOL_VERSION, sent, now, target.session, target.scanner, view, width, height, 3, target.encoding
            )
            sender.send(header, image)
            sent += 1
            if on_frame:
                on_frame(header)
            if target.fps:
                delay = start + sent / target.fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
        if not loop:
            return sent
