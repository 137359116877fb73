"""The exam-level answer: many noisy pairs of frames -> one stable, calibrated call with its uncertainty.

A clinician reads an exam, not a frame. Per session the runtime keeps the recent pairs (the last
``window_pairs`` within ``window_s`` seconds), combines them robustly (a trimmed mean of calibrated logits
and of PDFF), puts an interval on each, and makes a three-way call: ``fatty``, ``normal`` or
``indeterminate`` when the p_fatty interval straddles the threshold or the PDFF interval lies wholly on the
other side of the 5 % line (the two outputs contradict each other beyond their uncertainty). A new call is
shown only after it has been the candidate for ``hold_updates`` consecutive pairs and for at least ``hold_s``
seconds of frame time (hysteresis: pairs arrive 15 times a second in a busy exam), so the display
does not flicker when one pair lands near the line. docs/DESIGN.md, "The exam-level answer", has the numbers
behind each choice. Numpy only: this runs at the bedside.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edge_runtime.config import ExamPolicy
from edge_runtime.contracts import FATTY_PDFF, VIEWS, ExamCalibration, ExamEstimate, PlattCalibrator

P_CLIP = 1e-6  # probabilities are clipped this far from 0 and 1 before taking logits
Z_90 = 1.6448536269514722  # standard normal quantile for a two-sided 90 % interval


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), P_CLIP, 1 - P_CLIP)
    return np.log(p) - np.log1p(-p)


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


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
    cut = math.floor(trim * len(values))
    ordered = np.sort(values)
    return float(ordered[cut : len(values) - cut].mean())


def log1p_interval(center: float, halfwidth: float) -> tuple[float, float]:
    """An interval for PDFF (%) symmetric in log(1 + PDFF): errors grow with the fat fraction."""
    mid = math.log1p(max(center, 0.0))
    return (max(math.expm1(mid - halfwidth), 0.0), math.expm1(mid + halfwidth))


OUTSIDE_TRAINING = "outside the model's training distribution"


@dataclass
class Pair:
    ts: float  # capture time of the newer frame
    logit: float  # calibrated logit of p_fatty
    pdff: float
    outside: bool = False  # a frame of the pair lies outside the training distribution (the bundle's guard)


@dataclass
class Combined:
    """The window's combination before any call is made."""

    p: float
    p_interval: tuple[float, float]
    pdff: float
    pdff_interval: tuple[float, float]
    n_pairs: int


def combine(pairs: list[Pair], policy: ExamPolicy, pdff_halfwidth: float) -> Combined:
    """Trimmed means, a 90 % interval for p from the pairs' spread, and for PDFF from the CV residuals too.

    The PDFF interval adds in quadrature the model's own error (the conformal half-width fitted on out-of-fold
    residuals, in log1p space) and the spread between this exam's pairs.
    """
    logits = np.array([p.logit for p in pairs])
    pdffs = np.log1p(np.maximum([p.pdff for p in pairs], 0.0))
    n = len(pairs)
    sd = float(logits.std(ddof=1)) if n > 1 else 0.0
    centre = trimmed_mean(logits, policy.trim)
    spread = Z_90 * sd / math.sqrt(n)
    pdff_sd = float(pdffs.std(ddof=1)) if n > 1 else 0.0
    pdff_centre = math.expm1(trimmed_mean(pdffs, policy.trim))
    halfwidth = math.hypot(pdff_halfwidth, Z_90 * pdff_sd / math.sqrt(n))
    return Combined(
        p=float(sigmoid(centre)),
        p_interval=(float(sigmoid(centre - spread)), float(sigmoid(centre + spread))),
        pdff=pdff_centre,
        pdff_interval=log1p_interval(pdff_centre, halfwidth),
        n_pairs=n,
    )


def candidate_call(c: Combined, threshold: float, fatty_pdff: float = FATTY_PDFF) -> tuple[str, str | None]:
    """The call the window supports now, and why it is indeterminate when it is."""
    lo, hi = c.p_interval
    if lo < threshold <= hi:
        return "indeterminate", f"p_fatty interval {lo:.2f}-{hi:.2f} straddles {threshold:g}"
    call = "fatty" if lo >= threshold else "normal"
    pdff_lo, pdff_hi = c.pdff_interval
    span = f"PDFF {pdff_lo:.1f}-{pdff_hi:.1f} %"
    if call == "fatty" and pdff_hi < fatty_pdff:
        return "indeterminate", f"discordant: p_fatty says fatty, {span} is below {fatty_pdff:g} %"
    if call == "normal" and pdff_lo >= fatty_pdff:
        return "indeterminate", f"discordant: p_fatty says normal, {span} is above {fatty_pdff:g} %"
    return call, None


@dataclass
class ExamTracker:
    """One session's exam: its recent pairs, the call on display and since when it has held."""

    policy: ExamPolicy
    model: ExamModel
    pairs: deque[Pair] = field(default_factory=deque)
    views_seen: set[str] = field(default_factory=set)
    shown: str | None = None
    stable_since: float | None = None
    pending: str | None = None
    streak: int = 0
    pending_since: float = 0.0
    last: ExamEstimate | None = None

    def saw(self, view: str) -> None:
        self.views_seen.add(view)

    def add(self, ts: float, p_fatty: float, pdff: float, outside: bool = False) -> ExamEstimate:
        """One new pair: slide the window, recombine, apply hysteresis; returns the exam as it now stands.

        Args:
            ts: capture time of the pair's newer frame.
            p_fatty: the head's raw probability.
            pdff: the head's PDFF estimate, %.
            outside: the guard flagged a frame of the pair; such pairs never enter the combination, and while
                they are the majority of the window the exam gives no call.
        """
        self.pairs.append(Pair(ts, float(self.model.logit(p_fatty, pdff)), pdff, outside))
        while len(self.pairs) > self.policy.window_pairs or ts - self.pairs[0].ts > self.policy.window_s:
            self.pairs.popleft()
        usable = [p for p in self.pairs if not p.outside]
        if 2 * (len(self.pairs) - len(usable)) > len(self.pairs):
            flagged = len(self.pairs) - len(usable)
            self.last = self.waiting(f"{OUTSIDE_TRAINING}: {flagged} of {len(self.pairs)} recent pairs")
            return self.last
        if len(usable) < self.policy.min_pairs:
            self.last = self.waiting(f"collecting: {len(usable)} of {self.policy.min_pairs} pairs")
            return self.last
        combined = combine(usable, self.policy, self.model.pdff_halfwidth)
        call, reason = candidate_call(combined, self.model.threshold, self.model.fatty_pdff)
        self._hold(call, ts)
        if self.shown is None:
            reason = f"settling: {call} for {self.streak} of {self.policy.hold_updates} updates"
        elif call != self.shown:
            reason = f"holding {self.shown}: {call} for {self.streak} of {self.policy.hold_updates} updates"
        self.last = self._estimate(combined, reason)
        return self.last

    def _hold(self, call: str, ts: float) -> None:
        """Hysteresis: a call replaces the shown one only after hold_updates consecutive updates over hold_s."""
        if call == self.shown:
            self.pending, self.streak = None, 0
            return
        if call != self.pending:
            self.streak, self.pending_since = 0, ts
        self.streak += 1
        self.pending = call
        held = ts - self.pending_since >= self.policy.hold_s
        if self.streak >= self.policy.hold_updates and held:
            self.shown, self.stable_since, self.pending, self.streak = call, ts, None, 0

    def _estimate(self, c: Combined, reason: str | None) -> ExamEstimate:
        side_fatty = c.pdff >= self.model.fatty_pdff
        discordant = self.shown in ("fatty", "normal") and side_fatty != (self.shown == "fatty")
        return ExamEstimate(
            call=self.shown,
            reason=reason,
            p_fatty=round(c.p, 4),
            p_fatty_interval=(round(c.p_interval[0], 4), round(c.p_interval[1], 4)),
            pdff=round(c.pdff, 2),
            pdff_interval=(round(c.pdff_interval[0], 2), round(c.pdff_interval[1], 2)),
            n_pairs=c.n_pairs,
            stable_since=self.stable_since,
            calibrated=self.model.calibrated,
            discordant=discordant,
            views_seen=sorted(self.views_seen),
        )

    def waiting(self, reason: str) -> ExamEstimate:
        return ExamEstimate(
            call=None,
            reason=reason,
            n_pairs=len(self.pairs),
            calibrated=self.model.calibrated,
            views_seen=sorted(self.views_seen),
        )

    def status(self) -> ExamEstimate:
        """The exam as it stands, for heartbeats and the final audit record (also before any pair)."""
        if self.last is not None:
            return self.last
        missing = [v for v in VIEWS if v not in self.views_seen]
        return self.waiting(f"no {' or '.join(missing)} frame yet: an exam needs both views")


@dataclass(frozen=True)
class ExamModel:
    """What the bundle says about turning raw outputs into an exam answer (raw p_fatty when it has no calibrator)."""

    threshold: float
    calibrator: PlattCalibrator | None = None
    pdff_halfwidth: float = 0.0
    fatty_pdff: float = FATTY_PDFF

    @classmethod
    def from_bundle(cls, calibration: ExamCalibration, threshold: float) -> ExamModel:
        halfwidth = calibration.pdff_interval.halfwidth if calibration.pdff_interval else 0.0
        return cls(threshold, calibration.p_fatty, halfwidth, calibration.fatty_pdff)

    @property
    def calibrated(self) -> bool:
        return self.calibrator is not None

    def logit(self, p_fatty: float, pdff: float) -> float:
        return float(calibrated_logit(self.calibrator, p_fatty, pdff)[0])
