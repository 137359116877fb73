"""The exam-level answer: stable under noisy pairs, honest near the line, coherent with PDFF, calibrated."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.config import ExamPolicy
from edge_runtime.contracts import ExamEstimate, PlattCalibrator
from edge_runtime.exam import ExamModel, ExamTracker, calibrated_logit, count_flips, sigmoid
from trainer.config import TrainConfig
from trainer.exam_calibration import conformal_halfwidth, expected_calibration_error, measure

UNCALIBRATED = ExamModel(threshold=0.5, pdff_halfwidth=0.3)


def _stream(tracker: ExamTracker, logits: np.ndarray, pdffs: np.ndarray) -> list[ExamEstimate]:
    return [
        tracker.add(float(t), float(sigmoid(z)), float(f)) for t, (z, f) in enumerate(zip(logits, pdffs, strict=True))
    ]


def test_a_clear_exam_settles_once_and_never_flips_while_its_pairs_do() -> None:
    rng = np.random.default_rng(0)
    logits = 1.2 + 1.5 * rng.standard_normal(120)  # per-pair p_fatty crosses 0.5 about a fifth of the time
    estimates = _stream(ExamTracker(ExamPolicy(), UNCALIBRATED), logits, 9 + rng.standard_normal(120))
    per_pair_flips = count_flips(list(logits >= 0))
    assert per_pair_flips > 20
    calls = [e.call for e in estimates]
    assert calls[:4] == [None] * 4 and estimates[0].reason.startswith("collecting")
    assert count_flips(calls) == 0 and calls[-1] == "fatty"
    first = next(e for e in estimates if e.call is not None)
    assert all(e.stable_since == first.stable_since for e in estimates if e.call is not None)
    lo, hi = estimates[-1].p_fatty_interval
    assert lo <= estimates[-1].p_fatty <= hi and lo >= 0.5
    assert not estimates[-1].calibrated


def test_an_exam_on_the_line_is_indeterminate_and_says_why() -> None:
    rng = np.random.default_rng(1)
    estimates = _stream(ExamTracker(ExamPolicy(), UNCALIBRATED), 0.05 * rng.standard_normal(60), np.full(60, 5.0))
    assert estimates[-1].call == "indeterminate"
    assert "straddles" in estimates[-1].reason


def test_a_call_contradicted_by_pdff_beyond_its_interval_is_not_shown_as_fatty() -> None:
    """p_fatty says fatty with confidence while every pair's PDFF is 1 %: the rule makes it indeterminate."""
    tracker = ExamTracker(ExamPolicy(min_pairs=3, hold_updates=2), ExamModel(0.5, pdff_halfwidth=0.2))
    estimates = _stream(tracker, np.full(10, 3.0), np.full(10, 1.0))
    assert estimates[-1].call == "indeterminate" and "discordant" in estimates[-1].reason


def test_a_normal_call_with_a_fatty_pdff_is_flagged_discordant() -> None:
    """Within the PDFF uncertainty the call stands, but a fatty PDFF under a normal call is never silent."""
    tracker = ExamTracker(ExamPolicy(min_pairs=3, hold_updates=2), ExamModel(0.5, pdff_halfwidth=0.4))
    estimates = _stream(tracker, np.full(10, -3.0), np.full(10, 6.0))
    assert estimates[-1].call == "normal" and estimates[-1].discordant
    agreeing = _stream(
        ExamTracker(ExamPolicy(min_pairs=3, hold_updates=2), UNCALIBRATED), np.full(10, -3.0), np.ones(10)
    )
    assert agreeing[-1].call == "normal" and not agreeing[-1].discordant


def test_a_session_with_one_view_has_no_call_and_a_reason() -> None:
    tracker = ExamTracker(ExamPolicy(), UNCALIBRATED)
    tracker.saw("liver")
    status = tracker.status()
    assert status.call is None and status.n_pairs == 0 and "kidney_liver" in status.reason
    assert status.views_seen == ["liver"]


def test_hysteresis_needs_hold_updates_consecutive_candidates_to_change_the_call() -> None:
    policy = ExamPolicy(window_pairs=3, min_pairs=3, hold_updates=4, trim=0.0)
    tracker = ExamTracker(policy, UNCALIBRATED)
    estimates = _stream(tracker, np.r_[np.full(10, 3.0), np.full(10, -3.0)], np.r_[np.full(10, 9.0), np.ones(10)])
    calls = [e.call for e in estimates]
    assert calls[9] == "fatty"
    # The window is all-normal from pair 12 on; the call must hold fatty (or indeterminate) for 4 more updates.
    first_normal = calls.index("normal")
    assert first_normal >= 12 + policy.hold_updates - 1 and estimates[-1].call == "normal"


def test_the_calibrator_is_applied_with_both_outputs() -> None:
    platt = PlattCalibrator(inputs=["logit_p_fatty", "pdff"], coef=[0.5, 0.4], intercept=-2.0, subjects=10)
    z = calibrated_logit(platt, np.array([0.5, 0.9]), np.array([5.0, 10.0]))
    assert np.allclose(z, [0.0, 0.5 * np.log(9) + 4.0 - 2.0])


def _oof_rows(n: int, seed: int) -> list[dict]:
    """Out-of-fold predictions of an overconfident model: p_fatty too extreme, PDFF with multiplicative error."""
    rng = np.random.default_rng(seed)
    pdff = rng.gamma(2.0, 3.0, n)
    pdff_pred = pdff * np.exp(0.25 * rng.standard_normal(n))
    p = sigmoid(3.0 * (np.log(pdff_pred) - np.log(5.0)) / 0.25)
    return [
        {"subject_id": f"S{i}", "fold": i % 5, "pdff": pdff[i], "p_fatty": p[i], "pdff_pred": pdff_pred[i]}
        for i in range(n)
    ]


def test_calibration_lowers_ece_and_the_pdff_interval_covers_about_ninety_percent() -> None:
    calibration, figures = measure(_oof_rows(600, 2), TrainConfig(task="both"))
    platt = calibration.p_fatty
    assert platt is not None and platt.inputs == ["logit_p_fatty", "pdff"]
    assert platt.ece_after < platt.ece_before and platt.ece_after <= 0.05
    assert 0.85 <= calibration.pdff_interval.cv_coverage <= 0.95
    assert set(calibration.discordance) == {
        "raw_call_vs_pdff",
        "calibrated_call_vs_pdff",
        "calibrated_call_vs_pdff_interval",
    }
    assert figures["accuracy"]["calibrated_p_fatty"] >= figures["accuracy"]["raw_p_fatty"] - 0.02


def test_ece_is_zero_for_exact_frequencies_and_large_for_confident_mistakes() -> None:
    y = np.array([0, 1] * 50, dtype=float)
    assert expected_calibration_error(y, np.full(100, 0.5)) == pytest.approx(0.0)
    assert expected_calibration_error(y, 1 - y) == pytest.approx(1.0)


def test_conformal_halfwidth_is_the_finite_sample_quantile() -> None:
    truth = np.zeros(9)
    predicted = np.expm1(np.arange(1, 10) / 10)  # residuals 0.1 .. 0.9 in log1p space
    assert conformal_halfwidth(truth, predicted, 0.8) == pytest.approx(0.8)  # ceil(10 * 0.8) = 8th smallest


def test_at_fifteen_pairs_a_second_a_new_call_still_waits_hold_s() -> None:
    """In a busy exam five updates take a third of a second; the call must also hold for hold_s of frame time."""
    policy = ExamPolicy(min_pairs=3, hold_updates=5, hold_s=2.0, window_pairs=3, trim=0.0)
    tracker = ExamTracker(policy, UNCALIBRATED)
    rate, estimates = 15.0, []
    for i in range(60):
        estimates.append(tracker.add(i / rate, float(sigmoid(3.0)), 9.0))
    first = next(i for i, e in enumerate(estimates) if e.call is not None)
    assert estimates[first].call == "fatty"
    assert (first - (policy.min_pairs - 1)) / rate >= policy.hold_s  # not after 5 updates (0.33 s)
