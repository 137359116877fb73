"""What travels through the pipeline: one frame's context, filled in stage by stage, or the reason it stops."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_runtime.contracts import Count, ExamEstimate, FrameHeader, HriReading, Reject, Stage, View
from edge_runtime.measure.regions import KidneyLook
from edge_runtime.model.uncertainty import Members
from edge_runtime.pipeline.sessions import ViewFeatures
from edge_runtime.pipeline.studies import StudyOrigin


@dataclass(frozen=True)
class Drop:
    """Why a frame goes no further: the counters it adds, the rejection it is (if any), and what to log."""

    counts: tuple[Count, ...] = ()
    reject: Reject | None = None
    detail: str = ""


@dataclass(frozen=True)
class Note:
    """Something worth one log line per metrics period (a view mismatch, say), keyed by what it is."""

    key: str
    text: str


@dataclass
class FrameContext:
    """One frame on its way from the source to a result. A source fills the first three fields; each stage adds
    what it computes; the runner records when each stage finished and adds the counts the stages raised."""

    header: FrameHeader
    payload: Any  # the encoded frame (a zmq.Frame, bytes or an array); decoded by the first stage
    received: float  # time.time() when the source took it
    origin: StudyOrigin | None = None  # a stored DICOM image's frame: its study is the session; a region frame comes
    # cut out by its source (the file's own region sequence), so the profile crops nothing
    finished: dict[Stage, float] = field(default_factory=dict)  # stage -> time.time() when it finished, in order
    counts: list[Count] = field(default_factory=list)  # counters raised on the way (not drops)
    notes: list[Note] = field(default_factory=list)
    image: np.ndarray | None = None  # decoded screen
    tensor: np.ndarray | None = None  # the model input
    box: tuple[int, int, int, int] | None = None  # where the model input was cut from the frame: x, y, w, h
    level: float | None = None  # the crop's median echo as displayed, before harmonisation (drift reads it)
    features: np.ndarray | None = None  # the encoder's features
    view: View | None = None  # the view the gate files the frame under
    confidence: float | None = None  # the gate's confidence in that view
    kidney: KidneyLook | None = None  # the gate's kidney search, when it filed the frame by it: the HRI stage reuses it
    kept: ViewFeatures | None = None  # what the session keeps of this frame
    hri: HriReading | None = None  # a kidney-liver frame's hepatorenal index, when measured
    paired: dict[str, ViewFeatures] | None = None  # both views' kept frames, once paired
    members: Members | None = None  # the bundle's ensemble on this pair: answer and spread
    p_fatty: float | None = None
    pdff: float | None = None
    exam: ExamEstimate | None = None

    def stage_ms(self) -> dict[str, float]:
        """Milliseconds spent in each finished stage (queue = waiting for the worker, counted from receipt)."""
        out, previous = {}, self.received
        for stage, finished in self.finished.items():
            out[str(stage)] = (finished - previous) * 1000
            previous = finished
        return out
