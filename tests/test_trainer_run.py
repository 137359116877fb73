"""The trainer end to end on a tiny phantom cohort with the real VGG19 architecture (random weights)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import read_csv

from edge_runtime.contracts import HARMONISATIONS
from edge_runtime.pipeline.preprocess import harmonise, preprocess_frame
from edge_runtime.scanners.profiles import default_profiles
from trainer.cli import main as trainer_cli
from trainer.images import read_image
from trainer.manifest import load_manifest

pytestmark = pytest.mark.slow


def test_run_directory_holds_every_artefact(run_dir: Path) -> None:
    for name in (
        "config.json",
        "folds.json",
        "predictions.csv",
        "report.json",
        "report.md",
        "roc.png",
        "confusion.png",
        "pdff_scatter.png",
        "bland_altman.png",
        "loss.png",
        "timings.json",
        "fold0/head.h5",
        "fold1/head.h5",
        "fold0/history.json",
    ):
        assert (run_dir / name).is_file(), name
    report = json.loads((run_dir / "report.json").read_text())
    for key in ("accuracy", "precision", "recall", "specificity", "f1", "auc", "r2", "mae"):
        assert key in report["pooled"]
    assert "ci95" in report and len(report["per_fold"]) == 2
    assert "| auc |" in (run_dir / "report.md").read_text()


def test_no_subject_is_on_both_sides_and_each_is_predicted_once(run_dir: Path, tiny_cohort: Path) -> None:
    folds = json.loads((run_dir / "folds.json").read_text())["folds"]
    assert not set(folds[0]) & set(folds[1])
    rows = list(csv.DictReader((run_dir / "predictions.csv").read_text().splitlines()))
    ids = [r["subject_id"] for r in rows]
    assert sorted(ids) == sorted(load_manifest(tiny_cohort / "manifest.csv").subjects)
    for row in rows:
        assert row["subject_id"] in folds[int(row["fold"])]
        assert 0.0 <= float(row["p_fatty"]) <= 1.0
        assert np.isfinite(float(row["pdff_pred"]))


def test_trainer_tensors_are_the_shared_preprocessing(tiny_cohort: Path) -> None:
    from trainer.dataset import load_cohort

    manifest = load_manifest(tiny_cohort / "manifest.csv")
    record = next(iter(manifest.subjects.values()))
    entry = record.views["kidney_liver"]
    for harmonisation in HARMONISATIONS:  # the trainer's cohort and the bedside's frames, for every setting
        cohort = load_cohort(manifest, progress=False, harmonisation=harmonisation)
        screen = read_image(entry.path)
        expected = preprocess_frame(screen, default_profiles()[entry.scanner], harmonisation=harmonisation)
        assert np.array_equal(cohort.image(record.subject_id, "kidney_liver"), expected)
    plain = preprocess_frame(screen, default_profiles()[entry.scanner], harmonisation="none")
    assert not np.array_equal(plain, expected) and np.array_equal(harmonise(plain, HARMONISATIONS[-1]), expected)


def test_feature_cache_is_reused_and_keyed_by_content(run_dir: Path, tiny_cohort: Path, tmp_path: Path) -> None:
    from clkl.augment import LIGHT
    from clkl.encoder import build_encoder, build_vgg19_base, weights_fingerprint
    from trainer.features import FeatureCache, FloatEncoder

    base = build_vgg19_base("none", 0)
    encoder = build_encoder(base, "avg")
    cache = FeatureCache(tmp_path, FloatEncoder(encoder, weights_fingerprint(base), "avg"))
    image = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    first = cache.features([image], LIGHT[:2])
    assert cache.misses == 2 and first.shape == (1, 2, 512)
    again = cache.features([image], LIGHT[:2])
    assert cache.misses == 2 and cache.hits == 2
    np.testing.assert_allclose(first, again)
    changed = image.copy()
    changed[0, 0] ^= 1
    cache.features([changed], LIGHT[:1])
    assert cache.misses == 3
    # The same weights rebuilt from the same seed give the same fingerprint (so a later run reuses the cache).
    assert weights_fingerprint(build_vgg19_base("none", 0)) == weights_fingerprint(base)


def test_evaluate_reports_reader_agreement_for_unlabelled_subjects(
    run_dir: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    cohort = tmp_path / "reader"
    shutil.copytree(tiny_cohort, cohort)
    lines = (cohort / "manifest.csv").read_text().splitlines()
    rows = [line.split(",") for line in lines[1:]]
    header = lines[0] + ",reader_label"
    body = [",".join([*r[:4], "", *r[5:], "fatty" if float(r[4]) >= 5 else "normal"]) for r in rows]
    (cohort / "manifest.csv").write_text("\n".join([header, *body]) + "\n")
    result = CliRunner().invoke(
        trainer_cli,
        [
            "evaluate",
            "--run",
            str(run_dir),
            "--manifest",
            str(cohort / "manifest.csv"),
            "--out",
            str(tmp_path / "eval"),
        ],
    )
    assert result.exit_code == 0, result.output
    evaluation = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert "metrics" not in evaluation  # no PDFF in this cohort
    agreement = evaluation["reader_agreement"]
    assert agreement["n"] == 10 and np.sum(agreement["confusion_rows_reader_cols_model"]) == 10


def test_explain_writes_gradcam_and_shap_overlays(run_dir: Path) -> None:
    folds = json.loads((run_dir / "folds.json").read_text())["folds"]
    subject = folds[1][0]
    result = CliRunner().invoke(
        trainer_cli, ["explain", "--run", str(run_dir), "--subject", subject, "--nsamples", "60"]
    )
    assert result.exit_code == 0, result.output
    assert "fold 1" in result.output
    for name in ("p_fatty.png", "pdff.png", "explanation.json"):
        assert (run_dir / "explanations" / subject / name).is_file()
    missing = CliRunner().invoke(trainer_cli, ["explain", "--run", str(run_dir), "--subject", "NOPE"])
    assert missing.exit_code == 1 and "NOPE" in missing.output


def test_finetuning_trains_the_backbone_end_to_end(tiny_cohort: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        trainer_cli,
        [
            "train",
            "--manifest",
            str(tiny_cohort / "manifest.csv"),
            "--out",
            str(tmp_path / "ft"),
            "--weights",
            "none",
            "--augment",
            "none",
            "--appearance",
            "none",
            "--epochs",
            "1",
            "--folds",
            "2",
            "--finetune",
            "block5",
            "--pooling",
            "avg",
            "--bootstrap",
            "20",
            "--batch-size",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ft" / "fold0" / "model.weights.h5").is_file()
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["finetune"] == "block5"


def test_bad_weights_path_is_a_clear_error(tiny_cohort: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        trainer_cli,
        [
            "train",
            "--manifest",
            str(tiny_cohort / "manifest.csv"),
            "--out",
            str(tmp_path / "x"),
            "--weights",
            str(tmp_path / "nope.h5"),
        ],
    )
    assert result.exit_code == 2
    assert "weights file not found" in result.output
    assert "preprocessing" not in result.output  # refused before any work


def test_ablate_reports_every_row_on_the_same_folds(tiny_cohort: Path, feature_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "abl"
    result = CliRunner().invoke(
        trainer_cli,
        [
            "ablate",
            "--manifest",
            str(tiny_cohort / "manifest.csv"),
            "--out",
            str(out),
            "--weights",
            "none",
            "--augment",
            "light",
            "--appearance",
            "none",
            "--epochs",
            "2",
            "--folds",
            "2",
            "--bootstrap",
            "20",
            "--skip",
            "clkl_finetuned",
            "--cache-dir",
            str(feature_cache),
        ],
    )
    assert result.exit_code == 0, result.output
    table = (out / "ablation.md").read_text()
    rows = ("liver", "kidney_liver", "clkl", "clkl_no_augmentation", "clkl_hri_head", "hri", "clkl_hri")
    groups = table[table.index("## Per vendor and per PDFF band") :]
    for row in rows:
        assert f"| {row} |" in table and groups.count(f"| {row} |") == 2  # once per vendor, once per band
    assert "| GE AUC |" in groups and "| >=15 n |" in groups
    assert json.loads((out / "clkl_hri_head" / "config.json").read_text())["hri"] is True
    hri = json.loads((out / "ablation.json").read_text())["hri_basis"]
    assert 0 < hri["measured"] <= hri["subjects"] and set(hri["across_vendors"]) == {"GE", "PHILIPS"}
    assert "## The hepatorenal index" in table
    assert (out / "ablation.png").is_file()
    across = table[table.index("## Across vendors") :]  # the tiny cohort has both vendors
    assert "| GE -> PHILIPS |" in across and "| PHILIPS -> GE |" in across and (out / "transfer.png").is_file()
    runs = ("liver", "kidney_liver", "clkl", "clkl_hri_head")
    folds = {json.dumps(json.loads((out / r / "folds.json").read_text())) for r in runs}
    assert len(folds) == 1
    bad = CliRunner().invoke(
        trainer_cli, ["ablate", "--manifest", str(tiny_cohort / "manifest.csv"), "--out", str(out), "--skip", "spleen"]
    )
    assert bad.exit_code == 2 and "spleen" in bad.output


def test_gradcam_heatmaps_are_nonzero_share_one_scale_and_differ_between_fatty_and_normal(run_dir: Path) -> None:
    rows = read_csv(run_dir / "predictions.csv")
    fatty = next(r["subject_id"] for r in rows if float(r["pdff"]) >= 5)
    normal = next(r["subject_id"] for r in rows if float(r["pdff"]) < 5)
    peaks = {}
    for subject in (fatty, normal):
        result = CliRunner().invoke(
            trainer_cli, ["explain", "--run", str(run_dir), "--subject", subject, "--nsamples", "60"]
        )
        assert result.exit_code == 0, result.output
        explanation = json.loads((run_dir / "explanations" / subject / "explanation.json").read_text())
        cam = explanation["outputs"]["p_fatty"]["gradcam"]
        assert all(cam["peak"][v] > 0 for v in ("liver", "kidney_liver"))
        assert cam["scale"] == pytest.approx(max(cam["peak"].values()))  # one maximum for both views
        peaks[subject] = cam["peak"]
    assert peaks[fatty] != peaks[normal]


def test_ablate_defaults_to_the_papers_finetuned_classifier() -> None:
    """The command's own defaults build the paper's row: a classifier with every layer trainable, and the
    table says so. (Fine-tuning itself runs in test_trainer_run.py::test_finetuning_trains_the_backbone_end_to_end.)"""
    from trainer.ablate import ablation_configs, row_label
    from trainer.cli import ablate
    from trainer.config import TrainConfig

    defaults = {p.name: p.default for p in ablate.params}
    assert defaults["finetune_from"] == "all" and defaults["task"] == "classify"
    base = TrainConfig(task=defaults["task"])
    row = ablation_configs(base, defaults["finetune_from"], defaults["finetune_epochs"])["clkl_finetuned"]
    assert row.finetune == "all" and row.task == "classify"
    assert row_label("clkl_finetuned", row) == "clkl_finetuned (all layers)"
