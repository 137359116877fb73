"""Gate policy: which view a frame is filed under, and whether it looks like anything the model was trained on.

The encoder already computes VGG19 features for every frame, so deciding what a frame shows costs a small
logistic head on them, and the guard a few statistics, microseconds next to the encoder's hundreds of ms.

- Colour: a frame with colour in the box (Doppler, a menu, an overlay) is not a B-mode view, whatever it is named.
- :class:`ViewHead`: pooled, standardised features -> softmax over ``VIEW_CLASSES``. Frames whose predicted view is
  ``other``, or whose confidence is below the bundle's floor, are never paired.
- The kidney finder (edge_runtime.measure.regions, unlearned): a frame the head would not file as a kidney-liver view
  is one when a kidney is surely in view. The head learns from the run's subjects; a run with few severe livers
  has not seen one's kidney-liver view (a bright liver over a dark cortex) and calls it ``other`` or ``liver``.
- :class:`ViewGuard`: per view, a PCA summary of the training features. The score adds the Mahalanobis
  distance inside the principal subspace (per component) to the residual outside it (relative to training);
  both are about 1 for a training-like frame. Above the view's threshold the frame is out of distribution.
- Clipping: a frame with more than ``CLIPPED_SHARE_MAX`` of its sector at the brightest grey level has lost the
  echoes the model reads to saturation (gain far out of range, or a dark frame harmonisation had to lift). The
  guard flags it whatever the features say: harmonisation hides gain from the features, not lost echoes.
- :class:`SpeckleGuard`: per view, where the training frames' speckle texture lies (:func:`speckle_texture`, two
  autocorrelations). Speckle size is set by the probe's frequency and the scanner's beam and display, not by gain,
  so it survives harmonisation where the features do not: a new probe or preset shows here first.
- :class:`ScannerCentre`: a console the bundle was adapted to (`trainer site-adapt`) moves every frame's features
  and speckle by about the same offset. Its frames are measured from the site's own mean, not training's, on the
  parent's spread and thresholds, widened (at most 2x) where the console's own frames spread wider: the site's look
  is in distribution, anything else on that console still is not.

:meth:`Gate.guard_score` puts all guard parts on one scale, 1.0 at the limit. :class:`GatePolicy` is the decision
the pipeline's gate stage asks for: the view a frame is filed under (who wins when the header names a view and the
gate disagrees) and whether the guard flags it.

The arrays travel in one ``gate.npz`` (hashed in bundle.json like every file); the floor and thresholds live in
bundle.json itself (:class:`edge_runtime.contracts.ViewGateSpec`, :class:`edge_runtime.contracts.GuardSpec`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from edge_runtime.contracts import (
    AUTO_VIEW,
    FEATURE_MAP,
    GUARD_LIMIT,
    SPECKLE_STATISTICS,
    VIEW_CLASSES,
    VIEWS,
    BundleError,
    GateKeptOut,
    GuardPart,
    GuardSpec,
    ViewGateSpec,
)
from edge_runtime.measure.regions import KIDNEY_VIEW_EVIDENCE, MIN_KIDNEY_EVIDENCE, KidneyLook, look_for_kidney
from edge_runtime.pipeline.preprocess import SECTOR_FLOOR, channel_max

GATE_FILE = "gate.npz"
COLOUR_CHROMA = 60  # max - min over RGB above this is a coloured pixel (colour flow, a menu, an overlay)
COLOUR_SHARE_MAX = 0.003  # more coloured pixels than this share of the model input: not a B-mode view
FLOW_CONTRAST = 80  # red or blue this far above both other channels: a colour-flow pixel (a velocity map)
FLOW_SHARE_MAX = 0.0005  # more flow pixels than this share (25 of 50 176): a Doppler box, however little flow
COLOUR = GateKeptOut.COLOUR  # what Gate.sort calls a frame with colour in the box
CENTRE_MAX_WIDENING = 2.0  # the most a console's own spread may widen the guard on its frames (ScannerCentre)
CLIPPED_SHARE_MAX = 0.05  # more of the sector than this at its brightest grey level: saturated, out of distribution
CLIPPED, FEATURES, SPECKLE = GuardPart.CLIPPED, GuardPart.FEATURES, GuardPart.SPECKLE  # why the guard flags a frame
SPECKLE_BOX = 7  # the speckle residual: a grey level minus the mean of its 7x7 neighbourhood
SPECKLE_EDGE = np.ones((9, 9), np.uint8)  # the sector's rim (and anechoic holes) eroded out of the statistics
QUADRANTS = ((0, 4), (3, 7))  # two overlapping halves of the 7 rows (and of the 7 columns)


def view_features(features: np.ndarray, pooling: str) -> np.ndarray:
    """The view head's input from one (F,) or many (N, F) encoder feature vectors.

    'grid2' averages the flatten encoder's 7x7 map over four overlapping quadrants (2 048 numbers): what a view
    is, is where things are (a kidney below the liver, a dark half), and a hundred training frames cannot fit
    25 088 weights (measured: DESIGN.md, "The view gate"). 'none' uses the features as they are (the 'avg' encoder's
    512 are pooled already).
    """
    if pooling == "none":
        return features
    maps = np.asarray(features, np.float32).reshape(-1, *FEATURE_MAP)
    cells = [maps[:, r0:r1, c0:c1].mean(axis=(1, 2)) for r0, r1 in QUADRANTS for c0, c1 in QUADRANTS]
    pooled = np.concatenate(cells, axis=1)
    return pooled if np.ndim(features) == 2 else pooled[0]


def _channels(tensor: np.ndarray) -> list[np.ndarray]:
    """R, G, B as contiguous planes (OpenCV's per-element ops on them are several times numpy's on slices)."""
    return list(cv2.split(np.ascontiguousarray(tensor)))


def _channel_extremes(tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel max and min over RGB."""
    r, g, b = _channels(tensor)
    return cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b)


def colour_share(tensor: np.ndarray) -> float:
    """Share of the model input's pixels that are clearly coloured (any hue); calipers stay well below the limit."""
    high, low = _channel_extremes(tensor)
    return float(np.count_nonzero(cv2.subtract(high, low) > COLOUR_CHROMA)) / high.size


def flow_share(tensor: np.ndarray) -> float:
    """Share of pixels that are colour flow: red or blue well above both other channels. Yellow, green or white
    calipers and text are not; a Doppler box with only a few vessels lit is."""
    r, g, b = _channels(tensor)
    red, blue = cv2.subtract(r, cv2.max(g, b)), cv2.subtract(b, cv2.max(r, g))
    return float(np.count_nonzero(cv2.max(red, blue) > FLOW_CONTRAST)) / r.size


def has_colour(tensor: np.ndarray) -> bool:
    """Whether a model input carries colour (colour flow, a menu, an overlay): then it is not a B-mode view.

    A flow pixel is a coloured pixel too (FLOW_CONTRAST >= COLOUR_CHROMA), so a frame without any coloured
    pixel, which is most B-mode frames, needs no flow count: the answer is the same, in half the time."""
    share = colour_share(tensor)
    return share > COLOUR_SHARE_MAX or (share > 0 and flow_share(tensor) > FLOW_SHARE_MAX)


def clipped_share(tensor: np.ndarray, grey: np.ndarray | None = None) -> float:
    """Share of the sector's pixels (non-black) within one grey level of its brightest: a saturated top.

    Measured on the model input, after harmonisation, which scales a clipped top down but keeps it flat. A live
    B-mode sector has a speckle tail (training frames: at most about 0.1 %); a saturated one has a plateau.
    ``grey`` is the tensor's channel_max, when the caller has it already.
    """
    grey = channel_max(tensor) if grey is None else grey
    sector = np.count_nonzero(grey)
    if sector == 0:
        return 0.0
    return np.count_nonzero(grey >= max(int(grey.max()) - 1, 1)) / sector


def speckle_texture(tensor: np.ndarray, grey: np.ndarray | None = None) -> np.ndarray:
    """Lag-1 autocorrelation of the speckle residual across and down the model input (SPECKLE_STATISTICS), inside
    the sector's echoes. Near 1 for coarse speckle, near 0 for fine; one factor on every grey level (gain,
    harmonisation) leaves both unchanged. A frame without echoes gives zeros, which no training frame has.
    ``grey`` is the tensor's channel_max, when the caller has it already."""
    grey = channel_max(tensor) if grey is None else grey
    inside = cv2.erode((grey > SECTOR_FLOOR).astype(np.uint8), SPECKLE_EDGE, borderType=cv2.BORDER_CONSTANT)
    local_mean = cv2.boxFilter(grey, cv2.CV_32F, (SPECKLE_BOX, SPECKLE_BOX))  # from uint8: twice a float blur's speed
    residual = ((grey - local_mean) * inside).ravel()  # zero outside the echoes: no pairs there
    energy = float(residual @ residual)
    if energy <= 0.0:
        return np.zeros(len(SPECKLE_STATISTICS), np.float32)
    width = grey.shape[1]
    lagged = (residual[1:] @ residual[:-1], residual[width:] @ residual[:-width])  # across, down
    return np.array(lagged, np.float32) / np.float32(energy)


def _standardise(features: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (np.asarray(features, np.float32) - mean) / scale


@dataclass(frozen=True)
class ViewHead:
    mean: np.ndarray  # (P,): P = the pooled size
    scale: np.ndarray  # (P,)
    weights: np.ndarray  # (P, len(VIEW_CLASSES))
    bias: np.ndarray  # (len(VIEW_CLASSES),)
    pooling: str = "none"  # view_features' pooling (bundle.json view_gate.feature_pooling)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Softmax over VIEW_CLASSES for one (F,) or many (N, F) encoder feature vectors."""
        pooled = view_features(features, self.pooling)
        logits = _standardise(pooled, self.mean, self.scale) @ self.weights + self.bias
        logits = logits - logits.max(axis=-1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=-1, keepdims=True)

    def classify(self, features: np.ndarray) -> tuple[str, float]:
        """(predicted class, its probability) for one frame."""
        p = self.probabilities(features)
        k = int(np.argmax(p))
        return VIEW_CLASSES[k], float(p[k])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"view_mean": self.mean, "view_scale": self.scale, "view_weights": self.weights, "view_bias": self.bias}


@dataclass(frozen=True)
class ViewGuard:
    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    components: np.ndarray  # (k, F), orthonormal rows
    variances: np.ndarray  # (k,), training variance along each component
    residual: float  # mean squared residual outside the subspace, on training frames
    threshold: float = float("inf")  # score above which a frame is out of distribution (from bundle.json)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Out-of-distribution score of one (F,) or many (N, F) feature vectors (about 1 when training-like)."""
        z = _standardise(np.atleast_2d(features), self.mean, self.scale)
        t = z @ self.components.T
        inside = np.mean(t * t / self.variances, axis=1)
        outside = np.maximum(np.sum(z * z, axis=1) - np.sum(t * t, axis=1), 0.0) / self.residual
        return inside + outside

    def score(self, features: np.ndarray) -> float:
        return float(self.scores(features)[0])

    def arrays(self, view: str) -> dict[str, np.ndarray]:
        names = ("mean", "scale", "components", "variances", "residual")
        values = (self.mean, self.scale, self.components, self.variances, np.float32(self.residual))
        return {f"guard_{view}_{n}": np.asarray(v, np.float32) for n, v in zip(names, values, strict=True)}


@dataclass(frozen=True)
class SpeckleGuard:
    mean: np.ndarray  # (S,): the training frames' speckle_texture
    scale: np.ndarray  # (S,)
    precision: np.ndarray  # (S, S): inverse of the shrunk covariance of the standardised statistics
    threshold: float = float("inf")  # distance above which a frame is out of distribution (from bundle.json)

    def scores(self, textures: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of one (S,) or many (N, S) speckle_texture vectors from training."""
        z = _standardise(np.atleast_2d(textures), self.mean, self.scale)
        return np.sqrt(np.maximum(np.einsum("ni,ij,nj->n", z, self.precision, z), 0.0))

    def arrays(self, view: str) -> dict[str, np.ndarray]:
        values = {"mean": self.mean, "scale": self.scale, "precision": self.precision}
        return {f"speckle_{view}_{n}": np.asarray(v, np.float32) for n, v in values.items()}


@dataclass(frozen=True)
class ScannerCentre:
    """Where one adapted console's frames lie, per view: the mean of its local frames' features and speckle texture.

    The mean is estimated from ``frames`` frames, so a new frame's offset from it varies (1 + 1/frames) times as
    much as from the true mean: feature and speckle distances are divided by that. ``widening`` is the console's
    own spread: its local frames, each measured from the other subjects' mean, exceed the guard's limit no more
    often than its false-alarm target once their scores are divided by it (at least 1, at most
    CENTRE_MAX_WIDENING, so no console can excuse a saturated or foreign look)."""

    features: dict[str, np.ndarray]  # view -> (F,)
    speckle: dict[str, np.ndarray]  # view -> (S,)
    frames: int
    widening: float = 1.0

    @property
    def inflation(self) -> float:
        return 1.0 + 1.0 / self.frames

    def arrays(self, index: int) -> dict[str, np.ndarray]:
        out = {}
        for view in VIEWS:
            out[f"centre{index}_{view}_features"] = np.asarray(self.features[view], np.float32)
            out[f"centre{index}_{view}_speckle"] = np.asarray(self.speckle[view], np.float32)
        out[f"centre{index}_widening"] = np.array([self.widening], np.float32)
        return out


@dataclass(frozen=True)
class Gate:
    view_head: ViewHead | None
    guards: dict[str, ViewGuard] | None  # view -> guard
    speckle: dict[str, SpeckleGuard] | None = None  # view -> speckle part of the guard (when it was fitted)
    centres: dict[str, ScannerCentre] | None = None  # scanner profile -> its centre (consoles adapted at a site)

    def sort(self, tensor: np.ndarray, features: np.ndarray) -> tuple[str, float]:
        """What a frame shows: COLOUR (turned away before the head), or the view head's class and probability."""
        if has_colour(tensor):
            return COLOUR, 1.0
        return self.view_head.classify(features)

    def guard_score(
        self, view: str, tensor: np.ndarray, features: np.ndarray, scanner: str | None = None
    ) -> tuple[float, str] | None:
        """How far a frame lies from training on one scale (above GUARD_LIMIT: out of distribution) and which part of
        the guard says so (CLIPPED, FEATURES or SPECKLE); None when the bundle has no guard.

        Args:
            view: the view the frame is filed under.
            tensor: the model input.
            features: its encoder features.
            scanner: the console's profile; a console with a centre is measured from its own mean.
        """
        if not self.guards:
            return None
        guard, grey = self.guards[view], channel_max(tensor)
        centre = (self.centres or {}).get(scanner)
        inflation = centre.inflation if centre else 1.0
        if centre:
            features = np.asarray(features, np.float32) - centre.features[view] + guard.mean
        features_part = guard.score(features) / inflation / max(guard.threshold, 1e-12)
        parts = {FEATURES: features_part, CLIPPED: clipped_share(tensor, grey) / CLIPPED_SHARE_MAX}
        if self.speckle:
            speckle, texture = self.speckle[view], speckle_texture(tensor, grey)
            if centre:
                texture = texture - centre.speckle[view] + speckle.mean
            distance = float(speckle.scores(texture)[0]) / math.sqrt(inflation)
            parts[SPECKLE] = distance / max(speckle.threshold, 1e-12)
        reason = max(parts, key=parts.__getitem__)
        return parts[reason] / (centre.widening if centre else 1.0), reason

    def to_bytes(self) -> bytes:
        arrays = self.view_head.arrays() if self.view_head else {}
        for view, guard in (self.guards or {}).items():
            arrays |= guard.arrays(view)
        for view, speckle in (self.speckle or {}).items():
            arrays |= speckle.arrays(view)
        for index, scanner in enumerate(sorted(self.centres or {})):
            arrays |= self.centres[scanner].arrays(index)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, name: str, features: int, pooling: str | None, guard: GuardSpec | None) -> Gate:
        """Read gate.npz; a BundleError naming the file when an array is missing or the wrong shape.

        Args:
            data: the file's verified bytes.
            name: the file, for messages.
            features: the encoder's feature size.
            pooling: the view head's feature pooling from bundle.json; None when it declares no view gate.
            guard: the guard's thresholds from bundle.json; None when it declares no guard.
        """
        try:
            arrays = dict(np.load(io.BytesIO(data), allow_pickle=False))
        except (ValueError, OSError) as exc:
            raise BundleError(f"{name}: not a readable npz file ({exc})") from exc
        try:
            head = _view_head(arrays, pooling) if pooling is not None else None
            guards = {v: _guard(arrays, v, guard.thresholds[v]) for v in VIEWS} if guard is not None else None
            speckle = _speckle_guards(arrays, guard)
            centres = _centres(arrays, guard)
        except KeyError as exc:
            raise BundleError(f"{name}: array {exc} missing") from None
        _check_shapes(name, features, head, guards)
        _check_speckle_shapes(name, speckle)
        _check_centres(name, features, centres)
        return cls(head, guards, speckle, centres)


def _view_head(arrays: dict[str, np.ndarray], pooling: str) -> ViewHead:
    return ViewHead(*(arrays[f"view_{n}"] for n in ("mean", "scale", "weights", "bias")), pooling=pooling)


def _guard(arrays: dict[str, np.ndarray], view: str, threshold: float) -> ViewGuard:
    get = {n: arrays[f"guard_{view}_{n}"] for n in ("mean", "scale", "components", "variances", "residual")}
    residual = float(get["residual"])
    return ViewGuard(get["mean"], get["scale"], get["components"], get["variances"], residual, threshold)


def _speckle_guards(arrays: dict[str, np.ndarray], guard: GuardSpec | None) -> dict[str, SpeckleGuard] | None:
    """Per view, the guard's speckle part; None when bundle.json declares none (too few subjects to fit it)."""
    if guard is None or guard.speckle is None:
        return None
    parts = {}
    for view in VIEWS:
        mean, scale, precision = (arrays[f"speckle_{view}_{n}"] for n in ("mean", "scale", "precision"))
        parts[view] = SpeckleGuard(mean, scale, precision, guard.speckle.thresholds[view])
    return parts


def _centres(arrays: dict[str, np.ndarray], guard: GuardSpec | None) -> dict[str, ScannerCentre] | None:
    """Per adapted console, its centre (bundle.json's guard.scanner_centres names them, in sorted order)."""
    if guard is None or not guard.scanner_centres:
        return None
    centres = {}
    for index, scanner in enumerate(sorted(guard.scanner_centres)):
        features = {v: arrays[f"centre{index}_{v}_features"] for v in VIEWS}
        speckle = {v: arrays[f"centre{index}_{v}_speckle"] for v in VIEWS}
        widening = float(arrays.get(f"centre{index}_widening", np.ones(1))[0])
        centres[scanner] = ScannerCentre(features, speckle, guard.scanner_centres[scanner], widening)
    return centres


def _check_centres(name: str, features: int, centres: dict[str, ScannerCentre] | None) -> None:
    expected = {"features": (features,), "speckle": (len(SPECKLE_STATISTICS),)}
    for scanner, centre in (centres or {}).items():
        for part, shape in expected.items():
            bad = {v: a.shape for v, a in getattr(centre, part).items() if a.shape != shape}
            if bad:
                raise BundleError(f"{name}: {scanner}'s guard centre has {part} of shape {bad}, expected {shape}")


def _check_speckle_shapes(name: str, speckle: dict[str, SpeckleGuard] | None) -> None:
    size = len(SPECKLE_STATISTICS)
    for view, part in (speckle or {}).items():
        if part.mean.shape != (size,) or part.scale.shape != (size,) or part.precision.shape != (size, size):
            shapes = f"{part.mean.shape}, {part.scale.shape}, {part.precision.shape}"
            raise BundleError(f"{name}: {view} speckle guard arrays are {shapes}, expected {size} statistics")


def _check_shapes(name: str, features: int, head: ViewHead | None, guards: dict[str, ViewGuard] | None) -> None:
    problems = []
    if head is not None and head.pooling != "none" and features != int(np.prod(FEATURE_MAP)):
        problems.append(f"view head pools a {FEATURE_MAP} map, but the encoder gives {features} features")
    elif head is not None:
        size = view_features(np.zeros((1, features), np.float32), head.pooling).shape[1]
        if head.weights.shape != (size, len(VIEW_CLASSES)):
            problems.append(f"view weights {head.weights.shape}, expected {(size, len(VIEW_CLASSES))}")
    for view, guard in (guards or {}).items():
        if guard.components.ndim != 2 or guard.components.shape[1] != features or guard.mean.shape != (features,):
            problems.append(f"{view} guard components {guard.components.shape} for {features} features")
    if problems:
        raise BundleError(f"{name}: {'; '.join(problems)}")


@dataclass(frozen=True)
class Route:
    """Where the gate files a frame: its view and the gate's confidence in it, or what it saw in a frame it keeps
    out; and the gate's own view when it confidently disagrees with the one the frame names."""

    view: str | None
    confidence: float | None = None
    kept_out: GateKeptOut | None = None  # colour, other, or a view predicted below the confidence floor
    mismatch: str | None = None
    kidney: KidneyLook | None = None  # the kidney finder's look, when it filed the frame where the head would not

    @property
    def by_kidney(self) -> bool:
        """Filed kidney_liver by the kidney finder where the view head would not have."""
        return self.kidney is not None


def kidney_bar(route: Route) -> float:
    """The kidney finder's evidence that files a frame as a kidney-liver view against the head's route. Against a
    head that sees a liver view, the finder must be sure (KIDNEY_VIEW_EVIDENCE): a liver view's vessels and
    gallbladder can look like a kidney. A frame the head sees as no view at all needs only the level at which a
    kidney is measured (MIN_KIDNEY_EVIDENCE): the head calls a severe liver's kidney-liver view 'other' when the run
    had few severe livers, and the two witnesses then agree that it is no liver view and that a kidney is there.
    `benchmarks kidney-rule` measures both levels on every frame kind."""
    seen = route.view if route.view is not None else route.kept_out
    return KIDNEY_VIEW_EVIDENCE if seen == VIEWS[0] else MIN_KIDNEY_EVIDENCE


class GuardVerdict(NamedTuple):
    """The guard's word on one frame: flagged or not (None: the bundle has no guard), the part that flags it, and
    the score on the guard's scale (above GUARD_LIMIT: flagged), which the exam weighs over its window."""

    outside: bool | None
    part: GuardPart | None
    score: float | None


class GatePolicy:
    """The gate's decisions for one bundle: routing with view authority, and the guard's verdict."""

    def __init__(self, gate: Gate | None, spec: ViewGateSpec | None, view_authority: str):
        """Args:
        gate: the bundle's gate arrays (None: the bundle has neither view gate nor guard).
        spec: bundle.json's view_gate (its floor and whether its CV meets the bar).
        view_authority: [runtime.gate] view_authority: 'model' or 'header'.
        """
        self.gate, self.spec, self.view_authority = gate, spec, view_authority

    def route(
        self, named: str, tensor: np.ndarray, features: np.ndarray, may_look: Callable[[], bool] | None = None
    ) -> Route:
        """The view a frame is paired under. A named view is used as sent unless the gate confidently says otherwise
        (and wins: view_authority 'model' and a gate meeting its CV bar); the disagreement is reported whoever wins.
        An 'auto' frame needs a confident liver or kidney_liver prediction. Colour comes first: it is not a view.
        An 'auto' or kidney-liver frame the head would not file as kidney_liver is one when the kidney finder makes
        its case (kidney_bar).

        Args:
            named: the view the frame's header names ('auto' when the source does not know).
            tensor: the model input.
            features: its encoder features.
            may_look: asked just before the kidney finder would run (it costs tens of ms), so a caller can ration
                the looks actually taken; None: always.
        """
        route = self._head_route(named, tensor, features)
        kidney_liver = VIEWS[1]
        if route.view == kidney_liver or route.kept_out == COLOUR or named not in (AUTO_VIEW, kidney_liver):
            return route
        if self.gate is None or self.gate.view_head is None or (may_look is not None and not may_look()):
            return route
        look = look_for_kidney(channel_max(tensor))
        if look.evidence < kidney_bar(route):
            return route
        return Route(kidney_liver, look.evidence, mismatch=route.mismatch, kidney=look)

    def _head_route(self, named: str, tensor: np.ndarray, features: np.ndarray) -> Route:
        """The route the view head and view authority give."""
        if self.gate is None or self.gate.view_head is None:
            return Route(named)
        predicted, confidence = self.gate.sort(tensor, features)
        if predicted == COLOUR:
            return Route(None, kept_out=COLOUR)
        confident = confidence >= self.spec.confidence_floor
        is_named = named in VIEWS
        disagrees = is_named and confident and predicted != named
        mismatch = predicted if disagrees else None
        header_wins = self.view_authority == "header" or not self.spec.meets_bar
        if is_named and (header_wins or not disagrees):
            return Route(named, confidence if predicted == named else None, mismatch=mismatch)
        if predicted in VIEWS and confident:
            return Route(predicted, confidence, mismatch=mismatch)
        return Route(None, kept_out=GateKeptOut(predicted), mismatch=mismatch)

    def guard(self, view: str, tensor: np.ndarray, features: np.ndarray, scanner: str | None = None) -> GuardVerdict:
        """Whether the guard flags the frame (measured from its console's centre, when the bundle has one), which
        part of it does, and its score; all None when the bundle has no guard.

        Args:
            view: the view the frame is filed under.
            tensor: the model input.
            features: its encoder features.
            scanner: the console's profile, which picks its centre.
        """
        scored = self.gate.guard_score(view, tensor, features, scanner) if self.gate else None
        if scored is None:
            return GuardVerdict(None, None, None)
        score, part = scored
        outside = score > GUARD_LIMIT
        return GuardVerdict(outside, part if outside else None, float(score))
