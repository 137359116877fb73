"""Every frame of a retrieved study through the bundle's bedside path (the one DICOM reader, the scanner profile, the
harmonisation, the int8 encoder, the view gate on 'auto' and the guard), and the frame of each view the cohort takes:
the gate's most confident, among those the guard does not flag. The same choice the bedside makes live."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.contracts import VIEWS
from edge_runtime.contracts.validation import CohortOutcome
from edge_runtime.model.bundle import Bundle
from edge_runtime.model.gate import GatePolicy
from edge_runtime.pipeline.preprocess import preprocess_frame
from edge_runtime.pipeline.stages import FULL_FRAME_PROFILE
from edge_runtime.scanners.profiles import ScannerProfile
from edge_runtime.scanners.stored import match_profile
from edge_runtime.sources.dicom.images import DicomImageError, read_dataset, region_frames
from edge_runtime.sources.dicom.store import Refused, identify

MAX_FRAMES = 600  # as the bedside's [runtime.dicom] max_frames default
UNLIKE_SHARE = 0.8  # a study with no frame of a view, and this share of its frames flagged, is unlike training


@dataclass(frozen=True)
class ScoredFrame:
    """One frame (or tissue region of a frame) of a stored object, as the bundle's gate and guard see it."""

    path: Path
    frame: int
    region: int | None
    scanner: str
    view: str | None  # the gate's view on 'auto' (None: kept out)
    confidence: float
    flagged: bool  # the guard flags it under its view, or (kept out) under every view
    tensor: np.ndarray  # the model input, for the contact sheet


@dataclass(frozen=True)
class FrameChoice:
    """A study's chosen frame per view, or the reason the study gives none."""

    outcome: CohortOutcome
    chosen: dict[str, ScoredFrame]
    detail: str
    scored: int  # frames scored


class FrameScorer:
    """Scores stored objects with one bundle and the site's scanner profiles."""

    def __init__(self, bundle: Bundle, profiles: Mapping[str, ScannerProfile], table: Mapping[str, str] | None = None):
        """Args:
        bundle: the bundle whose gate and guard choose.
        profiles: every profile known (shipped, the bundle's, the site's).
        table: the site's MANUFACTURER/MODEL -> profile table ([runtime.dicom.scanners]).
        """
        self.bundle, self.profiles, self.table = bundle, profiles, dict(table or {})
        self.policy = GatePolicy(bundle.gate, bundle.meta.view_gate, "model")

    def score_file(self, path: Path) -> tuple[list[ScoredFrame], str | None]:
        """Every frame of one object, or why it has none (not an image, no profile for its scanner, undecodable)."""
        try:
            stored = identify(read_dataset(path), MAX_FRAMES)
            scanner, why = match_profile(stored.scanner, self.profiles, self.table)
            if scanner is None:
                return [], why
            regions = region_frames(stored.ds)
        except (Refused, DicomImageError) as exc:
            return [], str(getattr(exc, "detail", exc))
        return [self._score(path, scanner, r.frame, r.region, r.pixels) for r in regions], None

    def _score(self, path: Path, scanner: str, frame: int, region: int | None, pixels: np.ndarray) -> ScoredFrame:
        profile = FULL_FRAME_PROFILE if region is not None else self.profiles[scanner]
        tensor = preprocess_frame(pixels, profile, harmonisation=self.bundle.harmonisation)
        features = self.bundle.encode(VIEWS[0], tensor)  # 'auto' frames use the shared encoder, as at the bedside
        route = self.policy.route("auto", tensor, features)
        views = [route.view] if route.view is not None else VIEWS
        flagged = all(bool(self.policy.guard(v, tensor, features, scanner)[0]) for v in views)
        return ScoredFrame(path, frame, region, scanner, route.view, float(route.confidence or 0.0), flagged, tensor)


def choose_frames(frames: list[ScoredFrame], problems: list[str]) -> FrameChoice:
    """The most confident guard-clean frame of each view, or the first reason there is none.

    Args:
        frames: every scored frame of the study.
        problems: why objects of the study gave no frame (named in the log when nothing was readable).
    """
    if not frames:
        said = "; ".join(sorted(set(problems))[:3]) or "the study held no image"
        return FrameChoice(CohortOutcome.NO_READABLE_IMAGE, {}, said, 0)
    chosen = {}
    for view, missing in zip(VIEWS, (CohortOutcome.NO_LIVER_FRAME, CohortOutcome.NO_KIDNEY_LIVER_FRAME), strict=True):
        filed = [f for f in frames if f.view == view]
        flagged = sum(f.flagged for f in frames)
        if not filed and flagged >= UNLIKE_SHARE * len(frames):
            said = f"the guard flagged {flagged} of {len(frames)} frames and the gate found no {view} among them: "
            said += "imaged unlike anything the bundle knows"
            return FrameChoice(CohortOutcome.ALL_FLAGGED, {}, said, len(frames))
        if not filed:
            return FrameChoice(missing, {}, f"the view gate filed none of {len(frames)} frames as {view}", len(frames))
        clean = [f for f in filed if not f.flagged]
        if not clean:
            said = f"the guard flagged all {len(filed)} {view} frames: imaged unlike anything the bundle knows"
            return FrameChoice(CohortOutcome.ALL_FLAGGED, {}, said, len(frames))
        chosen[view] = max(clean, key=lambda f: f.confidence)
    return FrameChoice(CohortOutcome.USED, chosen, "", len(frames))
