"""Bias correction and quantization-aware head fine-tuning, on small heads (no VGG19: seconds, not minutes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clkl.tf_setup import keras

FEATURES = 32
VIEWS = ("liver", "kidney_liver")


def _head(seed: int = 0) -> keras.Model:
    from clkl.head import build_head, fit_minmax

    rng = np.random.default_rng(seed)
    x = rng.random((64, 2 * FEATURES), dtype=np.float32)
    return build_head(VIEWS, FEATURES, ("p_fatty", "pdff"), fit_minmax(x), seed)


def _inputs(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((n, FEATURES), dtype=np.float32) for _ in VIEWS]


def test_shifted_head_gives_the_float_answer_on_biased_features() -> None:
    from calibration.bias_correction import shift_head_inputs

    head = _head()
    x = _inputs(8, 1)
    bias = [np.full(FEATURES, 0.05, np.float32), np.linspace(-0.1, 0.1, FEATURES, dtype=np.float32)]
    biased = [xi + b for xi, b in zip(x, bias, strict=True)]
    expected = head.predict(x, verbose=0)
    uncorrected = head.predict(biased, verbose=0)
    corrected = shift_head_inputs(head, bias).predict(biased, verbose=0)
    assert np.abs(uncorrected[1] - expected[1]).max() > 1e-3  # the bias does move the answer
    for got, want in zip(corrected, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(head.predict(x, verbose=0)[0], expected[0])  # the original head is untouched


def test_saved_and_shifted_heads_keep_their_minmax_statistics_as_arrays(tmp_path: Path) -> None:
    """A MinMax layer whose statistics are Python lists makes TensorFlow track every feature as an object,
    which costs seconds per head conversion; loading from HDF5 and bias-shifting keep them arrays, same answers."""
    from calibration.bias_correction import shift_head_inputs
    from clkl.head import load_head

    head = _head()
    head.save(tmp_path / "head.h5")
    loaded = load_head(tmp_path / "head.h5")
    shifted = shift_head_inputs(loaded, [np.zeros(FEATURES, np.float32)] * 2)
    for model in (loaded, shifted):
        layer = model.get_layer("minmax")
        assert isinstance(layer.input_mean, np.ndarray) and isinstance(layer.input_variance, np.ndarray)
    x = _inputs(4, 2)
    for got, want in zip(shifted.predict(x, verbose=0), head.predict(x, verbose=0), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_feature_bias_is_the_mean_int8_error_and_refuses_mismatched_arrays() -> None:
    from calibration.bias_correction import feature_bias, shift_head_inputs

    float_feats = np.zeros((3, 4), np.float32)
    int8_feats = np.array([[1, 0, 0, 0], [2, 0, 0, 0], [3, 0, 0, -3]], np.float32)
    np.testing.assert_allclose(feature_bias(float_feats, int8_feats), [2, 0, 0, -1])
    with pytest.raises(ValueError, match="matching"):
        feature_bias(float_feats, int8_feats[:2])
    with pytest.raises(ValueError, match="MinMax layer"):
        shift_head_inputs(_head(), [np.zeros(3), np.zeros(3)])


def test_quantization_aware_head_learns_the_int8_encoders_error() -> None:
    from calibration.qat import convert_qat_head, quantization_aware_head
    from edge_runtime.model.bundle import head_input_indices
    from edge_runtime.model.interpreter import make_interpreter

    head = _head()
    clean = _inputs(256, 2)
    rng = np.random.default_rng(3)
    offset = [rng.normal(0, 0.08, FEATURES).astype(np.float32) for _ in VIEWS]  # systematic, like rounded weights
    noisy = [c + o for c, o in zip(clean, offset, strict=True)]
    teacher = head.predict(clean, verbose=0)

    def pdff_error(model: keras.Model) -> float:
        return float(np.abs(model.predict(noisy, verbose=0)[1] - teacher[1]).mean())

    before = pdff_error(head)
    student = quantization_aware_head(head, noisy, teacher, 60, 1e-2, 0.9, 32, 0)
    after = pdff_error(student)
    assert after < 0.5 * before, (before, after)

    interp = make_interpreter(convert_qat_head(student))
    kinds = {interp.get_tensor_details()[i]["dtype"] for op in interp._get_ops_details() for i in op["inputs"]}
    assert np.int8 in kinds  # fake-quantized layers really convert to int8
    inputs = head_input_indices(interp, Path("head.tflite"))
    for view, x in zip(VIEWS, noisy, strict=True):
        interp.set_tensor(inputs[view], x[:1])
    interp.invoke()
    outputs = sorted(float(interp.get_tensor(d["index"]).reshape(-1)[0]) for d in interp.get_output_details())
    keras_out = sorted(float(o.reshape(-1)[0]) for o in student.predict([x[:1] for x in noisy], verbose=0))
    np.testing.assert_allclose(outputs, keras_out, atol=0.05 * max(1.0, abs(keras_out[-1])))

    # PDFF is open-ended: far outside the training range the TFLite head must follow the float model, not clip.
    far = [x[:1] * 100.0 for x in noisy]
    for view, x in zip(VIEWS, far, strict=True):
        interp.set_tensor(inputs[view], x)
    interp.invoke()
    tflite_far = sorted(float(interp.get_tensor(d["index"]).reshape(-1)[0]) for d in interp.get_output_details())
    keras_far = student.predict(far, verbose=0)
    pdff_far = float(keras_far[1].reshape(-1)[0])
    assert abs(pdff_far) > 3 * np.abs(teacher[1]).max()  # really outside what training saw
    assert min(abs(v - pdff_far) for v in tflite_far) < 1e-3 * abs(pdff_far)
