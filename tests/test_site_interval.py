"""The PDFF interval carried to a site: when the site's errors are the parent's up to a scale, the coverage the
bundle states holds on the site's new subjects, on average over the dozen subjects a site happens to adapt on."""

from __future__ import annotations

import numpy as np

from edge_runtime.contracts import NormalisedPdffInterval
from edge_runtime.model.uncertainty import conformal_quantile
from trainer.site.interval import site_interval

COVERAGE = 0.9
FLOOR = 1.0  # with no ensemble spread, a normalised error is the error itself


def _parent(rng: np.random.Generator) -> NormalisedPdffInterval:
    scores = np.sort(np.abs(rng.normal(0.0, 0.1, 90)))
    return NormalisedPdffInterval(
        coverage=COVERAGE,
        multiplier=conformal_quantile(scores, COVERAGE),
        spread_floor=FLOOR,
        scores=[float(s) for s in scores],
        recalibration=(0.0, 1.0),
    )


def _site(rng: np.random.Generator, n: int, sd: float) -> tuple[np.ndarray, np.ndarray]:
    """log(1 + estimate) and log(1 + truth): the console bends the scale by a line and errs by ``sd``."""
    estimate = rng.uniform(np.log1p(1.0), np.log1p(30.0), n)
    return estimate, 0.2 + 0.8 * estimate + rng.normal(0.0, sd, n)


def test_a_dozen_subjects_give_an_interval_that_covers_as_stated_on_average() -> None:
    rng = np.random.default_rng(7)
    covered = []
    for _ in range(300):
        parent = _parent(rng)
        log_estimate, log_truth = _site(rng, 12, 0.15)
        rows = [
            {"pdff": float(np.expm1(t)), "pdff_ensemble": float(np.expm1(e)), "log_pdff_spread": 0.0}
            for e, t in zip(log_estimate, log_truth, strict=True)
        ]
        interval, _ = site_interval(parent, rows)
        a, b = interval.recalibration
        new_estimate, new_truth = _site(rng, 400, 0.15)
        halfwidth = conformal_quantile(interval.scores, COVERAGE) * FLOOR
        covered.append(np.mean(np.abs(new_truth - (a + b * new_estimate)) <= halfwidth))
    assert 0.895 <= np.mean(covered) <= 0.94, f"mean coverage {np.mean(covered):.3f} where {COVERAGE:.0%} is stated"
