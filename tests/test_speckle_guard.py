"""The guard's speckle part: it sees a new probe or preset through harmonisation, where the features do not,
and stays quiet on new subjects imaged like training."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.contracts import VIEWS
from edge_runtime.model.bundle import load_bundle
from edge_runtime.model.gate import clipped_share, speckle_texture
from edge_runtime.pipeline.preprocess import preprocess_frame
from phantom.render import profile_for, render_view
from phantom.subject import Subject, draw_cohort
from trainer.dataset import Cohort
from trainer.export.gate import SEVERE_LOOKS, FittedLooks, fit_speckle_parts, severe_images
from trainer.export.guard import SPECKLE_MIN_SUBJECTS, gaussian_bound


def _tensor(subject: Subject, view: str, seed: int, appearance: str = "standard") -> np.ndarray:
    screen = render_view(subject, view, seed, appearance=appearance).screen
    return preprocess_frame(screen, profile_for(subject), harmonisation="sector_median")


@pytest.fixture(scope="module")
def trained() -> Cohort:
    """24 phantom subjects' model inputs, both views: what export fits the speckle part on."""
    subjects = draw_cohort(24, 11)
    images = {(s.subject_id, v): _tensor(s, v, 11) for s in subjects for v in VIEWS}
    return Cohort(subjects=[], images=images, harmonisation="sector_median")


def _looks(cohort: Cohort, ids: list[str]) -> tuple[FittedLooks, list[str]]:
    """The frames export fits the guard on (as shown and as severe steatosis fades them), and their subjects."""
    images = {v: [cohort.image(s, v) for s in ids] for v in VIEWS}
    faded = {v: severe_images(cohort, ids, v) for v in VIEWS}
    none = {v: np.zeros((0, 1)) for v in VIEWS}  # the speckle part reads the images only
    return FittedLooks(images, none, faded, none), ids + [s for s in ids for _ in SEVERE_LOOKS]


def test_speckle_texture_ignores_gain_and_sees_speckle_size() -> None:
    subject = draw_cohort(1, 5)[0]
    frame = _tensor(subject, "liver", 5)
    darker = (frame.astype(np.float32) * 0.6).round().astype(np.uint8)  # one factor on every grey level
    finer = _tensor(replace(subject, freq_mhz=subject.freq_mhz * 1.9), "liver", 5)
    texture = speckle_texture(frame)
    assert np.abs(speckle_texture(darker) - texture).max() < 0.02
    assert (speckle_texture(finer) < texture - 0.05).all()  # finer speckle: less correlated with its neighbour
    assert not speckle_texture(np.zeros((224, 224, 3), np.uint8)).any()


def test_the_speckle_part_flags_a_new_probe_and_passes_new_subjects_however_fatty(trained: Cohort) -> None:
    """Fitted on frames as shown and as severe steatosis fades them: new subjects pass, the sickest livers too, while
    a new probe's finer speckle and a shifted look are still flagged."""
    parts = fit_speckle_parts(*_looks(trained, sorted({sid for sid, _ in trained.images})))
    new = draw_cohort(10, 12)
    severe = [replace(s, pdff=float(p)) for s, p in zip(new, np.linspace(18, 30, len(new)), strict=True)]
    for view in VIEWS:
        part = parts[view]

        def flagged(subjects: list[Subject], appearance: str = "standard", part=part, view=view) -> list[bool]:
            tensors = [_tensor(s, view, 12, appearance) for s in subjects]
            return [part.scores(speckle_texture(t))[0] > part.threshold or clipped_share(t) > 0.05 for t in tensors]

        assert sum(flagged(new)) <= 1
        assert sum(flagged(severe)) <= 1, f"severe livers flagged on the {view} view"
        assert sum(flagged([replace(s, freq_mhz=s.freq_mhz * 1.9) for s in new])) >= 9  # finer speckle only
        assert sum(flagged(new, "shifted")) >= 9  # speckle, dynamic range, grey map and gain: with clipping


def test_too_few_subjects_fit_no_speckle_part(trained: Cohort) -> None:
    few = sorted({sid for sid, _ in trained.images})[: SPECKLE_MIN_SUBJECTS - 1]
    assert fit_speckle_parts(*_looks(trained, few)) is None


def test_the_gaussian_bound_widens_for_few_frames() -> None:
    chi_99 = np.sqrt(-2 * np.log(0.01))  # two dimensions: the chi-square limit of a known Gaussian
    assert gaussian_bound(6, 2, 0.01) > gaussian_bound(80, 2, 0.01) > chi_99
    assert gaussian_bound(1_000_000, 2, 0.01) == pytest.approx(chi_99, rel=1e-3)


def test_a_small_run_exports_no_speckle_part_and_says_why(bundle_dir: Path) -> None:
    """The test bundle's run has ten subjects: the guard keeps features and clipping, and fidelity.md says why
    the speckle part is missing; the bedside loads it without one."""
    bundle = load_bundle(bundle_dir)
    assert bundle.meta.guard is not None and bundle.meta.guard.speckle is None and bundle.gate.speckle is None
    report = (bundle_dir / "fidelity.md").read_text()
    assert f"speckle texture not fitted (it needs {SPECKLE_MIN_SUBJECTS} train and calibration subjects)" in report
