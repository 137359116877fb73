"""`benchmarks site-adapt` pools each band's judges over draws, so failures that gather in one band are seen."""

from __future__ import annotations

import pytest

from benchmarks.site_adapt import BAND_FIGURES, pooled_bands


def _band(subjects: int, views: float, mae: float) -> dict[str, float]:
    return {"subjects": subjects, "view_agreement": views, "guard_share": 0.0, "interval_coverage": 1.0, "mae": mae}


def test_each_band_pools_every_draws_judges_weighted_by_how_many_it_had() -> None:
    draws = [
        {"recalibrated": {"per_band": {"<5": _band(24, 1.0, 1.0), ">=15": _band(4, 0.5, 15.0)}}},
        {"recalibrated": {"per_band": {"<5": _band(20, 0.8, 2.0)}}},  # this draw's judges held no severe liver
    ]
    pooled = pooled_bands(draws, "recalibrated")
    assert list(pooled) == ["<5", ">=15"]  # from normal to severe, as the bands are declared
    assert pooled["<5"]["subjects"] == 44
    assert pooled["<5"]["view_agreement"] == pytest.approx((24 * 1.0 + 20 * 0.8) / 44)
    assert pooled["<5"]["mae"] == pytest.approx((24 * 1.0 + 20 * 2.0) / 44)
    severe = draws[0]["recalibrated"]["per_band"][">=15"]
    assert pooled[">=15"] == {"subjects": 4} | {f: severe[f] for f in BAND_FIGURES}
