"""The pipeline's stages, in order: decode, preprocess, encode, gate, measure, pair, head, exam.

Each stage is a small callable with a ``name`` (a :class:`Stage`): it takes a frame's context and returns it with
its own part filled in, or a :class:`Drop` saying why the frame goes no further. Stages hold no sockets and count
nothing themselves: the runner times them, counts their drops and the counts they raise.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from functools import partial
from typing import Protocol

import numpy as np
import zmq

from edge_runtime.config import GateSettings
from edge_runtime.contracts import VIEWS, Count, Reject, Stage, counted
from edge_runtime.measure.hri import FrameHri, measure_frame
from edge_runtime.model.bundle import Bundle
from edge_runtime.model.gate import GatePolicy
from edge_runtime.pipeline.frame import Drop, FrameContext, Note
from edge_runtime.pipeline.preprocess import PreprocessError, crop_bmode, display_level, preprocess_frame
from edge_runtime.pipeline.repeats import frame_fingerprint
from edge_runtime.pipeline.sessions import SessionStore, ViewFeatures
from edge_runtime.scanners.profiles import FULL_FRAME, ScannerProfile
from edge_runtime.wire.protocol import ProtocolError, decode_payload

FULL_FRAME_PROFILE = ScannerProfile.from_mapping(FULL_FRAME, {"vendor": "unspecified", "crop": FULL_FRAME})
HRI_EVERY_S = 1.0  # a session's kidney-liver frames are measured at most this often (capture seconds)
KIDNEY_LOOK_EVERY_S = 0.5  # the gate asks the kidney finder about a session's frames at most this often (capture s)
BLANK_RANGE = 8  # a preprocessed frame whose pixels span fewer grey levels than this carries no image


class PipelineStage(Protocol):
    name: Stage

    def __call__(self, frame: FrameContext) -> FrameContext | Drop: ...


def payload_view(payload: object) -> memoryview | np.ndarray:
    """Zero-copy view of a frame's payload (a zmq.Frame from recv_multipart(copy=False), bytes, or an array)."""
    if isinstance(payload, np.ndarray):
        return payload
    return memoryview(payload.buffer if isinstance(payload, zmq.Frame) else payload)


class DecodeStage:
    """PNG, JPEG or raw payload -> the screen as RGB (or grey) pixels."""

    name = Stage.DECODE

    def __call__(self, frame: FrameContext) -> FrameContext | Drop:
        try:
            frame.image = decode_payload(frame.header, payload_view(frame.payload))
        except ProtocolError as exc:
            return Drop(reject=Reject(exc.reason), detail=exc.detail)
        return frame


class PreprocessStage:
    """The screen -> the model input, with the bundle's harmonisation; a frame with no image in the box stops."""

    name = Stage.PREPROCESS

    def __init__(self, profiles: Mapping[str, ScannerProfile], harmonisation: str):
        self.profiles, self.harmonisation = profiles, harmonisation

    def __call__(self, frame: FrameContext) -> FrameContext | Drop:
        header = frame.header
        cut_out = frame.origin is not None and frame.origin.region is not None
        profile = FULL_FRAME_PROFILE if cut_out else self.profiles[header.scanner]
        try:
            tensor = preprocess_frame(frame.image, profile, harmonisation=self.harmonisation)
        except PreprocessError as exc:
            return Drop(reject=Reject.SIZE_MISMATCH, detail=str(exc))
        if int(tensor.max()) - int(tensor.min()) < BLANK_RANGE:
            return Drop(reject=Reject.BLANK, detail=f"session {header.session} {header.view}: no image in the box")
        frame.box = profile.box_for(frame.image.shape[1], frame.image.shape[0])
        frame.level = display_level(crop_bmode(frame.image, profile))
        frame.tensor, frame.image = tensor, None
        return frame


class EncodeStage:
    """The model input -> the bundle encoder's features (int8 at the bedside, dequantized)."""

    name = Stage.ENCODE

    def __init__(self, bundle: Bundle):
        self.bundle = bundle

    def __call__(self, frame: FrameContext) -> FrameContext:
        view = frame.header.view if frame.header.view in VIEWS else VIEWS[0]  # 'auto' uses the shared encoder
        frame.features = self.bundle.encode(view, frame.tensor)
        frame.counts.append(Count.FRAMES_ENCODED)
        return frame


class Ration:
    """At most one costly look per session every ``every_s`` seconds of the session's own capture time (its frames'
    ``ts``): a live exam and its replay at any speed get the same looks. A clock set back starts the count again.
    The ``remembered`` sessions looked at last are kept; a forgotten one simply gets its next look at once."""

    remembered = 256

    def __init__(self, every_s: float):
        self.every_s = every_s
        self.last: OrderedDict[str, float] = OrderedDict()  # session -> capture time of its last look

    def due(self, session: str, ts: float) -> bool:
        """Whether this session may have its look on a frame captured at ``ts`` (and, if so, the look is taken)."""
        last = self.last.get(session)
        if last is not None and 0.0 <= ts - last < self.every_s:
            return False
        self.last[session] = ts
        self.last.move_to_end(session)
        if len(self.last) > self.remembered:
            self.last.popitem(last=False)
        return True


class GateStage:
    """Which view the frame shows (routing and view authority, edge_runtime.model.gate.GatePolicy), whether it repeats
    the session's last kept frame of that view (a frozen screen is one image), and whether the guard flags it."""

    name = Stage.GATE

    def __init__(self, policy: GatePolicy, sessions: SessionStore, settings: GateSettings, keep_crops: bool):
        """Args:
        policy: the bundle's gate policy.
        sessions: the exams, for the repeat check.
        settings: [runtime.gate].
        keep_crops: keep the model input for thumbnails.
        """
        self.policy, self.sessions, self.settings, self.keep_crops = policy, sessions, settings, keep_crops
        self.kidney_looks = Ration(KIDNEY_LOOK_EVERY_S)

    def __call__(self, frame: FrameContext) -> FrameContext | Drop:
        header = frame.header
        if frame.origin is not None:
            self.sessions.arrived(header.session, frame.origin, time.monotonic())
        route = self.policy.route(
            header.view, frame.tensor, frame.features, partial(self.kidney_looks.due, header.session, header.ts)
        )
        if route.by_kidney:
            frame.counts.append(Count.VIEW_KIDNEY_FOUND)
            frame.kidney = route.kidney
        if route.mismatch is not None:
            frame.counts.append(Count.VIEW_MISMATCH)
            text = f"session {header.session}: header says {header.view}, gate {route.mismatch}"
            frame.notes.append(Note("view_mismatch", text))
        if route.view is None:
            return Drop(counts=(Count.GATE_REJECTED, counted(route.kept_out)))
        fingerprint = frame_fingerprint(frame.tensor)
        correlation = self.settings.repeated_frame_correlation
        if self.sessions.repeats(header.session, route.view, fingerprint, correlation, time.monotonic()):
            return Drop(counts=(Count.FRAMES_REPEATED,))
        verdict = self.policy.guard(route.view, frame.tensor, frame.features, header.scanner)
        if verdict.outside:
            frame.counts += [Count.FRAMES_OUT_OF_DISTRIBUTION, counted(verdict.part)]
        crop = frame.tensor if self.keep_crops else None
        frame.view, frame.confidence = route.view, route.confidence
        kept = ViewFeatures(frame.features, header.seq, header.ts, crop, route.confidence, verdict.outside, fingerprint)
        kept.guard_score, kept.level = verdict.score, frame.level
        frame.kept = kept
        return frame


class MeasureStage:
    """A kidney-liver frame's hepatorenal index (edge_runtime.measure.hri), at most once per session every
    ``every_s`` seconds of capture time: the exam needs several frames, not every one, and the frame budget stays
    the encoder's. A frame the gate filed by its kidney is measured on the gate's search, not a second one."""

    name = Stage.MEASURE

    def __init__(self, every_s: float = HRI_EVERY_S):
        self.measures = Ration(every_s)

    def __call__(self, frame: FrameContext) -> FrameContext:
        if frame.view != VIEWS[1] or not self.measures.due(frame.header.session, frame.header.ts):
            return frame
        measured = measure_frame(frame.tensor, frame.kidney)
        frame.hri = frame.kept.hri = measured.reading(frame.header.seq, frame.box)
        frame.counts.append(Count.HRI_MEASURED if measured.value is not None else counted(measured.absent))
        return frame


class PairStage:
    """File the frame in its exam; it goes on once the exam holds both views within the pairing window."""

    name = Stage.PAIR

    def __init__(self, sessions: SessionStore):
        self.sessions = sessions

    def __call__(self, frame: FrameContext) -> FrameContext | Drop:
        header = frame.header
        now = time.monotonic()
        paired = self.sessions.update(header.session, frame.view, frame.kept, now, frame.origin, header.scanner)
        if paired is None:
            return Drop(counts=(Count.FRAMES_AWAITING_PAIR,))
        frame.paired = paired
        return frame


class HeadStage:
    """Both views' features -> every head of the bundle's ensemble -> p_fatty, the PDFF estimate and their spread."""

    name = Stage.HEAD

    def __init__(self, bundle: Bundle):
        self.bundle = bundle

    def __call__(self, frame: FrameContext) -> FrameContext:
        frame.members = self.bundle.answer({v: frame.paired[v].features for v in VIEWS})
        frame.p_fatty, frame.pdff = frame.members.p_fatty, frame.members.pdff
        return frame


class ExamStage:
    """The pair joins its exam's answer; a result on a frame beyond the guard is withheld when the site says so."""

    name = Stage.EXAM

    def __init__(self, sessions: SessionStore, withhold_outside: bool):
        self.sessions, self.withhold_outside = sessions, withhold_outside

    def __call__(self, frame: FrameContext) -> FrameContext | Drop:
        outside = any(frame.paired[v].outside for v in VIEWS)
        scores = [frame.paired[v].guard_score for v in VIEWS]
        guard_score = None if None in scores else max(scores)
        session = self.sessions.get(frame.header.session)
        tracker = session.exam
        if frame.hri is not None and not frame.kept.outside:
            tracker.add_hri(FrameHri.of(frame.hri))
            if frame.hri.value is not None and frame.origin is not None and session.study is not None:
                session.study.hri_measured(frame.origin, frame.hri)
        frame.exam = tracker.add(frame.header.ts, frame.members, guard_score, clock=time.monotonic())
        if outside and self.withhold_outside:
            return Drop(counts=(Count.RESULTS_WITHHELD_OUT_OF_DISTRIBUTION,))
        return frame
