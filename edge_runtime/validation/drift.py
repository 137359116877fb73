"""Drift without labels: each scanner's recent exams against what the bundle's validation leads to expect, so a
site notices a console whose answers have left what the bundle was validated for before any MRI comes back.

Per scanner, over its last ``window_exams`` exams (once it has ``min_exams``):
- **guard share**: exams where the guard flags at least half the frames, against the share the bundle's acceptance
  allows (its guard bound); a one-sided binomial bound at ``alpha``.
- **indeterminate share**: exams without a definite call, against 1 - the bundle's cross-fitted definite share; the
  same binomial bound.
- **PDFF distribution**: the exams' PDFF estimates against the bundle's cross-fitted estimates, by the two-sample
  Kolmogorov-Smirnov distance and its critical value at ``alpha``.
- **display level**: the exams' median echo as the console displays it, before harmonisation, against the
  scanner's own go-live baseline (its first ``window_exams`` exams since the box started): the window by the same
  KS test (a drift), and the mean of its latest STEP_EXAMS against the baseline's (a step, by a t test at
  ``alpha``: exams vary with the patient and the operator's gain, so a step shows in a mean sooner than in any one
  exam). Harmonisation divides gain away, so the answers cannot show a gain, grey-map or probe change; this does.
An alarm stands while its statistic stays beyond the bound; the heartbeat, the page and Prometheus name the scanner
and the statistic. ``alpha`` is small because the check runs after every exam: at 0.001 a scanner's 100
in-distribution exams raise no alarm (benchmarks drift).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

from edge_runtime.config import DriftSettings
from edge_runtime.contracts import BundleMeta, DriftAlarm
from edge_runtime.validation.verdict import binomial_tail

if TYPE_CHECKING:
    from edge_runtime.box.stats import ThrottledLog
    from edge_runtime.pipeline.runner import EndedExam

FLAGGED_EXAM = 0.5  # an exam whose guard flags at least this share of its frames counts as flagged
STEP_EXAMS = 5  # a display step is judged on the mean of a console's latest this many exams


@dataclass(frozen=True)
class ExamStatistics:
    """What drift reads of one ended exam."""

    flagged: bool
    indeterminate: bool
    pdff: float | None
    level: float | None = None  # the exam's median display level (before harmonisation)


@dataclass(frozen=True)
class Expected:
    """What the bundle's validation leads to expect of in-distribution exams (None: the bundle cannot say)."""

    guard_share: float | None
    indeterminate_share: float | None
    pdff: np.ndarray | None  # sorted cross-fitted PDFF estimates

    @classmethod
    def of(cls, meta: BundleMeta) -> Expected:
        """From the bundle: its acceptance's guard bound, its cross-fitted definite share and PDFF estimates."""
        exam = meta.exam
        guard = meta.acceptance.maximum.get("guard_share") if meta.acceptance else None
        definite = exam.definite if exam else None
        share = definite.cv_definite_share if definite is not None else None
        interval = exam.pdff_normalised if exam else None
        estimates = interval.cv_estimates if interval is not None else None
        return cls(guard, None if share is None else 1.0 - share, np.sort(estimates) if estimates else None)


def binomial_bound(expected: float, n: int, alpha: float) -> float:
    """The smallest share k/n with P(X >= k) < alpha when X ~ Binomial(n, expected): at or beyond it, an alarm.
    The tail falls as k grows, so k is found by bisection over the verdict's own binomial tail."""
    low, high = 1, n + 1  # P(X >= 0) = 1 is never below alpha; P(X >= n + 1) = 0 always is
    while low < high:
        middle = (low + high) // 2
        if binomial_tail(middle, n, expected) < alpha:
            high = middle
        else:
            low = middle + 1
    return low / n


def ks_distance(sample: np.ndarray, reference: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical distributions."""
    grid = np.sort(np.r_[sample, reference])
    cdf = lambda x: np.searchsorted(np.sort(x), grid, side="right") / len(x)  # noqa: E731
    return float(np.max(np.abs(cdf(sample) - cdf(reference))))


def ks_bound(n: int, m: int, alpha: float) -> float:
    """The KS distance beyond which two samples of n and m differ at level alpha (the asymptotic critical value)."""
    return math.sqrt(-0.5 * math.log(alpha / 2)) * math.sqrt((n + m) / (n * m))


def level_shift(levels: np.ndarray, baseline: np.ndarray, recent: int = STEP_EXAMS) -> float | None:
    """How far the latest ``recent`` exams' mean display level lies from the baseline's mean, in standard errors of
    that difference (the baseline's spread stands for both); None until there are ``recent`` exams."""
    if len(levels) < recent:
        return None
    spread = max(float(baseline.std(ddof=1)), 1.0)
    return float((levels[-recent:].mean() - baseline.mean()) / (spread * math.sqrt(1 / recent + 1 / len(baseline))))


def shift_bound(alpha: float, baseline: int) -> float:
    """The |t| beyond which a shift is named, two-sided at ``alpha``: Student's t with the baseline's degrees of
    freedom (its spread is estimated), by the Cornish-Fisher expansion of the normal quantile (within 1 % of the
    exact value from 10 degrees of freedom on)."""
    z, df = NormalDist().inv_cdf(1 - alpha / 2), baseline - 1
    terms = ((z**3 + z) / 4, (5 * z**5 + 16 * z**3 + 3 * z) / 96, (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384)
    return z + sum(term / df ** (k + 1) for k, term in enumerate(terms))


class DriftMonitor:
    """The sink: each ended exam joins its scanner's window; the alarms are re-judged and published whole."""

    name = "drift"

    def __init__(self, settings: DriftSettings, expected: Callable[[], Expected], log: ThrottledLog):
        """Args:
        settings: [runtime.drift].
        expected: what the served bundle expects (read at each exam: a model update brings its own).
        log: the throttled log an alarm is said in.
        """
        self.settings, self.expected, self.log = settings, expected, log
        self.windows: dict[str, deque[ExamStatistics]] = {}
        self.baselines: dict[str, list[float]] = {}  # scanner -> display levels of its first window_exams exams
        self.alarms: tuple[DriftAlarm, ...] = ()  # replaced whole: the heartbeat reads it from another thread
        self._since: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def on_result(self, result, frame) -> None:
        """Results are not what drift reads; the ended exam is."""

    def on_exam_final(self, ended: EndedExam) -> None:
        record = ended.record
        if record.scanner is None or not record.frames or not record.frames.filed:
            return  # an exam that filed no frame says nothing about its scanner
        stats = ExamStatistics(
            flagged=record.frames.flagged >= FLAGGED_EXAM * record.frames.filed,
            indeterminate=record.exam.call not in ("fatty", "normal"),
            pdff=record.exam.pdff,
            level=record.frames.display_level,
        )
        with self._lock:
            window = self.windows.setdefault(record.scanner, deque(maxlen=self.settings.window_exams))
            window.append(stats)
            baseline = self.baselines.setdefault(record.scanner, [])
            if stats.level is not None and len(baseline) < self.settings.window_exams:
                baseline.append(stats.level)
            self.alarms = tuple(self._judge(self.expected()))

    def _judge(self, expected: Expected) -> list[DriftAlarm]:
        alarms, now = [], time.time()
        for scanner, window in self.windows.items():
            if len(window) < self.settings.min_exams:
                continue
            found = [*self._statistics(window, expected), *self._display(window, self.baselines.get(scanner, []))]
            for statistic, value, bound, typical in found:
                key = (scanner, statistic)
                if value < bound:
                    self._since.pop(key, None)
                    continue
                if key not in self._since:
                    self._since[key] = now
                    self.log.once(f"drift:{scanner}:{statistic}", f"{scanner}: {statistic} {value:.2f} beyond "
                                  f"{bound:.2f} over {len(window)} exams", "drift alarm")  # fmt: skip
                alarms.append(DriftAlarm(scanner=scanner, statistic=statistic, value=round(value, 4),
                                         bound=round(bound, 4), expected=round(typical, 4), exams=len(window),
                                         since=self._since[key]))  # fmt: skip
        return alarms

    def _display(self, window: deque[ExamStatistics], baseline: list[float]):
        """The display level against the scanner's go-live baseline, once the baseline is complete: the window's
        distribution (KS, for a drift), and the latest exams beyond the baseline's extremes (a step)."""
        levels = np.array([s.level for s in window if s.level is not None])
        if len(baseline) < self.settings.window_exams or not len(levels):
            return
        reference, alpha = np.array(baseline), self.settings.alpha
        typical = float(np.median(reference))
        shift = level_shift(levels, reference)
        if shift is not None:
            yield "display_step", abs(shift), shift_bound(alpha, len(reference)), typical
        if len(levels) >= self.settings.min_exams:
            yield "display_level", ks_distance(levels, reference), ks_bound(len(levels), len(reference), alpha), typical

    def _statistics(self, window: deque[ExamStatistics], expected: Expected):
        """(statistic, value, bound, expected) for each statistic the bundle gives an expectation for."""
        n, alpha = len(window), self.settings.alpha
        if expected.guard_share is not None:
            share = float(np.mean([s.flagged for s in window]))
            yield "guard_share", share, binomial_bound(expected.guard_share, n, alpha), expected.guard_share
        if expected.indeterminate_share is not None:
            share = float(np.mean([s.indeterminate for s in window]))
            bound = binomial_bound(expected.indeterminate_share, n, alpha)
            yield "indeterminate_share", share, bound, expected.indeterminate_share
        estimates = np.array([s.pdff for s in window if s.pdff is not None])
        if expected.pdff is not None and len(estimates) >= self.settings.min_exams:
            bound = ks_bound(len(estimates), len(expected.pdff), alpha)
            yield "pdff_distribution", ks_distance(estimates, expected.pdff), bound, 0.0
