"""The exam-level answer: many pairs of frames -> one stable call that is definite only when the model has earned it.

A clinician reads an exam, not a frame. Per session the runtime keeps the recent pairs (the last ``window_pairs``
within ``window_s`` seconds), each the bundle's ensemble answer (edge_runtime.model.uncertainty), and combines them
robustly (trimmed means of calibrated logits and of log(1 + PDFF)). What the exam then says comes from the model's
own error, fitted on the run's out-of-fold predictions, not from how much the frames agree:

- the **class set** at the declared coverage (conformal): ``fatty`` or ``normal`` when one class alone reaches it,
  else ``indeterminate`` with the reason ("the model cannot tell at 95 %");
- the **PDFF interval**: 90 % of patients like this one, wider where the ensemble disagrees (normalised
  conformal), widened further when this exam's pairs disagree;
- a fatty call whose PDFF interval lies wholly below 5 % (or the reverse) is indeterminate: the two outputs
  contradict each other beyond their uncertainty;
- pairs the bundle's guard flags never enter the combination, and while the window's pairs lie outside training
  as a whole (their trimmed mean guard score above the limit) there is no call.

A new call is shown only after it has been the candidate for ``hold_updates`` consecutive pairs and for at least
``hold_s`` seconds of frame time, so the display does not flicker. docs/DESIGN.md, "The honest answer", has the
numbers behind each choice. Numpy only: this runs at the bedside.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np

from edge_runtime.config import ExamPolicy
from edge_runtime.contracts import (
    FATTY_PDFF,
    GUARD_LIMIT,
    NO_CALL_SAID,
    PDFF_BAND_NAMES,
    VIEWS,
    CertifiedCalls,
    ExamCalibration,
    ExamEstimate,
    ExamHri,
    NoCall,
    PlattCalibrator,
)
from edge_runtime.measure.hri import FrameHri, exam_hri
from edge_runtime.model.uncertainty import (
    Members,
    band_multiplier,
    certified_thresholds,
    conformal_quantile,
    definite_call,
    log1p_bounds,
    logit,
    pdff_band,
    sigmoid,
)

Z_90 = 1.6448536269514722  # standard normal quantile for a two-sided 90 % interval
CANNOT_TELL = NO_CALL_SAID[NoCall.CANNOT_TELL]

__all__ = ["ExamModel", "ExamTracker", "calibrated_logit", "count_flips", "logit", "sigmoid"]


def calibrator_inputs(p_fatty: np.ndarray, pdff: np.ndarray, inputs: list[str]) -> np.ndarray:
    """The calibrator's design matrix: logit(p_fatty) and, for two-output models, the PDFF estimate (%)."""
    columns = {"logit_p_fatty": logit(p_fatty), "pdff": np.asarray(pdff, dtype=np.float64)}
    return np.stack([columns[name] for name in inputs], axis=-1)


def calibrated_logit(calibrator: PlattCalibrator | None, p_fatty, pdff) -> np.ndarray:
    """Platt scaling (on both outputs when the model has both); the raw logit when there is no calibrator."""
    if calibrator is None:
        return np.atleast_1d(logit(p_fatty))
    x = calibrator_inputs(np.atleast_1d(p_fatty), np.atleast_1d(pdff), calibrator.inputs)
    return x @ np.asarray(calibrator.coef) + calibrator.intercept


def count_flips(calls: list) -> int:
    """How often a sequence of calls changes its mind (None, 'no call yet', is skipped)."""
    shown = [c for c in calls if c is not None]
    return sum(a != b for a, b in itertools.pairwise(shown))


def trimmed_mean(values: np.ndarray, trim: float) -> float:
    """The mean after dropping ``trim`` of the values from each end: one wild value cannot move it."""
    cut = math.floor(trim * len(values))
    ordered = np.sort(values)
    return float(ordered[cut : len(values) - cut].mean())


def log1p_interval(center: float, halfwidth: float) -> tuple[float, float]:
    """An interval for PDFF (%) symmetric in log(1 + PDFF): errors grow with the fat fraction."""
    return log1p_bounds(math.log1p(max(center, 0.0)), halfwidth)


@dataclass(frozen=True)
class ExamModel:
    """What the bundle says about its own error, at the level the site asks for."""

    threshold: float  # p_fatty at or above which a single pair is fatty
    calibrator: PlattCalibrator | None = None
    pdff_coverage: float | None = None
    pdff_halfwidth: float = 0.0  # log(1 + PDFF); the half-width for every patient when there is no spread model
    spread_multiplier: float | None = None  # normalised interval: half-width = multiplier x (spread + floor)
    band_multipliers: Mapping[str, float] = field(default_factory=dict)  # the multiplier per band of the estimate
    spread_floor: float = 0.0
    recalibration: tuple[float, float] = (0.0, 1.0)  # log(1 + PDFF) estimate -> a + b x estimate
    fatty_pdff: float = FATTY_PDFF
    definite: Definite | None = None  # the certified definite calls; None: the bundle certifies none

    @classmethod
    def from_bundle(cls, calibration: ExamCalibration, threshold: float, policy: ExamPolicy) -> ExamModel:
        """The bundle's statements at the policy's levels (or the bundle's declared ones)."""
        normalised, constant = calibration.pdff_normalised, calibration.pdff_interval
        model = cls(threshold, calibration.p_fatty, fatty_pdff=calibration.fatty_pdff)
        if constant is not None:
            model = replace(model, pdff_coverage=constant.coverage, pdff_halfwidth=constant.halfwidth)
        if normalised is not None:
            coverage = policy.pdff_coverage or normalised.coverage
            multiplier = conformal_quantile(normalised.scores, coverage)
            model = replace(model, pdff_coverage=coverage, spread_multiplier=multiplier)
            model = replace(model, spread_floor=normalised.spread_floor, recalibration=normalised.recalibration)
            bands = {
                name: band_multiplier(normalised.band_scores, name, coverage, multiplier) for name in PDFF_BAND_NAMES
            }
            model = replace(model, band_multipliers=MappingProxyType(bands))
        if calibration.definite is not None:
            model = replace(model, definite=Definite.at_policy(calibration.definite, policy))
        return model

    @property
    def calibrated(self) -> bool:
        return self.calibrator is not None

    def logit(self, members: Members) -> float:
        return float(calibrated_logit(self.calibrator, members.p_fatty, members.pdff)[0])

    def pdff_centre(self, log_pdff: float) -> float:
        """The recalibrated estimate, in log(1 + PDFF) (unchanged without a spread model)."""
        intercept, slope = self.recalibration
        return intercept + slope * log_pdff

    def pdff_bounds(self, centre: float, spread: float, pair_se: float) -> tuple[float, float]:
        """The PDFF interval around the estimate: the model's own error (normalised by its spread when it has one)
        and this exam's pair disagreement, in quadrature."""
        if self.spread_multiplier is None:
            return log1p_bounds(centre, math.hypot(self.pdff_halfwidth, pair_se))
        multiplier = self.band_multipliers.get(pdff_band(math.expm1(centre)), self.spread_multiplier)
        model_error = multiplier * (spread + self.spread_floor)
        return log1p_bounds(centre, math.hypot(model_error, pair_se))


@dataclass(frozen=True)
class Definite:
    """The definite calls this box makes: the thresholds certified at the site's level, and what they rest on."""

    fatty_threshold: float | None
    normal_threshold: float | None
    error: float
    subjects: int

    @classmethod
    def at_policy(cls, certified: CertifiedCalls, policy: ExamPolicy) -> Definite:
        """The bundle's certification, or certified again from its evidence at the level [runtime.exam] asks."""
        error = policy.definite_error or certified.error
        if error == certified.error:
            return cls(certified.fatty_threshold, certified.normal_threshold, error, certified.subjects)
        evidence = np.array(certified.evidence, dtype=np.float64).reshape(-1, 2)
        up, down = certified_thresholds(evidence[:, 0], evidence[:, 1] > 0.5, error)
        return cls(up.threshold, down.threshold, error, certified.subjects)

    def cannot_certify(self, p_fatty: float) -> str | None:
        """Why no threshold exists on this side of the line, in words, or None when one does."""
        missing = [
            name for name, t in (("fatty", self.fatty_threshold), ("normal", self.normal_threshold)) if t is None
        ]
        side = "fatty" if p_fatty >= 0.5 else "normal"
        if len(missing) == 2 or side in missing:
            what = "definite calls" if len(missing) == 2 else f"definite {side} calls"
            return f"this bundle's {self.subjects} calibration subjects cannot certify {what} at {100 * self.error:g} %"
        return None


@dataclass
class ExamPair:
    """One pair of frames as the exam keeps it."""

    ts: float  # capture time of the newer frame
    logit: float  # calibrated logit of the ensemble's p_fatty
    log_pdff: float  # the ensemble's log(1 + PDFF)
    spread: float  # the ensemble's spread of log(1 + PDFF)
    guard_score: float | None = None  # the larger of its two frames' guard scores (None: the bundle has no guard)
    clock: float = 0.0  # the server's monotonic clock when the pair came: the window and the hold use it

    @property
    def outside(self) -> bool:
        """A frame of the pair lies outside the training distribution: the pair never enters the combination."""
        return self.guard_score is not None and self.guard_score > GUARD_LIMIT


STUDY_WINDOW_S = 1e9  # a stored study's pairs all count, however long the study took


def study_policy(live: ExamPolicy) -> ExamPolicy:
    """A DICOM study's exam: every pair of the study (up to ``window_pairs``) counts, and the call is stated as soon
    as the pairs support it. A study is complete when it ends; the hold and the minimum number of pairs steady a
    live display, which a study's stored images do not need (the class sets are calibrated per single pair)."""
    return live.model_copy(update={"window_s": STUDY_WINDOW_S, "min_pairs": 1, "hold_updates": 1, "hold_s": 0.0})


@dataclass
class Combined:
    """The window's combination before any call is made."""

    p: float
    log_pdff: float
    pdff_interval: tuple[float, float]
    n_pairs: int
    log_se: float | None  # the estimate's standard error on log(1 + PDFF) from the pairs' disagreement

    @property
    def pdff(self) -> float:
        return math.expm1(self.log_pdff)


def outside_training(pairs: list[ExamPair], trim: float) -> str | None:
    """Why the window lies outside the training distribution as a whole, or None. The verdict is the trimmed mean of
    the pairs' guard scores against GUARD_LIMIT: a count of flagged pairs would silence an exam for one rendering
    just over the limit (every pair with it is flagged) by which rendering happened to pair more often, and would
    call one whose minority of pairs lies far outside; the trim keeps a single glitch from deciding."""
    scores = np.array([p.guard_score for p in pairs if p.guard_score is not None])
    if len(scores) == 0:
        return None
    typical = trimmed_mean(scores, trim)
    if typical <= GUARD_LIMIT:
        return None
    flagged = int(np.sum(scores > GUARD_LIMIT))
    return (
        f"{NO_CALL_SAID[NoCall.OUTSIDE_TRAINING]}: {flagged} of {len(pairs)} recent pairs flagged, "
        f"typical guard score {typical:.2f} (limit {GUARD_LIMIT:g})"
    )


def combine(pairs: list[ExamPair], policy: ExamPolicy, model: ExamModel) -> Combined:
    """Trimmed means over the pairs; the PDFF interval from the model's error and the pairs' disagreement."""
    logits = np.array([p.logit for p in pairs])
    logs = np.array([p.log_pdff for p in pairs])
    n = len(pairs)
    sd = float(logs.std(ddof=1)) if n > 1 else 0.0
    centre = model.pdff_centre(trimmed_mean(logs, policy.trim))
    bounds = model.pdff_bounds(centre, float(np.mean([p.spread for p in pairs])), Z_90 * sd / math.sqrt(n))
    log_se = abs(model.recalibration[1]) * sd / math.sqrt(n) if n > 1 else None
    return Combined(float(sigmoid(trimmed_mean(logits, policy.trim))), centre, bounds, n, log_se)


@dataclass(frozen=True)
class Candidate:
    """The call the window supports now; when it is indeterminate, why (declared) and in words; the class set."""

    call: str
    why: NoCall | None = None
    reason: str | None = None
    chosen: list[str] | None = None


def candidate_call(c: Combined, model: ExamModel) -> Candidate:
    """The call the window supports now, why it is indeterminate when it is, and the classes it cannot rule out."""
    if model.definite is None:
        said = f"{CANNOT_TELL}: the bundle certifies no definite calls (no model-error calibration)"
        return Candidate("indeterminate", NoCall.NOT_CALIBRATED, said, ["fatty", "normal"])
    definite = model.definite
    call = definite_call(c.p, definite.fatty_threshold, definite.normal_threshold)
    if call is None:
        uncertifiable = definite.cannot_certify(c.p)
        if uncertifiable is not None:
            return Candidate("indeterminate", NoCall.CANNOT_CERTIFY, uncertifiable, ["fatty", "normal"])
        needs = _needs(definite)
        said = f"{CANNOT_TELL} at {100 * definite.error:g} % error: p_fatty {c.p:.2f}; a definite call needs {needs}"
        return Candidate("indeterminate", NoCall.CANNOT_TELL, said, ["fatty", "normal"])
    lo, hi = c.pdff_interval
    span, line = f"PDFF {lo:.1f}-{hi:.1f} %", model.fatty_pdff
    if call == "fatty" and hi < line:
        said = f"discordant: p_fatty says fatty, {span} is below {line:g} %"
        return Candidate("indeterminate", NoCall.DISCORDANT, said, ["fatty", "normal"])
    if call == "normal" and lo >= line:
        said = f"discordant: p_fatty says normal, {span} is above {line:g} %"
        return Candidate("indeterminate", NoCall.DISCORDANT, said, ["fatty", "normal"])
    return Candidate(call, chosen=[call])


def _needs(definite: Definite) -> str:
    parts = []
    if definite.fatty_threshold is not None:
        parts.append(f"p_fatty >= {definite.fatty_threshold:.2f} (fatty)")
    if definite.normal_threshold is not None:
        parts.append(f"<= {definite.normal_threshold:.2f} (normal)")
    return " or ".join(parts)


HRI_FRAMES = 30  # the exam's HRI combines its last this many measured kidney-liver frames


@dataclass
class ExamTracker:
    """One session's exam: its recent pairs, the call on display and since when it has held."""

    policy: ExamPolicy
    model: ExamModel
    pairs: deque[ExamPair] = field(default_factory=deque)
    views_seen: set[str] = field(default_factory=set)
    shown: str | None = None
    shown_why: NoCall | None = None  # why the shown call is indeterminate, when it is
    stable_since: float | None = None
    pending: str | None = None
    streak: int = 0
    pending_since: float = 0.0
    last: ExamEstimate | None = None
    hri_frames: deque[FrameHri] = field(default_factory=lambda: deque(maxlen=HRI_FRAMES))

    def saw(self, view: str) -> None:
        self.views_seen.add(view)

    def add_hri(self, measured: FrameHri) -> None:
        """A guard-clean kidney-liver frame's HRI (or why it had none) joins the exam's."""
        self.hri_frames.append(measured)

    def _hri(self) -> ExamHri | None:
        return exam_hri(list(self.hri_frames)) if self.hri_frames else None

    def add(
        self, ts: float, members: Members, guard_score: float | None = None, clock: float | None = None
    ) -> ExamEstimate:
        """One new pair: slide the window, recombine, apply hysteresis; returns the exam as it now stands.

        Args:
            ts: capture time of the pair's newer frame.
            members: the bundle's ensemble answer for the pair.
            guard_score: the larger of the pair's two frames' guard scores (None: the bundle has no guard). A
                pair above GUARD_LIMIT never enters the combination; the exam gives no call while its window lies
                outside training as a whole (outside_training).
            clock: the server's monotonic seconds, so that a wall-clock jump neither empties the window nor
                skips the hold (default: ts, for replays that have only frame times).
        """
        clock = ts if clock is None else clock
        pair = ExamPair(ts, self.model.logit(members), members.log_pdff, members.log_pdff_spread, guard_score, clock)
        self.pairs.append(pair)
        while len(self.pairs) > self.policy.window_pairs or clock - self.pairs[0].clock > self.policy.window_s:
            self.pairs.popleft()
        usable = [p for p in self.pairs if not p.outside]
        outside = outside_training(list(self.pairs), self.policy.trim)
        if outside is not None:
            self.last = self.waiting(NoCall.OUTSIDE_TRAINING, outside)
            return self.last
        if len(usable) < self.policy.min_pairs:
            said = f"{NO_CALL_SAID[NoCall.COLLECTING]}: {len(usable)} of {self.policy.min_pairs} pairs"
            self.last = self.waiting(NoCall.COLLECTING, said)
            return self.last
        combined = combine(usable, self.policy, self.model)
        candidate = candidate_call(combined, self.model)
        self._hold(candidate, ts, clock)
        self.last = self._estimate(combined, self._said(candidate))
        return self.last

    def _said(self, candidate: Candidate) -> Candidate:
        """What the exam says while a new call builds up: settling before the first, holding the shown one after."""
        building = f"{candidate.call} for {self.streak} of {self.policy.hold_updates} updates"
        if self.shown is None:
            settling = f"{NO_CALL_SAID[NoCall.SETTLING]}: {building}"
            return Candidate(candidate.call, NoCall.SETTLING, settling, candidate.chosen)
        if candidate.call != self.shown:
            return Candidate(candidate.call, self.shown_why, f"holding {self.shown}: {building}", candidate.chosen)
        return candidate

    def _hold(self, candidate: Candidate, ts: float, clock: float) -> None:
        """Hysteresis: a call replaces the shown one only after hold_updates consecutive updates over hold_s."""
        call = candidate.call
        if call == self.shown:
            self.pending, self.streak, self.shown_why = None, 0, candidate.why
            return
        if call != self.pending:
            self.streak, self.pending_since = 0, clock
        self.streak += 1
        self.pending = call
        held = clock - self.pending_since >= self.policy.hold_s
        if self.streak >= self.policy.hold_updates and held:
            self.shown, self.stable_since, self.pending, self.streak = call, ts, None, 0
            self.shown_why = candidate.why

    def _estimate(self, c: Combined, candidate: Candidate) -> ExamEstimate:
        side_fatty = c.pdff >= self.model.fatty_pdff
        discordant = self.shown in ("fatty", "normal") and side_fatty != (self.shown == "fatty")
        return ExamEstimate(
            call=self.shown,
            reason=candidate.reason,
            why=candidate.why,
            p_fatty=round(c.p, 4),
            pdff=round(c.pdff, 2),
            pdff_interval=(round(c.pdff_interval[0], 2), round(c.pdff_interval[1], 2)),
            pdff_se=None if c.log_se is None else round(c.log_se, 5),
            n_pairs=c.n_pairs,
            stable_since=self.stable_since,
            calibrated=self.model.calibrated,
            discordant=discordant,
            views_seen=sorted(self.views_seen),
            class_set=candidate.chosen,
            pdff_coverage=self.model.pdff_coverage,
            hri=self._hri(),
            **self._certified(),
        )

    def waiting(self, why: NoCall, reason: str) -> ExamEstimate:
        return ExamEstimate(
            call=None,
            reason=reason,
            why=why,
            n_pairs=len(self.pairs),
            calibrated=self.model.calibrated,
            views_seen=sorted(self.views_seen),
            pdff_coverage=self.model.pdff_coverage,
            hri=self._hri(),
            **self._certified(),
        )

    def _certified(self) -> dict:
        """What a definite call of this exam rests on: the certified error and the subjects."""
        definite = self.model.definite
        if definite is None:
            return {}
        return {"definite_error": definite.error, "definite_subjects": definite.subjects}

    def status(self) -> ExamEstimate:
        """The exam as it stands, for heartbeats and the final audit record (also before any pair)."""
        if self.last is not None:
            return self.last
        missing = [v for v in VIEWS if v not in self.views_seen]
        return self.waiting(NoCall.COLLECTING, f"no {' or '.join(missing)} frame yet: an exam needs both views")
