"""The exam-level answer: definite only when the model's own error allows it, indeterminate with the reason when it
does not, stable under noisy pairs, coherent with PDFF, with intervals that follow the patient."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_runtime.config import ExamPolicy
from edge_runtime.contracts import CertifiedCalls, ExamCalibration, ExamEstimate, NoCall, PlattCalibrator
from edge_runtime.model.uncertainty import (
    Members,
    certified_thresholds,
    combine_members,
    conformal_quantile,
    fewest_calls,
    logit,
    sigmoid,
)
from edge_runtime.pipeline.exam import CANNOT_TELL, Definite, ExamModel, ExamTracker, calibrated_logit, count_flips
from trainer.config import TrainConfig
from trainer.conformal import band_scores
from trainer.model_error import conformal_halfwidth, expected_calibration_error, measure

CERTIFIED = Definite(fatty_threshold=0.9, normal_threshold=0.1, error=0.05, subjects=90)
SURE = ExamModel(threshold=0.5, pdff_halfwidth=0.3, pdff_coverage=0.9, definite=CERTIFIED)


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
    assert estimates[-1].class_set == ["fatty"] and estimates[-1].definite_error == 0.05
    assert estimates[-1].definite_subjects == 90
    assert estimates[-1].p_fatty_interval is None  # frame agreement is not the model's certainty


def test_pairs_that_agree_perfectly_do_not_earn_a_call_the_model_cannot_make() -> None:
    """p_fatty 0.8 on every pair: no frame noise at all, but below the certified threshold the model's own error
    allows more than 5 % wrong fatty calls, so the exam is indeterminate and says the model cannot tell."""
    estimates = _stream(ExamTracker(ExamPolicy(), SURE), np.full(30, float(logit(0.8))), np.full(30, 7.0))
    last = estimates[-1]
    assert last.call == "indeterminate" and last.reason.startswith(f"{CANNOT_TELL} at 5 % error")
    assert "p_fatty 0.80" in last.reason and "0.90 (fatty)" in last.reason and last.why == NoCall.CANNOT_TELL
    assert last.class_set == ["fatty", "normal"]


def test_a_bundle_without_certified_calls_never_gives_a_definite_call() -> None:
    unsure = ExamModel(threshold=0.5, pdff_halfwidth=0.3)
    estimates = _stream(ExamTracker(ExamPolicy(), unsure), np.full(20, 6.0), np.full(20, 20.0))
    assert estimates[-1].call == "indeterminate" and "certifies no definite calls" in estimates[-1].reason


def test_a_bundle_too_small_to_certify_says_so_on_every_call() -> None:
    """The sickest liver of a 40-subject bundle: p_fatty 0.999 on every pair, yet 20 fatty subjects cannot certify
    5 % wrong fatty calls, so the exam says why it will not call it."""
    small = ExamModel(0.5, pdff_halfwidth=0.3, definite=Definite(None, 0.02, 0.05, 40))
    fatty = _stream(ExamTracker(ExamPolicy(), small), np.full(20, 7.0), np.full(20, 25.0))[-1]
    assert fatty.call == "indeterminate" and fatty.why == NoCall.CANNOT_CERTIFY
    assert fatty.reason == "this bundle's 40 calibration subjects cannot certify definite fatty calls at 5 %"
    normal = _stream(ExamTracker(ExamPolicy(), small), np.full(20, -7.0), np.full(20, 1.0))[-1]
    assert normal.call == "normal"  # the normal side is certified
    neither = ExamModel(0.5, pdff_halfwidth=0.3, definite=Definite(None, None, 0.05, 12))
    none = _stream(ExamTracker(ExamPolicy(), neither), np.full(20, -7.0), np.full(20, 1.0))[-1]
    assert none.reason == "this bundle's 12 calibration subjects cannot certify definite calls at 5 %"


def test_a_call_contradicted_by_pdff_beyond_its_interval_is_not_shown_as_fatty() -> None:
    """p_fatty says fatty with confidence while every pair's PDFF is 1 %: the rule makes it indeterminate."""
    model = ExamModel(0.5, pdff_halfwidth=0.2, definite=CERTIFIED)
    estimates = _stream(ExamTracker(ExamPolicy(min_pairs=3, hold_updates=2), model), np.full(10, 4.0), np.ones(10))
    assert estimates[-1].call == "indeterminate" and "discordant" in estimates[-1].reason


def test_a_normal_call_with_a_fatty_pdff_is_flagged_discordant() -> None:
    """Within the PDFF uncertainty the call stands, but a fatty PDFF under a normal call is never silent."""
    model = ExamModel(0.5, pdff_halfwidth=0.4, definite=CERTIFIED)
    policy = ExamPolicy(min_pairs=3, hold_updates=2)
    estimates = _stream(ExamTracker(policy, model), np.full(10, -4.0), np.full(10, 6.0))
    assert estimates[-1].call == "normal" and estimates[-1].discordant
    agreeing = _stream(ExamTracker(policy, SURE), np.full(10, -4.0), np.ones(10))
    assert agreeing[-1].call == "normal" and not agreeing[-1].discordant


def test_the_pdff_interval_is_wider_where_the_ensemble_disagrees() -> None:
    """Normalised conformal: half-width = multiplier x (spread + floor) in log(1 + PDFF), around the recalibrated
    estimate; the exam's own pairs add in quadrature only when they disagree."""
    shape = {"spread_multiplier": 2.0, "spread_floor": 0.05, "recalibration": (0.1, 1.0), "pdff_coverage": 0.9}
    model = ExamModel(0.5, definite=CERTIFIED, **shape)
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


def test_the_site_can_ask_for_a_stricter_level_certified_from_the_bundles_own_evidence() -> None:
    rng = np.random.default_rng(1)
    fatty = rng.random(1000) < 0.5
    p = np.clip(np.where(fatty, rng.beta(8, 2, 1000), rng.beta(2, 8, 1000)), 0, 1)
    up, down = certified_thresholds(p, fatty, 0.05)
    evidence = sorted((float(a), bool(b)) for a, b in zip(p, fatty, strict=True))
    thresholds = {"fatty_threshold": up.threshold, "normal_threshold": down.threshold}
    certified = CertifiedCalls(method="t", error=0.05, subjects=1000, evidence=evidence, **thresholds)
    calibration = ExamCalibration(definite=certified)
    declared = ExamModel.from_bundle(calibration, 0.5, ExamPolicy()).definite
    stricter = ExamModel.from_bundle(calibration, 0.5, ExamPolicy(definite_error=0.01)).definite
    assert (declared.fatty_threshold, declared.normal_threshold) == (up.threshold, down.threshold)
    assert stricter.error == 0.01 and stricter.fatty_threshold > declared.fatty_threshold  # surer calls are fewer
    assert stricter.normal_threshold < declared.normal_threshold


def test_a_class_is_certified_only_where_its_plus_one_error_share_is_within_the_level() -> None:
    assert fewest_calls(0.05) == 19 and fewest_calls(0.1) == 9
    right = np.linspace(0.6, 1.0, 18)  # 18 fatty subjects above every normal: one short of 19
    p, fatty = np.r_[right, np.linspace(0, 0.4, 40)], np.r_[np.ones(18, bool), np.zeros(40, bool)]
    up, down = certified_thresholds(p, fatty, 0.05)
    assert up.threshold is None and down.threshold == pytest.approx(0.4) and down.calls == 40 and down.wrong == 0
    p[-1], fatty[-1] = 0.01, True  # a confidently wrong normal call: (1 + 1) / (40 + 1) = 4.9 % still certifies
    down = certified_thresholds(p, fatty, 0.05)[1]
    assert down.calls == 40 and down.wrong == 1
    p[-2], fatty[-2] = 0.02, True  # a second: (2 + 1) / 41 = 7.3 % no longer does, at any threshold
    assert certified_thresholds(p, fatty, 0.05)[1].threshold is None


def test_certified_calls_are_wrong_no_more_than_the_level_on_average() -> None:
    """Simulated runs of 90 subjects from a known population: the share of a large new cohort's definite calls that
    are wrong at the thresholds each run certifies, averaged over runs, is within the level."""
    rng = np.random.default_rng(7)

    def cohort(n: int) -> tuple[np.ndarray, np.ndarray]:
        fatty = rng.random(n) < 0.45
        return np.clip(sigmoid(np.where(fatty, 1.8, -1.8) + 1.3 * rng.standard_normal(n)), 0, 1), fatty

    population_p, population_fatty = cohort(200_000)
    wrong_shares = []
    for _ in range(300):
        up, down = certified_thresholds(*cohort(90), 0.05)
        sides = ((up.threshold, population_p >= (up.threshold or 2), ~population_fatty),)
        sides += ((down.threshold, population_p <= (down.threshold or -1), population_fatty),)
        wrong_shares += [wrong[called].mean() for threshold, called, wrong in sides if threshold is not None]
    assert len(wrong_shares) > 300 and np.mean(wrong_shares) <= 0.05


def test_interval_scale_per_band_merges_a_band_too_small_to_state_its_coverage() -> None:
    estimate = np.r_[np.full(30, 2.0), np.full(12, 7.0), np.full(9, 12.0), np.full(4, 20.0)]
    errors = np.r_[np.full(30, 0.5), np.full(12, 1.0), np.full(9, 1.5), np.full(4, 3.0)]
    bands = band_scores(estimate, errors, 0.9)
    assert bands["<5"] == [0.5] * 30 and bands["5-10"] == [1.0] * 12
    assert bands["10-15"] == bands[">=15"] and len(bands[">=15"]) == 13  # 4 severe estimates join the band below
    assert conformal_quantile(bands[">=15"], 0.9) == 3.0  # the severe tail sets the merged band's scale


def test_an_estimate_outside_zero_to_a_hundred_is_graded_with_the_nearest_band() -> None:
    """A recalibrated PDFF line can go below 0 % on a lean liver; its interval still needs a band."""
    from edge_runtime.model.uncertainty import pdff_band

    assert [pdff_band(v) for v in (-3.2, 0.0, 4.99, 5.0, 14.9, 15.0, 100.0, 130.0)] == [
        "<5",
        "<5",
        "<5",
        "5-10",
        "10-15",
        ">=15",
        ">=15",
        ">=15",
    ]
    with pytest.raises(ValueError, match="NaN"):
        pdff_band(float("nan"))


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
    definite = calibration.definite
    assert definite.subjects == 800 and definite.fatty_threshold is not None and definite.normal_threshold is not None
    assert definite.cv_error["all"] <= definite.error, definite.cv_error  # its own claim, cross-fitted
    assert all(err <= definite.error + 0.01 for err in definite.cv_error.values()), definite.cv_error
    assert 0.5 < definite.cv_definite_share < 1 and len(definite.evidence) == 800
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


def test_an_exam_states_its_repeat_error_non_negative_whatever_the_recalibration_slope() -> None:
    """pdff_se is the spread of the pairs through the recalibration: a small run can fit a negative slope, and the
    error's size is the slope's magnitude times the pairs' standard error."""
    pdffs = np.array([6.0, 9.0, 12.0, 7.0, 10.0, 8.0])
    for slope in (0.8, -0.6):
        model = ExamModel(0.5, definite=CERTIFIED, recalibration=(0.0, slope), pdff_halfwidth=0.3, pdff_coverage=0.9)
        last = _stream(ExamTracker(ExamPolicy(), model), np.full(6, 4.0), pdffs)[-1]
        expected = abs(slope) * np.log1p(pdffs).std(ddof=1) / math.sqrt(len(pdffs))
        assert last.pdff_se == pytest.approx(expected, abs=1e-4)
