"""`trainer export --int8` writes a bundle the bedside verifies and that answers as export judged it; unvalidated
outputs are marked, a changed backbone refused, tampering refused with a clear message."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import copy_run, export, read_csv

from edge_runtime.contracts import BUNDLE_SCHEMA
from edge_runtime.model.bundle import BundleError, load_bundle

pytestmark = pytest.mark.slow


def test_export_keeps_the_gates_training_features_in_the_run_for_site_adaptation(
    bundle_dir: Path, run_dir: Path
) -> None:
    """What site-adapt reads instead of encoding the run's frames again: the fitted subjects' features exactly as
    the bundle computes them, under the bundle's encoder hash."""
    from trainer import gate_features
    from trainer.dataset import read_cohort
    from trainer.export.gate import SEVERE_LOOKS
    from trainer.runs import open_run

    bundle, run = load_bundle(bundle_dir), open_run(run_dir)
    record = json.loads((run_dir / "exports" / f"{bundle.name}.json").read_text())
    fitted = record["split"]["train"] + record["split"]["calibration"]
    path = gate_features.path_for(run_dir, bundle.meta.sha256["encoder.tflite"])
    kept = gate_features.load(path, fitted, SEVERE_LOOKS)
    assert kept is not None and set(kept.groups) == set(fitted) and len(kept.rows) == len(kept.labels)
    cohort = read_cohort(run.manifest, run.profiles, harmonisation=bundle.harmonisation, progress=False)
    first = cohort.image(fitted[0], "liver")
    np.testing.assert_array_equal(kept.views["liver"][0], bundle.encode("liver", first))
    assert gate_features.load(path, fitted[1:], SEVERE_LOOKS) is None  # other subjects: never mixed in


def test_bundle_json_describes_the_bundle(bundle_dir: Path) -> None:
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    assert meta["schema"] == BUNDLE_SCHEMA and meta["version"] == "0.1.0"
    assert meta["views"] == ["liver", "kidney_liver"]
    assert meta["input"] == {**meta["input"], "shape": [224, 224, 3], "dtype": "uint8", "resize": "area"}
    assert meta["files"]["encoder"] == {"liver": "encoder.tflite", "kidney_liver": "encoder.tflite"}
    assert meta["quantization"]["input"] == {"scale": 1.0, "zero_point": 0}  # raw pixels go straight in
    assert meta["features"]["dtype"] == "int8"
    assert set(meta["sha256"]) >= {"encoder.tflite", "head.tflite", "fidelity.json"}
    assert len(meta["calibration"]["subject_id_sha256"]) == 64 and meta["calibration"]["subjects"] >= 1
    assert "auc" in meta["cv_metrics"]["pooled"]
    fidelity = json.loads((bundle_dir / "fidelity.json").read_text())
    assert fidelity["encoder_size_ratio"] < 0.27
    assert fidelity["debugger_top_layers"]
    # the int8 encoder's systematic error is measured on the calibration images and removed in the head
    assert fidelity["bias_correction"]["images"] == meta["quantization"]["representative_samples"]
    assert fidelity["bias_correction"]["mean_abs_feature_bias"] > 0
    assert meta["quantization"]["head"] == fidelity["head"] and "bias-corrected" in fidelity["head"]


def test_qat_export_judged_on_an_independent_cohort_too(run_dir: Path, tmp_path: Path) -> None:
    """`--qat` fine-tunes the head on int8 features (tfmot) and the bundle still loads at the bedside;
    `--fidelity-manifest` adds a second, independent cohort to the held-out fidelity subjects."""
    from click.testing import CliRunner

    from phantom.cohort import generate_cohort
    from trainer.cli import main as trainer_cli

    independent = tmp_path / "independent"
    generate_cohort(independent, 4, seed=11, with_masks=False, workers=1)
    out = tmp_path / "qat"
    args = ["export", "--run", str(run_dir), "--out", str(out), "--samples", "16", "--no-debugger"]
    args += ["--qat", "--qat-epochs", "2", "--qat-images", "12", "--allow-fidelity-miss"]
    args += ["--fidelity-manifest", str(independent / "manifest.csv")]
    result = CliRunner().invoke(trainer_cli, args)
    assert result.exit_code == 0, result.output
    fidelity = json.loads((out / "fidelity.json").read_text())
    held_out = fidelity["groups"]["held_out"]["n_subjects"]
    assert fidelity["groups"]["independent"]["n_subjects"] == 4
    assert fidelity["n_subjects"] == held_out + 4 == len(fidelity["per_subject"])
    assert fidelity["head"].startswith("quantization-aware fine-tuned on 12 int8 feature pairs")
    assert "independent cohort" in (out / "fidelity.md").read_text()
    bundle = load_bundle(out)
    answer = bundle.answer({v: np.zeros(25088, np.float32) for v in ("liver", "kidney_liver")})
    p_fatty, pdff = answer.p_fatty, answer.pdff
    assert 0.0 <= p_fatty <= 1.0 and np.isfinite(pdff)


def test_qat_needs_int8_and_says_so(run_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from trainer.cli import main as trainer_cli

    result = CliRunner().invoke(
        trainer_cli, ["export", "--run", str(run_dir), "--out", str(tmp_path), "--float", "--qat"]
    )
    assert result.exit_code != 0 and "--qat" in result.output and "--int8" in result.output
    assert "Traceback" not in result.output


def test_bedside_loading_does_not_import_tensorflow(bundle_dir: Path) -> None:
    code = (
        "import sys, numpy as np; from edge_runtime.model.bundle import load_bundle;"
        f"b = load_bundle({str(bundle_dir)!r});"
        "f = {v: b.encode(v, np.zeros((224, 224, 3), np.uint8)) for v in ('liver', 'kidney_liver')};"
        "a = b.answer(f); p, pdff = a.p_fatty, a.pdff; assert 0 <= p <= 1;"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; print(p, pdff)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_litert_and_tensorflow_interpreters_agree_within_one_step(bundle_dir: Path, tiny_cohort: Path) -> None:
    from clkl.tf_setup import tf

    bundle = load_bundle(bundle_dir)
    image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    ours = bundle.encoders["liver"]
    ours.interpreter.set_tensor(ours.input_index, image[None])
    ours.interpreter.invoke()
    q_litert = ours.interpreter.get_tensor(ours.output_index).astype(np.int32)
    tf_interp = tf.lite.Interpreter(model_path=str(bundle_dir / "encoder.tflite"))
    tf_interp.allocate_tensors()
    tf_interp.set_tensor(tf_interp.get_input_details()[0]["index"], image[None])
    tf_interp.invoke()
    q_tf = tf_interp.get_tensor(tf_interp.get_output_details()[0]["index"]).astype(np.int32)
    assert np.max(np.abs(q_litert - q_tf)) <= 1


def _copy(bundle_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(bundle_dir, dst)
    return dst


def test_one_flipped_byte_in_the_encoder_is_refused_naming_the_file(bundle_dir: Path, tmp_path: Path) -> None:
    bundle = _copy(bundle_dir, tmp_path)
    data = bytearray((bundle / "encoder.tflite").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / "encoder.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"encoder\.tflite: SHA-256 mismatch"):
        load_bundle(bundle)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: (b / "head.tflite").unlink(), r"head\.tflite: file missing"),
        (lambda b: (b / "fidelity.json").write_text("{}"), r"fidelity\.json: SHA-256 mismatch"),
        (lambda b: _edit(b, schema="fatty-liver-edge/bundle@0"), "schema 'fatty-liver-edge/bundle@0'"),
        (
            lambda b: _edit(b, input={"shape": [256, 256, 3], "dtype": "uint8", "harmonisation": "none"}),
            r"input shape \[256, 256, 3\]",
        ),
        (
            lambda b: _edit(b, features={"size": 512, "dtype": "int8", "pooling": "flatten"}),
            r"output shape \[1, 25088\].*\[1, 512\]",
        ),
        (lambda b: (b / "bundle.json").write_text("{not json"), "not valid JSON"),
        (lambda b: (b / "bundle.json").unlink(), "no bundle.json"),
    ],
)
def test_broken_bundles_are_refused_with_a_clear_message(bundle_dir: Path, tmp_path: Path, mutate, message) -> None:
    bundle = _copy(bundle_dir, tmp_path)
    mutate(bundle)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle)


def _edit(bundle: Path, **changes) -> None:
    meta = json.loads((bundle / "bundle.json").read_text())
    meta.update(changes)
    (bundle / "bundle.json").write_text(json.dumps(meta))


def test_export_of_a_regress_run_marks_p_fatty_unvalidated_and_keeps_the_validated_epochs(
    run_dir: Path, tmp_path: Path
) -> None:
    regress = copy_run(run_dir, tmp_path / "regress-run", task="regress", epochs=None)
    result = export(regress, tmp_path / "bundle", "--float")  # float: what is checked does not need int8
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert meta["outputs"]["p_fatty"]["validated"] is False
    assert meta["outputs"]["pdff"]["validated"] is True
    assert meta["training"]["epochs"] == 500  # the paper's regression protocol the run validated, not 1000
    # ... and the bedside says so when it starts serving that bundle.
    args = ["serve", "--bundle", str(tmp_path / "bundle"), "--frames", "tcp://127.0.0.1:5611"]
    args += ["--results", "tcp://127.0.0.1:5612", "--audit-log", str(tmp_path / "audit.jsonl"), "--allow-unsigned"]
    serve = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", *args], stderr=subprocess.PIPE, text=True)
    try:
        warning = next(line for line in serve.stderr if "serving" in line or "NOT cross-validated" in line)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=30)
    assert "output p_fatty was NOT cross-validated" in warning and "task regress" in warning


def test_export_refuses_a_backbone_that_differs_from_the_runs(run_dir: Path, tmp_path: Path) -> None:
    changed = copy_run(run_dir, tmp_path / "changed-run")
    timings = json.loads((changed / "timings.json").read_text())
    timings["weights_id"] = "0123456789abcdef"
    (changed / "timings.json").write_text(json.dumps(timings))
    result = export(changed, tmp_path / "bundle")
    assert result.exit_code == 1
    assert "backbone weights differ" in result.output and "0123456789abcdef" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "bundle" / "bundle.json").exists()


def _export_record(run_dir: Path, bundle_dir: Path) -> dict:
    return json.loads((run_dir / "exports" / f"{bundle_dir.name}.json").read_text())


def test_export_split_is_the_one_export_trained_on(run_dir: Path, bundle_dir: Path) -> None:
    record = _export_record(run_dir, bundle_dir)["split"]
    groups = [set(record[g]) for g in ("train", "calibration", "fidelity")]
    assert all(groups) and not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    folds = json.loads((run_dir / "folds.json").read_text())["folds"]
    assert set().union(*groups) == {s for f in folds for s in f}
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    digest = hashlib.sha256("\n".join(sorted(record["calibration"])).encode()).hexdigest()
    assert meta["calibration"]["subject_id_sha256"] == digest
    assert meta["calibration"]["train_subjects"] == len(record["train"])


def test_bundle_reproduces_exports_int8_answer_and_tracks_float_on_a_real_frame(
    run_dir: Path, bundle_dir: Path, tiny_cohort: Path
) -> None:
    from edge_runtime.model.bundle import load_bundle
    from edge_runtime.pipeline.preprocess import preprocess_frame
    from edge_runtime.scanners.profiles import default_profiles
    from trainer.images import read_image

    record = _export_record(run_dir, bundle_dir)
    fidelity = json.loads((bundle_dir / "fidelity.json").read_text())
    subject = record["split"]["fidelity"][0]
    measured = fidelity["per_subject"][0]
    rows = {(r["subject_id"], r["view"]): r for r in read_csv(tiny_cohort / "manifest.csv")}
    bundle = load_bundle(bundle_dir)
    features = {}
    for view in ("liver", "kidney_liver"):
        row = rows[(subject, view)]
        screen, profile = read_image(tiny_cohort / row["path"]), default_profiles()[row["scanner"]]
        tensor = preprocess_frame(screen, profile, harmonisation=bundle.harmonisation)
        features[view] = bundle.encode(view, tensor)
    answer = bundle.answer(features)  # the ensemble, as fidelity.json judges it
    p_fatty, pdff = answer.p_fatty, answer.pdff
    assert p_fatty == pytest.approx(measured["p_int8"], abs=1e-6)
    assert pdff == pytest.approx(measured["pdff_int8"], abs=1e-4)
    assert abs(p_fatty - measured["p_float"]) < 0.1 and abs(pdff - measured["pdff_float"]) < 2.0
