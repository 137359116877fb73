"""The exam-level answer: definite only when the model's own error allows it, indeterminate with the reason when it
does not, stable under noisy pairs, coherent with PDFF, with intervals that follow the patient."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_runtime.config import ExamPolicy
from edge_runtime.contracts import ClassSets, ExamCalibration, ExamEstimate, PlattCalibrator
from edge_runtime.model.uncertainty import Members, class_set, combine_members, conformal_quantile, logit, sigmoid
from edge_runtime.pipeline.exam import CANNOT_TELL, ExamModel, ExamTracker, calibrated_logit, count_flips
from trainer.config import TrainConfig
from trainer.model_error import conformal_halfwidth, expected_calibration_error, measure

SURE = ExamModel(threshold=0.5, class_threshold=0.1, coverage=0.95, pdff_halfwidth=0.3, pdff_coverage=0.9)


def _pair(p: float, pdff: float, spread: float = 0.0) -> Members:
    return Members(float(logit(p)), math.log1p(pdff), 0.0, spread)


def _stream(tracker: ExamTracker, logits: np.ndarray, pdffs: np.ndarray, spread: float = 0.0) -> list[ExamEstimate]:
    pairs = zip(logits, pdffs, strict=True)
    return [tracker.add(float(t), _pair(float(sigmoid(z)), float(f), spread)) for t, (z, f) in enumerate(pairs)]


def test_a_clear_exam_settles_once_and_never_flips_while_its_pairs_do() -> None:
    rng = np.random.default_rng(0)
    logits = 3.5 + 2.5 * rng.standard_normal(120)  # per-pair p_fatty crosses 0.5 now and then
    estimates = _stream(ExamTracker(ExamPolicy(), SURE), logits, 9 + rng.standard_normal(120))
    assert count_flips(list(logits >= 0)) > 2
    calls = [e.call for e in estimates]
    assert calls[:4] == [None] * 4 and estimates[0].reason.startswith("collecting")
    assert count_flips(calls) == 0 and calls[-1] == "fatty"
    first = next(e for e in estimates if e.call is not None)
    assert all(e.stable_since == first.stable_since for e in estimates if e.call is not None)
    assert estimates[-1].class_set == ["fatty"] and estimates[-1].coverage == 0.95
    assert estimates[-1].p_fatty_interval is None  # frame agreement is not the model's certainty


def test_pairs_that_agree_perfectly_do_not_earn_a_call_the_model_cannot_make() -> None:
    """p_fatty 0.8 on every pair: no frame noise at all, but at 95 % the model's own error leaves both classes
    possible, so the exam is indeterminate and says the model cannot tell."""
    estimates = _stream(ExamTracker(ExamPolicy(), SURE), np.full(30, float(logit(0.8))), np.full(30, 7.0))
    last = estimates[-1]
    assert last.call == "indeterminate" and last.reason.startswith(f"{CANNOT_TELL} at 95 %")
    assert "p_fatty 0.80" in last.reason and "0.90 (fatty)" in last.reason
    assert last.class_set == []  # at this coverage neither class alone is certain enough: no definite call


def test_a_bundle_without_class_sets_never_gives_a_definite_call() -> None:
    unsure = ExamModel(threshold=0.5, pdff_halfwidth=0.3)
    estimates = _stream(ExamTracker(ExamPolicy(), unsure), np.full(20, 6.0), np.full(20, 20.0))
    assert estimates[-1].call == "indeterminate" and "states no class sets" in estimates[-1].reason


def test_a_call_contradicted_by_pdff_beyond_its_interval_is_not_shown_as_fatty() -> None:
    """p_fatty says fatty with confidence while every pair's PDFF is 1 %: the rule makes it indeterminate."""
    model = ExamModel(0.5, class_threshold=0.1, coverage=0.95, pdff_halfwidth=0.2)
    estimates = _stream(ExamTracker(ExamPolicy(min_pairs=3, hold_updates=2), model), np.full(10, 4.0), np.ones(10))
    assert estimates[-1].call == "indeterminate" and "discordant" in estimates[-1].reason


def test_a_normal_call_with_a_fatty_pdff_is_flagged_discordant() -> None:
    """Within the PDFF uncertainty the call stands, but a fatty PDFF under a normal call is never silent."""
    model = ExamModel(0.5, class_threshold=0.1, coverage=0.95, pdff_halfwidth=0.4)
    policy = ExamPolicy(min_pairs=3, hold_updates=2)
    estimates = _stream(ExamTracker(policy, model), np.full(10, -4.0), np.full(10, 6.0))
    assert estimates[-1].call == "normal" and estimates[-1].discordant
    agreeing = _stream(ExamTracker(policy, SURE), np.full(10, -4.0), np.ones(10))
    assert agreeing[-1].call == "normal" and not agreeing[-1].discordant


def test_the_pdff_interval_is_wider_where_the_ensemble_disagrees() -> None:
    """Normalised conformal: half-width = multiplier x (spread + floor) in log(1 + PDFF), around the recalibrated
    estimate; the exam's own pairs add in quadrature only when they disagree."""
    model = ExamModel(0.5, class_threshold=0.1, coverage=0.95, spread_multiplier=2.0, spread_floor=0.05,
                      recalibration=(0.1, 1.0), pdff_coverage=0.9)  # fmt: skip
    widths = {}
    for spread in (0.0, 0.2):
        last = _stream(ExamTracker(ExamPolicy(), model), np.full(20, 4.0), np.full(20, 9.0), spread)[-1]
        lo, hi = last.pdff_interval
        assert last.pdff == pytest.approx(math.expm1(math.log1p(9.0) + 0.1), abs=0.01)
        half = 2 * (spread + 0.05)
        centre = math.log1p(9) + 0.1
        assert (lo, hi) == pytest.approx((math.expm1(centre - half), math.expm1(centre + half)), abs=0.01)
        widths[spread] = hi - lo
    assert widths[0.2] > 4 * widths[0.0] and last.pdff_coverage == 0.9


def test_a_session_with_one_view_has_no_call_and_a_reason() -> None:
    tracker = ExamTracker(ExamPolicy(), SURE)
    tracker.saw("liver")
    status = tracker.status()
    assert status.call is None and status.n_pairs == 0 and "kidney_liver" in status.reason
    assert status.views_seen == ["liver"]


def test_hysteresis_needs_hold_updates_consecutive_candidates_to_change_the_call() -> None:
    policy = ExamPolicy(window_pairs=3, min_pairs=3, hold_updates=4, trim=0.0)
    tracker = ExamTracker(policy, SURE)
    estimates = _stream(tracker, np.r_[np.full(10, 4.0), np.full(10, -4.0)], np.r_[np.full(10, 9.0), np.ones(10)])
    calls = [e.call for e in estimates]
    assert calls[9] == "fatty"
    first_normal = calls.index("normal")  # the window is all-normal from pair 12 on
    assert first_normal >= 12 + policy.hold_updates - 1 and estimates[-1].call == "normal"


def test_at_fifteen_pairs_a_second_a_new_call_still_waits_hold_s() -> None:
    """In a busy exam five updates take a third of a second; the call must also hold for hold_s of frame time."""
    policy = ExamPolicy(min_pairs=3, hold_updates=5, hold_s=2.0, window_pairs=3, trim=0.0)
    tracker = ExamTracker(policy, SURE)
    rate, estimates = 15.0, []
    for i in range(60):
        estimates.append(tracker.add(i / rate, _pair(float(sigmoid(4.0)), 9.0)))
    first = next(i for i, e in enumerate(estimates) if e.call is not None)
    assert estimates[first].call == "fatty"
    assert (first - (policy.min_pairs - 1)) / rate >= policy.hold_s  # not after 5 updates (0.33 s)


def test_the_site_can_ask_for_another_coverage_from_the_bundles_own_scores() -> None:
    scores = list(np.linspace(0.0, 0.6, 99))
    sets = ClassSets(coverage=0.9, threshold=conformal_quantile(scores, 0.9), scores=scores, method="test")
    calibration = ExamCalibration(class_sets=sets)
    declared = ExamModel.from_bundle(calibration, 0.5, ExamPolicy())
    stricter = ExamModel.from_bundle(calibration, 0.5, ExamPolicy(coverage=0.98))
    assert declared.coverage == 0.9 and declared.class_threshold == pytest.approx(0.6 * 89 / 98)
    assert stricter.coverage == 0.98 and stricter.class_threshold == pytest.approx(0.6 * 97 / 98)
    assert class_set(0.7, declared.class_threshold) == ["fatty"]
    assert class_set(0.42, declared.class_threshold) == ["normal"]  # 1 - 0.42 is beyond the 90 % threshold
    assert class_set(0.42, stricter.class_threshold) == ["fatty", "normal"]  # at 98 % fatty stays possible too


def test_the_ensemble_is_the_mean_of_logits_and_of_log_pdff() -> None:
    members = combine_members([0.5, 0.9], [3.0, 15.0])
    assert members.p_fatty == pytest.approx(float(sigmoid(np.log(9) / 2)))
    assert members.pdff == pytest.approx(math.expm1((math.log1p(3) + math.log1p(15)) / 2))
    assert members.log_pdff_spread == pytest.approx(np.std([math.log1p(3), math.log1p(15)], ddof=1))
    single = combine_members([0.3], [-2.0])  # one head: no spread; a PDFF never goes below 0
    assert single.logit_spread == 0.0 and single.pdff == 0.0


def test_the_calibrator_is_applied_with_both_outputs() -> None:
    platt = PlattCalibrator(inputs=["logit_p_fatty", "pdff"], coef=[0.5, 0.4], intercept=-2.0, subjects=10)
    z = calibrated_logit(platt, np.array([0.5, 0.9]), np.array([5.0, 10.0]))
    assert np.allclose(z, [0.0, 0.5 * np.log(9) + 4.0 - 2.0])


def _oof_rows(n: int, seed: int) -> list[dict]:
    """Out-of-fold predictions of an overconfident ensemble: p_fatty too extreme, PDFF with a multiplicative error
    whose size the ensemble's spread tracks (some subjects are harder than others)."""
    rng = np.random.default_rng(seed)
    pdff = rng.gamma(2.0, 3.0, n)
    hardness = rng.choice([0.1, 0.4], n)
    pdff_pred = pdff * np.exp(hardness * rng.standard_normal(n))
    p = sigmoid(3.0 * (np.log(pdff_pred) - np.log(5.0)) / 0.25)
    spread = hardness * np.exp(0.2 * rng.standard_normal(n))
    vendors = ["PHILIPS", "GE"]
    return [
        {
            "subject_id": f"S{i}",
            "fold": i % 5,
            "vendor": vendors[i % 2],
            "pdff": pdff[i],
            "p_fatty": p[i],
            "pdff_pred": pdff_pred[i],
            "p_fatty_ensemble": p[i],
            "pdff_ensemble": pdff_pred[i],
            "log_pdff_spread": spread[i],
        }
        for i in range(n)
    ]


def test_calibration_lowers_ece_and_every_statement_covers_what_it_declares_cross_fitted() -> None:
    calibration, figures = measure(_oof_rows(800, 2), TrainConfig(task="both", class_coverage=0.9))
    platt = calibration.p_fatty
    assert platt is not None and platt.inputs == ["logit_p_fatty", "pdff"]
    assert platt.ece_after < platt.ece_before and platt.ece_after <= 0.05
    sets = calibration.class_sets
    assert abs(sets.cv.overall - 0.9) <= 0.03 and set(sets.cv.by_vendor) == {"PHILIPS", "GE"}
    assert all(abs(v - 0.9) <= 0.05 for v in sets.cv.by_vendor.values())
    assert 0 < sets.cv_definite_share < 1 and sets.cv_definite_accuracy > 0.9
    normalised = calibration.pdff_normalised
    assert abs(normalised.cv.overall - 0.9) <= 0.03 and set(normalised.cv.by_band) <= {"<5", "5-10", "10-15", ">=15"}
    assert 0.85 <= calibration.pdff_interval.cv_coverage <= 0.95  # the constant interval is still there
    assert figures["risk_coverage"][0][1] == 1.0 and len(figures["risk_coverage"]) == 800


def test_recalibrating_a_base_calibrator_moves_its_operating_point_without_reordering_subjects() -> None:
    """A site's dozen subjects refit the parent's slope and intercept; a fresh fit on both outputs may reorder."""
    config = TrainConfig(task="both", class_coverage=0.9)
    parent, _ = measure(_oof_rows(400, 3), config)
    site = _oof_rows(12, 4)
    for row in site:  # the site's scale: every PDFF estimate 60 % too low, p_fatty with it
        row["pdff_ensemble"] = row["pdff_pred"] = row["pdff_pred"] * 0.4
    recalibrated, _ = measure(site, config, base=parent.p_fatty)
    fresh, _ = measure(site, config)
    rng = np.random.default_rng(5)  # answers whose two outputs disagree, where the calibrators' weights matter
    p, pdff = rng.uniform(0.01, 0.99, 300), rng.gamma(2.0, 3.0, 300)
    before = calibrated_logit(parent.p_fatty, p, pdff)
    after = calibrated_logit(recalibrated.p_fatty, p, pdff)
    assert recalibrated.p_fatty.inputs == parent.p_fatty.inputs
    assert np.all(np.diff(after[np.argsort(before)]) >= -1e-9)  # the parent's order, kept
    assert not np.allclose(after, before)  # and a new operating point
    assert np.any(np.diff(calibrated_logit(fresh.p_fatty, p, pdff)[np.argsort(before)]) < -1e-6)


def test_ece_is_zero_for_exact_frequencies_and_large_for_confident_mistakes() -> None:
    y = np.array([0, 1] * 50, dtype=float)
    assert expected_calibration_error(y, np.full(100, 0.5)) == pytest.approx(0.0)
    assert expected_calibration_error(y, 1 - y) == pytest.approx(1.0)


def test_conformal_quantiles_are_the_finite_sample_ones() -> None:
    truth = np.zeros(9)
    predicted = np.expm1(np.arange(1, 10) / 10)  # residuals 0.1 .. 0.9 in log1p space
    assert conformal_halfwidth(truth, predicted, 0.8) == pytest.approx(0.8)  # ceil(10 * 0.8) = 8th smallest
    assert conformal_quantile(np.arange(1, 10) / 10, 0.8) == pytest.approx(0.8)
    assert conformal_quantile([0.1, 0.2], 0.9) == math.inf  # two scores cannot promise 90 %
