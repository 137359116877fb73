"""Trainer building blocks: folds, augmentation, metrics. No TensorFlow model is built here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clkl.augment import IDENTITY, LIGHT, PAPER, Variant, apply_variant, variants
from trainer.folds import FoldError, load_folds, make_folds, save_folds, train_ids
from trainer.metrics import bootstrap_ci, classification_metrics, confusion, regression_metrics


def test_paper_augmentation_is_13_rotations_times_3_flips() -> None:
    assert len(PAPER) == 39 and len({v.name for v in PAPER}) == 39
    assert sorted({v.angle for v in PAPER}) == list(range(0, 181, 15))
    assert PAPER[0] == IDENTITY and LIGHT[0] == IDENTITY and variants("none") == (IDENTITY,)
    with pytest.raises(ValueError, match="unknown augmentation"):
        variants("heavy")


def test_variants_transform_the_image() -> None:
    image = np.zeros((224, 224, 3), np.uint8)
    image[10:30, 150:200] = 255  # a bar near the top right
    assert np.array_equal(apply_variant(image, IDENTITY), image)
    assert np.array_equal(apply_variant(image, Variant(0, "x")), image[:, ::-1])
    assert np.array_equal(apply_variant(image, Variant(0, "y")), image[::-1])
    rotated = apply_variant(image, Variant(180, "none"))
    assert rotated[200:210, 30:70].mean() > 200  # the bar moved to the bottom left


def _cohort(n: int, seed: int = 0) -> tuple[list[str], list[str], list[bool]]:
    rng = np.random.default_rng(seed)
    ids = [f"S{i:03d}" for i in range(n)]
    vendors = ["PHILIPS" if i % 2 else "GE" for i in range(n)]
    fatty = list(rng.random(n) < 0.43)
    return ids, vendors, fatty


def test_folds_are_subject_level_stratified_and_reusable(tmp_path: Path) -> None:
    ids, vendors, fatty = _cohort(90)
    folds = make_folds(ids, vendors, fatty, 5, seed=1)
    assert sorted(s for f in folds for s in f) == sorted(ids)
    for k, test in enumerate(folds):
        assert not set(test) & set(train_ids(folds, k))
        share_ge = np.mean([vendors[ids.index(s)] == "GE" for s in test])
        share_fatty = np.mean([fatty[ids.index(s)] for s in test])
        assert abs(share_ge - 0.5) < 0.12
        assert abs(share_fatty - np.mean(fatty)) < 0.12
    save_folds(tmp_path / "folds.json", folds)
    assert load_folds(tmp_path / "folds.json", ids) == folds
    with pytest.raises(FoldError, match="partition"):
        load_folds(tmp_path / "folds.json", ids[:-1])


def test_too_few_subjects_per_stratum_is_a_clear_error() -> None:
    ids, vendors, fatty = _cohort(8)
    with pytest.raises(FoldError, match="stratum"):
        make_folds(ids, vendors, fatty, 5, seed=0)


def test_classification_metrics_on_known_cases() -> None:
    pdff = np.array([2.0, 3.0, 4.0, 6.0, 12.0, 20.0])
    perfect = classification_metrics(pdff, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]))
    assert perfect["accuracy"] == 1.0 and perfect["auc"] == 1.0 and perfect["specificity"] == 1.0
    # One normal called fatty: specificity 2/3, precision 3/4, recall 1.
    one_fp = classification_metrics(pdff, np.array([0.1, 0.6, 0.3, 0.7, 0.8, 0.9]))
    assert one_fp["specificity"] == pytest.approx(2 / 3)
    assert one_fp["precision"] == pytest.approx(3 / 4)
    assert one_fp["recall"] == 1.0
    assert classification_metrics(np.array([2.0, 3.0]), np.array([0.1, 0.9]))["auc"] is None


def test_the_metrics_equal_scikit_learns_on_ties_one_class_and_constant_truth() -> None:
    """The bootstrap's plain-numpy metrics give scikit-learn's values, so a thousand resamples stay cheap."""
    from sklearn import metrics as sk

    rng = np.random.default_rng(7)
    for trial in range(40):
        n = int(rng.integers(2, 30))
        pdff = rng.choice([2.0, 4.0, 6.0, 12.0], n) if trial % 5 else np.full(n, 3.0)
        score = np.round(rng.random(n), 1)  # ties on purpose
        truth, decision = pdff >= 5.0, score >= 0.5
        ours = classification_metrics(pdff, score)
        assert ours["accuracy"] == pytest.approx(sk.accuracy_score(truth, decision))
        assert ours["precision"] == pytest.approx(sk.precision_score(truth, decision, zero_division=0))
        assert ours["f1"] == pytest.approx(sk.f1_score(truth, decision, zero_division=0))
        expected_auc = sk.roc_auc_score(truth, score) if 0 < truth.sum() < n else None
        assert ours["auc"] == pytest.approx(expected_auc)
        assert confusion(pdff, score) == sk.confusion_matrix(truth, decision, labels=[False, True]).tolist()
        predicted = pdff + rng.normal(0, 2, n) if trial % 7 else pdff.copy()
        assert regression_metrics(pdff, predicted)["r2"] == pytest.approx(sk.r2_score(pdff, predicted))


def test_regression_metrics_and_bootstrap_interval() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(1, 30, 80)
    predicted = truth + rng.normal(0, 3, 80)
    metrics = regression_metrics(truth, predicted)
    assert 0.8 < metrics["r2"] < 1.0 and metrics["mae"] < 4

    def resampled(idx: np.ndarray) -> dict:
        return regression_metrics(truth[idx], predicted[idx])

    ci = bootstrap_ci(resampled, 80, 200, seed=0)
    assert ci["r2"][0] < metrics["r2"] < ci["r2"][1]
    json.dumps(ci)  # serialisable for report.json


def test_feature_minmax_floors_tiny_ranges_and_keeps_constant_features_finite() -> None:
    from clkl.head import fit_minmax

    rng = np.random.default_rng(0)
    features = np.column_stack([rng.uniform(0, 1, 50), rng.uniform(0, 1e-4, 50), np.zeros(50), rng.uniform(2, 3, 50)])
    lo, span = fit_minmax(features)
    assert np.allclose(lo, features.min(axis=0), atol=1e-6)
    assert span[2] == 1.0  # constant: maps to 0
    median = np.median([span[0], 1e-4, span[3]])
    assert span[1] >= 0.1 * median - 1e-6  # a hair-thin range is not blown up
    scaled = (features - lo) / span
    assert np.isfinite(scaled).all() and scaled[:, 0].max() == pytest.approx(1.0, abs=1e-5)


def test_fold_heads_predict_without_tensorflow_retracing_warnings(caplog: pytest.LogCaptureFixture) -> None:
    """A run builds one head per fold and calls each once; Keras' predict traced a new tf.function for each, and
    TensorFlow printed a retracing warning into every run's and every demo's output."""
    from clkl.tf_setup import keras
    from trainer.crossval import predict_outputs

    x = {"features": np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)}
    for seed in range(7):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((4,), name="features")
        head = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
        out = predict_outputs(head, x, ("p_fatty",))
        assert out["p_fatty"].shape == (7,) and ((out["p_fatty"] > 0) & (out["p_fatty"] < 1)).all()
    assert "retracing" not in caplog.text


def test_saving_heads_and_converting_pixel_encoders_print_no_library_advice(tmp_path: Path) -> None:
    """Every run saved its fold heads with tf-keras's HDF5 advice, and every int8 export printed the converter's
    'no input statistics' warning; both are deliberate (HDF5 runs, raw-pixel inputs) and only noise."""
    import warnings

    from calibration.convert import convert_quietly, quantizing_converter
    from clkl.tf_setup import keras, tf
    from trainer.crossval import save_head

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))
    samples = [np.random.default_rng(k).uniform(0, 255, (8, 8, 3)).astype(np.float32) for k in range(4)]
    with warnings.catch_warnings(record=True) as loud:
        warnings.simplefilter("always")
        quantizing_converter(model, samples, tf.uint8, tf.int8).convert()
        model.save(tmp_path / "loud.h5")
    said = " ".join(str(w.message) for w in loud)  # what the libraries say
    assert "Statistics for quantized inputs" in said and "HDF5" in said
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        assert convert_quietly(quantizing_converter(model, samples, tf.uint8, tf.int8))[4:8] == b"TFL3"
        save_head(model, tmp_path / "head.h5")
    assert not [str(w.message) for w in quiet if "HDF5" in str(w.message) or "Statistics" in str(w.message)]
    assert keras.models.load_model(tmp_path / "head.h5").count_params() == model.count_params()


def test_feature_minmax_is_fitted_on_training_rows_only_and_test_folds_see_the_unaugmented_image() -> None:
    from trainer.config import TrainConfig
    from trainer.crossval import fit_head_on_features, predict_rows

    rng = np.random.default_rng(0)
    n, variants, size = 12, 3, 8
    feats = {v: rng.uniform(0, 1, (n, variants, size)).astype(np.float32) for v in ("liver", "kidney_liver")}
    train, test = np.arange(8), np.arange(8, 12)
    for v in feats:
        feats[v][test] = 50.0  # a test subject leaking into the fit would move the MinMax to 50
        feats[v][test, 1:] = np.nan  # augmented variants of test subjects must never be read
    y = {"p_fatty": (rng.random(n) > 0.5).astype(np.float32)}
    config = TrainConfig(weights="none", augment="light", epochs=1, task="classify")
    head, _ = fit_head_on_features(feats, y, train, config, 0, "t", False)
    lo = np.asarray(head.get_layer("minmax").get_config()["mean"]).reshape(-1)
    expected = np.concatenate([feats[v][train].reshape(-1, size) for v in feats], axis=1).min(axis=0)
    assert np.allclose(lo, expected, atol=1e-6)
    predicted = predict_rows(head, feats, test, config)["p_fatty"]
    assert predicted.shape == (4,) and np.isfinite(predicted).all()  # NaN variants 1.. were never read


@pytest.mark.parametrize("head_loop", ["kernel", "keras"])
def test_an_hri_head_takes_the_index_as_one_more_input_and_its_answer_moves_with_it(head_loop: str) -> None:
    from trainer.config import TrainConfig
    from trainer.crossval import fit_head_on_features, predict_rows

    rng = np.random.default_rng(1)
    n, variants, size = 24, 2, 6
    hri = rng.uniform(0.0, 0.6, n).astype(np.float32)  # log HRI: the fatty subjects are the bright livers
    feats = {v: rng.normal(0, 1, (n, variants, size)).astype(np.float32) for v in ("liver", "kidney_liver")}
    feats["hri"] = np.repeat(hri[:, None, None], variants, axis=1)
    y = {"p_fatty": (hri > 0.3).astype(np.float32)}
    config = TrainConfig(weights="none", augment="light", epochs=300, learning_rate=0.05, task="classify", hri=True,
                         head_loop=head_loop)  # fmt: skip
    head, _ = fit_head_on_features(feats, y, np.arange(n), config, 0, "t", False)
    assert [i.name for i in head.inputs] == ["features_liver", "features_kidney_liver", "hri"]
    bright = {**feats, "hri": np.full_like(feats["hri"], 0.6)}
    dull = {**feats, "hri": np.full_like(feats["hri"], 0.0)}
    rows = np.arange(n)
    assert (
        predict_rows(head, bright, rows, config)["p_fatty"] > predict_rows(head, dull, rows, config)["p_fatty"]
    ).all()


def test_an_hri_head_needs_the_kidney_liver_view_and_is_never_exported(tmp_path: Path) -> None:
    from edge_runtime.errors import ConfigError
    from trainer.config import ExportSettings, build_config
    from trainer.export.final_model import exportable
    from trainer.runs import Run, RunError

    with pytest.raises(ConfigError, match="hri needs the kidney-liver view"):
        build_config(weights="none", views="liver", hri=True)
    run = Run(tmp_path, build_config(weights="none", hri=True), [], None, None, {}, "phantom")
    with pytest.raises(RunError, match="hepatorenal index"):
        exportable(run, ExportSettings())
