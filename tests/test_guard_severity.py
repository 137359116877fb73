"""The guard's features part counts each PDFF band alike: a run has few severe livers, and a summary of mostly mild
ones flags the sickest new patients as out of distribution, so they get no answer at all."""

from __future__ import annotations

import numpy as np

from trainer.export.guard import SEVERITY_WEIGHT_MAX, fit_features, severity_weights

FEATURES, STEATOSIS_AXES = 512, 64


def _frames(rng: np.random.Generator, pdff: np.ndarray) -> np.ndarray:
    """Features that move along directions of their own as the fat rises past 10 %, as steatosis changes a liver's
    texture and depth, each liver by its own amount."""
    features = rng.normal(size=(len(pdff), FEATURES))
    severity = np.clip((pdff - 10.0) / 10.0, 0.0, None)[:, None]
    features[:, :STEATOSIS_AXES] += severity * rng.normal(0.8, 0.4, size=(len(pdff), STEATOSIS_AXES))
    return features


def test_every_pdff_band_weighs_as_much_as_the_most_populated_one_up_to_the_cap() -> None:
    pdff = np.array([1.0] * 12 + [7.0] * 6 + [12.0] * 3 + [25.0] * 1)
    weights = severity_weights(pdff)
    assert weights[pdff < 5].sum() == 12 and weights[(pdff >= 5) & (pdff < 10)].sum() == 12
    assert weights[(pdff >= 10) & (pdff < 15)].sum() == 12
    assert weights[pdff >= 15].max() == SEVERITY_WEIGHT_MAX  # one severe liver does not count for twelve


def test_a_run_with_few_severe_livers_flags_fewer_new_severe_ones_and_no_more_mild_ones() -> None:
    rng = np.random.default_rng(7)
    pdff = np.concatenate([rng.uniform(1, 12, 74), rng.uniform(15, 30, 6)])  # 6 severe livers in 80
    subjects = [f"S{i}" for i in range(len(pdff))]
    features = _frames(rng, pdff)
    plain = fit_features(features, subjects, 0.01)
    weighted = fit_features(features, subjects, 0.01, pdff)
    new_mild = _frames(rng, rng.uniform(1, 12, 400))
    new_severe = _frames(rng, rng.uniform(15, 30, 400))

    def flagged(guard, frames) -> float:
        return float(np.mean(guard.scores(frames) > guard.threshold))

    assert flagged(plain, new_severe) > 0.08  # the blind spot: the sickest livers get no answer
    assert flagged(weighted, new_severe) < 0.75 * flagged(plain, new_severe)
    assert flagged(weighted, new_mild) <= max(flagged(plain, new_mild), 0.02)
