"""The phantom must carry the fat signal the way real livers do, and hide it behind realistic nuisances."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import spearmanr

from edge_runtime.contracts import FATTY_PDFF
from phantom.anatomy import LIVER
from phantom.bmode import simulate_view
from phantom.subject import draw_cohort, draw_pdff
from phantom.truth import truth_hri


def _grey(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float64)


def _cohort_measures(cohort: Path) -> tuple[list[float], list[float], list[float]]:
    rows = list(csv.DictReader((cohort / "manifest.csv").read_text().splitlines()))
    by_subject: dict[str, dict[str, dict[str, str]]] = {}
    for row in rows:
        by_subject.setdefault(row["subject_id"], {})[row["view"]] = row
    pdff, hri, liver_brightness = [], [], []
    for views in by_subject.values():
        kl, lv = views["kidney_liver"], views["liver"]
        hri.append(truth_hri(_grey(cohort / kl["path"]), cv2.imread(str(cohort / kl["mask_path"]), 0)))
        liver_mask = cv2.imread(str(cohort / lv["mask_path"]), 0) == LIVER
        liver_brightness.append(float(_grey(cohort / lv["path"])[liver_mask].mean()))
        pdff.append(float(kl["pdff"]))
    return pdff, hri, liver_brightness


def test_hepatorenal_index_tracks_pdff_but_liver_brightness_alone_does_not(cohort90: Path) -> None:
    pdff, hri, liver_brightness = _cohort_measures(cohort90)
    assert len(pdff) == 90
    rho_hri = spearmanr(hri, pdff).statistic
    rho_liver = spearmanr(liver_brightness, pdff).statistic
    print(f"Spearman rho: hepatorenal index {rho_hri:.3f}, liver-view brightness {rho_liver:.3f}")
    assert rho_hri >= 0.6
    assert abs(rho_liver) <= rho_hri - 0.2


def test_more_fat_raises_hepatorenal_contrast_for_the_same_subject() -> None:
    base = draw_cohort(4, seed=11)[0]
    indices = []
    for pdff in (2.0, 8.0, 20.0):
        subject = dataclasses.replace(base, pdff=pdff)
        image = simulate_view(subject, "kidney_liver", 500, 400, np.random.default_rng(5))
        indices.append(truth_hri(image.pixels.astype(np.float64), image.labels))
    assert indices[0] < indices[1] < indices[2]


def test_operator_gain_changes_liver_brightness() -> None:
    base = draw_cohort(4, seed=11)[0]
    means = []
    for gain in (-8.0, 0.0, 8.0):
        image = simulate_view(dataclasses.replace(base, gain_db=gain), "liver", 500, 400, np.random.default_rng(5))
        means.append(image.pixels[image.labels == LIVER].mean())
    assert means[0] + 10 < means[1] < means[2] - 10


def test_higher_frequency_gives_finer_speckle() -> None:
    base = draw_cohort(4, seed=11)[0]

    def speckle_correlation(freq: float) -> float:
        image = simulate_view(dataclasses.replace(base, freq_mhz=freq), "liver", 600, 500, np.random.default_rng(1))
        liver = np.where(image.labels == LIVER, image.pixels.astype(np.float64), np.nan)
        a, b = liver[:, :-3], liver[:, 3:]
        ok = ~np.isnan(a) & ~np.isnan(b)
        return float(np.corrcoef(a[ok], b[ok])[0, 1])

    assert speckle_correlation(5.0) < speckle_correlation(2.5)


def test_pdff_distribution_matches_the_paper_cohort() -> None:
    pdff = draw_pdff(20000, 8667, np.random.default_rng(0))
    normal, fatty = pdff[pdff < FATTY_PDFF], pdff[pdff >= FATTY_PDFF]
    assert len(fatty) == 8667
    assert abs(normal.mean() - 3.0) < 0.1 and abs(normal.std() - 0.9) < 0.15
    assert abs(fatty.mean() - 11.8) < 0.4
    assert np.percentile(fatty, 99) > 25.0  # a long tail


def test_default_cohort_prevalence_and_vendor_split(cohort90: Path) -> None:
    truth = json.loads((cohort90 / "truth.json").read_text())
    subjects = truth["subjects"]
    fatty = [s for s in subjects if s["pdff"] >= FATTY_PDFF]
    assert len(fatty) == 39
    for group in (fatty, [s for s in subjects if s["pdff"] < FATTY_PDFF]):
        philips = sum(s["vendor"] == "PHILIPS" for s in group)
        assert abs(philips - (len(group) - philips)) <= 1
