"""Drift without labels: a scanner's recent exams against what the bundle's validation expects. The bounds are the
exact binomial and Kolmogorov-Smirnov ones (checked against SciPy); on exams drawn from the expected rates the
monitor stays quiet for hundreds of exams, and a scanner whose exams turn out flagged, indeterminate or shifted in
PDFF is named with the statistic within a few exams. The live box with a drifted console: benchmarks drift."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from edge_runtime.box.stats import ThrottledLog
from edge_runtime.config import DriftSettings
from edge_runtime.contracts import ExamEstimate, ExamRecord, FrameTally, ModelInfo
from edge_runtime.pipeline.runner import EndedExam
from edge_runtime.validation.drift import (
    STEP_EXAMS,
    DriftMonitor,
    Expected,
    binomial_bound,
    ks_bound,
    ks_distance,
    level_shift,
    shift_bound,
)

MODEL = ModelInfo(name="m", version="0.1.0", sha="0" * 16)


def _exam(
    scanner: str, flagged: bool, definite: bool, pdff: float, filed: int = 10, level: float | None = None
) -> EndedExam:
    estimate = ExamEstimate(call="fatty" if definite else "indeterminate", calibrated=True, pdff=pdff, n_pairs=6)
    tally = FrameTally(filed=filed, flagged=round(0.9 * filed) if flagged else 0, display_level=level)
    return EndedExam(ExamRecord(session="s", ended=0.0, why="ttl", exam=estimate, model=MODEL, scanner=scanner,
                                frames=tally))  # fmt: skip


def _expected(rng: np.random.Generator) -> Expected:
    return Expected(guard_share=0.05, indeterminate_share=0.5, pdff=np.sort(rng.lognormal(1.6, 0.6, 90)))


def test_the_bounds_are_the_exact_tails() -> None:
    for expected, n in ((0.05, 20), (0.5, 20), (0.3, 12)):
        bound = binomial_bound(expected, n, 0.001)
        k = round(bound * n)
        assert stats.binom.sf(k - 1, n, expected) < 0.001 <= stats.binom.sf(k - 2, n, expected)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=20), rng.normal(0.5, 1, size=90)
    assert ks_distance(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic)
    assert ks_bound(20, 90, 0.001) == pytest.approx(1.949 * np.sqrt(110 / 1800), rel=1e-3)
    for baseline in (11, 20, 60):
        assert shift_bound(0.001, baseline) == pytest.approx(stats.t.ppf(1 - 0.0005, baseline - 1), rel=0.01)
    base = rng.normal(100, 10, 20)
    z = level_shift(np.r_[base, [130.0] * 5], base)
    assert z == pytest.approx((130 - base.mean()) / (base.std(ddof=1) * np.sqrt(1 / 5 + 1 / 20)))


def test_in_distribution_exams_raise_no_alarm_and_a_drifted_scanner_is_named_within_a_few_exams() -> None:
    rng = np.random.default_rng(3)
    expected = _expected(rng)
    monitor = DriftMonitor(DriftSettings(), lambda: expected, ThrottledLog(60))
    for _ in range(300):  # two consoles at the validated rates
        for scanner in ("console-a", "console-b"):
            pdff = float(rng.choice(expected.pdff))
            monitor.on_exam_final(_exam(scanner, rng.random() < 0.05, rng.random() < 0.5, pdff))
            assert monitor.alarms == ()
    shifted = 0
    while not monitor.alarms and shifted < 15:  # console-b's gain drifts: the guard flags it, its estimates rise
        shifted += 1
        monitor.on_exam_final(_exam("console-b", True, rng.random() < 0.5, float(rng.choice(expected.pdff)) + 8))
        pdff = float(rng.choice(expected.pdff))
        monitor.on_exam_final(_exam("console-a", rng.random() < 0.05, rng.random() < 0.5, pdff))
    assert shifted <= 6, shifted
    assert {(a.scanner, a.statistic) for a in monitor.alarms} == {("console-b", "guard_share")}
    alarm = monitor.alarms[0]
    assert alarm.value >= alarm.bound and alarm.expected == 0.05 and alarm.exams == 20


def test_a_scanner_is_judged_only_once_it_has_enough_exams_and_an_exam_without_frames_says_nothing() -> None:
    rng = np.random.default_rng(4)
    monitor = DriftMonitor(DriftSettings(min_exams=10), lambda: _expected(rng), ThrottledLog(60))
    for _ in range(9):
        monitor.on_exam_final(_exam("new-console", True, False, 40.0))
    assert monitor.alarms == ()
    monitor.on_exam_final(_exam("new-console", True, False, 40.0, filed=0))
    assert monitor.alarms == () and len(monitor.windows["new-console"]) == 9
    monitor.on_exam_final(_exam("new-console", True, False, 40.0))
    assert {a.statistic for a in monitor.alarms} == {"guard_share", "indeterminate_share", "pdff_distribution"}


def test_a_gain_shift_the_answers_cannot_see_is_named_by_the_display_level() -> None:
    """Harmonisation divides gain away, so the guard, the calls and the PDFF stay put; the display level, read
    before harmonisation and judged against the console's own go-live baseline, moves."""
    rng = np.random.default_rng(5)
    expected = _expected(rng)
    monitor = DriftMonitor(DriftSettings(), lambda: expected, ThrottledLog(60))

    def exam(scanner: str, level: float) -> EndedExam:
        return _exam(scanner, rng.random() < 0.05, rng.random() < 0.5, float(rng.choice(expected.pdff)), level=level)

    for _ in range(200):  # go-live and beyond: each console at its own usual brightness
        monitor.on_exam_final(exam("console-a", rng.normal(70, 6)))
        monitor.on_exam_final(exam("console-b", rng.normal(110, 8)))
        assert monitor.alarms == ()
    shifted = 0
    while not monitor.alarms and shifted < 20:  # console-a's gain up by about 12 dB on a log-compressed display
        shifted += 1
        monitor.on_exam_final(exam("console-a", rng.normal(70, 6) * 1.6))
    assert shifted <= STEP_EXAMS, shifted  # a step shows in the mean of the latest five exams
    alarm = monitor.alarms[0]
    assert (alarm.scanner, alarm.statistic) == ("console-a", "display_step") and 60 < alarm.expected < 80
    while shifted < 20:  # the step stays: the window's distribution follows it (KS)
        shifted += 1
        monitor.on_exam_final(exam("console-a", rng.normal(70, 6) * 1.6))
    assert {a.statistic for a in monitor.alarms} == {"display_step", "display_level"}
    monitor.on_exam_final(_exam("console-c", False, True, 8.0))  # no level recorded: judged on the rest only
    assert {a.scanner for a in monitor.alarms} == {"console-a"}
