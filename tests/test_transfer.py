"""Across scanners: the third phantom vendor, appearance augmentation, harmonisation and `trainer transfer`."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from clkl.appearance import FAMILIES, apply_look, look_names
from clkl.augment import IDENTITY, Variant, apply_variant, variants
from edge_runtime.pipeline.preprocess import PreprocessError, harmonise
from phantom.subject import draw_cohort
from phantom.vendors import CANON, GE, PHILIPS

THREE_VENDOR_LAYOUTS = ("phantom-philips", "phantom-ge", "phantom-canon-1280x800")


def _two_region_image() -> np.ndarray:
    """A sector-like image: black border, a brighter 'liver' band above a darker 'cortex' band."""
    rng = np.random.default_rng(0)
    image = np.zeros((224, 224, 3), np.uint8)
    image[20:110, 30:194] = rng.integers(110, 150, (90, 164, 1))
    image[110:200, 30:194] = rng.integers(60, 90, (90, 164, 1))
    return image


def test_third_vendor_renders_outside_the_first_two() -> None:
    """The third vendor's frequency and dynamic range lie beyond both others', and its operators' habits differ."""
    for low_high in ("freq_mhz", "dynamic_range_db"):
        ranges = [getattr(v, low_high) for v in (PHILIPS, GE)]
        third = getattr(CANON, low_high)
        assert third[0] > max(r[1] for r in ranges) or third[1] < min(r[0] for r in ranges), low_high
    subjects = draw_cohort(60, seed=1, vendors=("PHILIPS", "GE", "CANON"))
    canon = [s for s in subjects if s.vendor == "CANON"]
    low, high = CANON.tgc_range
    assert len(canon) in (19, 20, 21) and all(low <= s.tgc_compensation <= high for s in canon)
    assert np.mean([s.gain_db for s in canon]) < np.mean([s.gain_db for s in subjects if s.vendor != "CANON"])


def test_default_vendors_draw_the_same_subjects_as_before() -> None:
    """The new per-vendor gain and TGC habits default to the old draws, so existing cohorts stay byte-identical:
    the digest of the default cohort's subjects was taken on the code before the third vendor existed."""
    subjects = [s.to_dict() for s in draw_cohort(90, seed=0)]
    assert hashlib.sha256(repr(subjects).encode()).hexdigest()[:16] == "b43b009a97a75f9c"


@pytest.mark.parametrize("look", look_names(tuple(FAMILIES)))
def test_every_look_changes_the_image_keeps_black_and_the_contrast_sign(look: str) -> None:
    image = _two_region_image()
    out = apply_look(image, look)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image), f"{look} left the image unchanged"
    assert np.array_equal(out, apply_look(image, look)), f"{look} is not deterministic (the feature cache needs it)"
    if not look.startswith("zoom"):
        assert np.all(out[image.max(axis=2) == 0] == 0), f"{look} lit pixels outside the sector"
        liver, cortex = out[40:90, 60:160].mean(), out[130:180, 60:160].mean()
        assert liver > cortex, f"{look} reversed the brighter-liver contrast"


def test_appearance_variants_are_named_and_follow_the_geometric_set() -> None:
    chosen = variants("light", ("gain", "jpeg"))
    assert chosen[:4] == variants("light")
    assert [v.name for v in chosen[4:]] == ["r000-gain0", "r000-gain1", "r000-jpeg0"]
    assert chosen[0] == IDENTITY and np.array_equal(apply_variant(_two_region_image(), IDENTITY), _two_region_image())
    assert np.array_equal(
        apply_variant(_two_region_image(), Variant(0, "none", "gain1")), apply_look(_two_region_image(), "gain1")
    )


def test_unknown_appearance_family_is_a_clear_error() -> None:
    from edge_runtime.errors import ConfigError
    from trainer.config import build_config

    with pytest.raises(ConfigError, match="unknown appearance family contrast"):
        build_config(appearance="gain,contrast")
    assert build_config(appearance="all").appearance_families == tuple(FAMILIES)
    assert build_config(appearance="none").variant_set == variants("paper")


def test_sector_median_keeps_ratios_and_removes_gain() -> None:
    image = _two_region_image()
    brighter = apply_look(image, "gain1")
    a, b = (
        harmonise(image, "sector_median"),
        harmonise((image.astype(np.float32) * 1.3).clip(0, 255).astype(np.uint8), "sector_median"),
    )
    ratio = lambda im: im[40:90, 60:160].mean() / im[130:180, 60:160].mean()  # noqa: E731
    assert ratio(a) == pytest.approx(ratio(image), rel=0.02)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.5  # a global gain factor is undone
    assert np.all(harmonise(brighter, "sector_median")[image.max(axis=2) == 0] == 0)
    assert harmonise(image, "none") is image
    with pytest.raises(PreprocessError, match="unknown harmonisation"):
        harmonise(image, "histogram")


@pytest.fixture(scope="module")
def three_vendor_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from phantom.cohort import CohortForm, generate_cohort

    out = tmp_path_factory.mktemp("cohort3v")
    form = CohortForm(layouts=THREE_VENDOR_LAYOUTS, other_frames=0)
    generate_cohort(out, 14, seed=5, with_masks=False, workers=2, form=form)
    return out


def _transfer(cohort: Path, out: Path, *extra: str):
    from trainer.cli import main as trainer_cli

    args = ["transfer", "--manifest", str(cohort / "manifest.csv"), "--profiles", str(cohort / "profiles.json")]
    args += ["--out", str(out), "--weights", "none", "--augment", "none", "--epochs", "3", "--folds", "2"]
    return CliRunner().invoke(trainer_cli, [*args, "--bootstrap", "20", *extra])


def test_transfer_rows_test_only_on_the_vendor_never_seen(three_vendor_cohort: Path, tmp_path: Path) -> None:
    result = _transfer(three_vendor_cohort, tmp_path / "t", "--appearance", "gain", "--cache-dir", str(tmp_path / "c"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "t" / "transfer.json").read_text())
    with open(three_vendor_cohort / "manifest.csv") as fh:
        scanners = {r["subject_id"]: r["scanner"] for r in csv.DictReader(fh)}
    vendor_count = {v: sum(v.lower() in s for s in scanners.values()) for v in ("PHILIPS", "GE", "CANON")}
    rows = report["settings"]["gain"]["rows"]
    assert {"PHILIPS -> GE", "GE -> PHILIPS", "GE + PHILIPS -> CANON", "CANON + GE -> PHILIPS"} <= set(rows)
    for row in rows.values():
        assert row["across"]["n_subjects"] == vendor_count[row["test"]]
        assert row["n_train"] == sum(vendor_count[v] for v in row["train"]) and row["test"] not in row["train"]
        assert row["within"]["n_subjects"] == vendor_count[row["test"]]
    assert (tmp_path / "t" / "transfer.png").stat().st_size > 5000
    assert "| GE + PHILIPS -> CANON |" in (tmp_path / "t" / "transfer.md").read_text()


def test_transfer_on_one_vendor_is_refused_by_name(tiny_cohort: Path, tmp_path: Path) -> None:
    """A manifest whose subjects all come from one vendor cannot say anything about another."""
    with open(tiny_cohort / "manifest.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["scanner"] == "phantom-ge"]
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "path": str(tiny_cohort / r["path"])} for r in rows)
    from trainer.cli import main as trainer_cli

    args = ["transfer", "--manifest", str(manifest), "--out", str(tmp_path / "t"), "--weights", "none"]
    result = CliRunner().invoke(trainer_cli, [*args, "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code != 0 and "at least two vendors" in result.output and "Traceback" not in result.output


def test_a_cohort_read_with_another_harmonisation_is_refused(tiny_cohort: Path, tmp_path: Path) -> None:
    """Training on tensors the bedside would not compute is refused before any work, naming both settings."""
    from edge_runtime.errors import ConfigError
    from trainer.config import build_config
    from trainer.train import load_labelled_cohort, train_run

    cohort = load_labelled_cohort(tiny_cohort / "manifest.csv", progress=False, harmonisation="none")
    config = build_config(weights="none", harmonisation="sector_median", cache_dir=str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="harmonisation 'none' but the run asks for 'sector_median'"):
        train_run(cohort, config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
