"""The fast protocol (issue 15): the kernel-form SGD is the paper's SGD, and --features int8 trains on the
very numbers the bedside computes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import train_args

from trainer.cli import main as trainer_cli

VIEWS = ("liver", "kidney_liver")


def _problem(n: int = 43, per_view: int = 16, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = {v: (rng.random((n, per_view)) * rng.uniform(0.5, 3, per_view)).astype(np.float32) for v in VIEWS}
    y = {"p_fatty": (rng.random(n) > 0.5).astype(np.float32), "pdff": rng.uniform(1, 40, n).astype(np.float32)}
    return x, y


@pytest.mark.parametrize("learning_rate", [1e-2, 1e-4])  # 1e-2: the PDFF gradients are clipped at every step
def test_kernel_sgd_takes_the_same_steps_as_keras_fit(learning_rate: float) -> None:
    """Same initial head, same batches (shuffle off), a partial last batch, two outputs: same weights after
    four epochs, to float rounding, and the same per-epoch losses."""
    from clkl.head import build_head, compile_head, fit_minmax
    from trainer.kernel_sgd import SgdSettings, train_head

    x, y = _problem()
    x_all = np.concatenate([x[v] for v in VIEWS], axis=1)
    minmax = fit_minmax(x_all)
    keras_head = build_head(VIEWS, 16, ("p_fatty", "pdff"), minmax, 3)
    compile_head(keras_head, ("p_fatty", "pdff"), learning_rate, 0.9)
    by_view = {f"features_{v}": x[v] for v in VIEWS}
    expected = keras_head.fit(by_view, y, epochs=4, batch_size=8, shuffle=False, verbose=0).history
    kernel_head = build_head(VIEWS, 16, ("p_fatty", "pdff"), minmax, 3)
    got = train_head(
        kernel_head, x_all, y, SgdSettings(4, 8, learning_rate, 0.9, seed=0, shuffle=False), progress=False
    )
    for want, have in zip(keras_head.get_weights(), kernel_head.get_weights(), strict=True):
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(got["pdff_loss"], expected["pdff_loss"], rtol=1e-5)


def test_kernel_sgd_shuffles_by_seed_and_reports_its_timings() -> None:
    from clkl.head import build_head, fit_minmax
    from trainer.kernel_sgd import SgdSettings, train_head

    x, y = _problem(n=40)
    x_all = np.concatenate([x[v] for v in VIEWS], axis=1)
    heads = [build_head(VIEWS, 16, ("p_fatty",), fit_minmax(x_all), 3) for _ in range(3)]
    histories = [
        train_head(head, x_all, {"p_fatty": y["p_fatty"]}, SgdSettings(3, 8, 1e-2, 0.9, seed=seed), progress=False)
        for head, seed in zip(heads, (0, 0, 1), strict=True)
    ]
    assert histories[0]["loss"] == histories[1]["loss"]  # the seed fixes the shuffle
    assert histories[0]["loss"] != histories[2]["loss"]  # another seed, other batches
    assert len(histories[0]["loss"]) == 3 and {"loss", "gram_s", "loop_s", "samples"} == set(histories[0])


def _predictions(run: Path) -> dict[str, float]:
    return {r["subject_id"]: float(r["p_fatty"]) for r in csv.DictReader((run / "predictions.csv").open())}


@pytest.mark.slow
def test_kernel_loop_cv_falls_within_the_keras_loops_interval(tiny_cohort: Path, feature_cache: Path, tmp_path: Path):
    args = [
        "train",
        "--manifest",
        str(tiny_cohort / "manifest.csv"),
        "--weights",
        "none",
        "--augment",
        "light",
        "--appearance",
        "none",
    ]
    args += ["--epochs", "40", "--folds", "2", "--bootstrap", "200", "--cache-dir", str(feature_cache)]
    for loop in ("keras", "kernel"):
        result = CliRunner().invoke(trainer_cli, [*args, "--out", str(tmp_path / loop), "--head-loop", loop])
        assert result.exit_code == 0, result.output
    keras_report = json.loads((tmp_path / "keras" / "report.json").read_text())
    kernel_report = json.loads((tmp_path / "kernel" / "report.json").read_text())
    for metric in ("auc", "accuracy"):
        low, high = keras_report["ci95"][metric]
        assert low <= kernel_report["pooled"][metric] <= high, metric
    both = _predictions(tmp_path / "keras"), _predictions(tmp_path / "kernel")
    assert max(abs(both[0][s] - both[1][s]) for s in both[0]) < 0.1  # same folds, same init: close calls


@pytest.mark.slow
def test_int8_features_run_exports_its_own_encoder_and_agrees_with_itself(
    tiny_cohort: Path, feature_cache: Path, tmp_path: Path
) -> None:
    from edge_runtime.model.bundle import load_bundle
    from phantom.cohort import generate_cohort
    from trainer.dataset import read_cohort

    run, bundle = tmp_path / "int8-run", tmp_path / "int8-bundle"
    changes = {"epochs": "5", "bootstrap": "50", "features": "int8", "int8_samples": "16"}
    result = CliRunner().invoke(trainer_cli, train_args(tiny_cohort / "manifest.csv", run, feature_cache, **changes))
    assert result.exit_code == 0, result.output
    timings = json.loads((run / "timings.json").read_text())
    assert timings["features"] == "int8" and timings["int8_calibration_s"] > 0
    split = json.loads((run / "split.json").read_text())
    assert split["calibration"] and not set(split["calibration"]) & set(split["train"])

    independent = tmp_path / "independent"
    generate_cohort(independent, 4, seed=12, with_masks=False, workers=1)
    args = ["export", "--run", str(run), "--out", str(bundle), "--no-debugger"]
    result = CliRunner().invoke(trainer_cli, [*args, "--fidelity-manifest", str(independent / "manifest.csv")])
    assert result.exit_code == 0, result.output
    meta = json.loads((bundle / "bundle.json").read_text())
    assert (bundle / "encoder.tflite").read_bytes() == (run / "encoder_int8.tflite").read_bytes()
    assert meta["training"]["features"] == "int8" and "--features int8" in meta["quantization"]["head"]
    fidelity = json.loads((bundle / "fidelity.json").read_text())
    assert fidelity["class_agreement"] == 1.0 and fidelity["p_fatty_max_abs_diff"] < 1e-4
    assert fidelity["groups"]["independent"]["n_subjects"] == 4

    # The head trained on exactly the numbers the bedside computes.
    from trainer.extraction import run_encoders
    from trainer.runs import open_run

    cohort = read_cohort(tiny_cohort / "manifest.csv", progress=False, harmonisation="none")
    image = cohort.image(cohort.ids[0], "liver")
    stored = run_encoders(open_run(run)).features
    np.testing.assert_array_equal(
        stored.features(stored.encode(image[None]))[0], load_bundle(bundle).encode("liver", image)
    )

    refused = CliRunner().invoke(trainer_cli, ["export", "--run", str(run), "--out", str(tmp_path / "q"), "--qat"])
    assert refused.exit_code == 1 and "int8 encoder's features" in refused.output
