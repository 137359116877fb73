"""`trainer export`: the final model of a run, split into encoder + head, converted, verified, bundled.

1. Hold out a calibration group and a fidelity group (calibration.split); train the final two-output head
   (p_fatty and PDFF, so one backbone pass serves both) on everyone else.
2. Convert the encoder to full-integer int8 with a representative dataset of the calibration subjects'
   preprocessed images and their augmented variants. Measure the int8 encoder's systematic feature error on
   those same images and remove it in the head (calibration.bias_correction); the head stays float, or with
   --qat is fine-tuned on int8 features under fake-quantization and ships its p_fatty output layer in int8
   (calibration.qat).
3. Compare float and int8 on the fidelity group (and on an independent cohort when given); write
   fidelity.json/.md; fail on missed bars unless allowed.
4. Write bundle.json with every file's SHA-256, then load the bundle the way the bedside does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from calibration.fidelity import compare, markdown
from calibration.split import export_split, representative_images, subject_hash
from edge_runtime.bundle import SCHEMA, VIEWS, EncoderModel, head_input_indices, load_bundle, sha256_file
from edge_runtime.interpreter import make_interpreter
from trainer.augment import apply_variant, variants
from trainer.crossval import _finetune_fold, fit_head_on_features, frozen_features, targets
from trainer.dataset import Cohort, read_cohort
from trainer.runs import RunError, open_run

SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")


class FidelityMiss(RuntimeError):
    """The int8 bundle misses the fidelity bars (the bundle is still written, for inspection)."""


def _head_outputs(interp, inputs: dict[str, int], keras_head, feats: dict[str, np.ndarray]) -> dict[str, int]:
    """Map TFLite head output tensors to names by matching a probe against the Keras head."""
    probe = {v: feats[v][:1] for v in VIEWS}
    for view, index in inputs.items():
        interp.set_tensor(index, probe[view].astype(np.float32))
    interp.invoke()
    expected = keras_head.predict([probe[v] for v in VIEWS], verbose=0)
    mapping = {}
    for out_name, value in zip(("p_fatty", "pdff"), expected, strict=True):
        diffs = {
            d["index"]: float(np.abs(interp.get_tensor(d["index"]).reshape(-1)[0] - value.reshape(-1)[0]))
            for d in interp.get_output_details()
        }
        mapping[out_name] = min(diffs, key=diffs.get)
    if len(set(mapping.values())) != 2:
        raise RuntimeError("could not tell the head's p_fatty and pdff outputs apart")
    return mapping


def _run_head(interp, inputs: dict[str, int], mapping: dict[str, int], feats: dict[str, np.ndarray]):
    out = {"p_fatty": [], "pdff": []}
    for i in range(len(feats["liver"])):
        for view, index in inputs.items():
            interp.set_tensor(index, feats[view][i : i + 1].astype(np.float32))
        interp.invoke()
        for name, index in mapping.items():
            out[name].append(float(interp.get_tensor(index).reshape(-1)[0]))
    return {k: np.asarray(v) for k, v in out.items()}


def _train_final(cohort: Cohort, config, train_rows: np.ndarray, fidelity_rows: np.ndarray, progress: bool):
    """Returns (encoders by view, head, float outputs on the fidelity subjects, cached float features by view
    (frozen backbone only, else None))."""
    y = targets(cohort, config.outputs, config.fatty_threshold)
    ids = np.asarray(cohort.ids)
    if config.finetune is None:
        feats, _, encoder = frozen_features(cohort, config, progress)
        head, _ = fit_head_on_features(feats, y, train_rows, config, config.seed, "final head", progress)
        encoders = dict.fromkeys(VIEWS, encoder)
        x_fid = [feats[v][fidelity_rows, 0] for v in VIEWS]  # variant 0 is the un-augmented image
        float_raw = head.predict(x_fid, verbose=0)
    else:
        feats = None
        model, _, _ = _finetune_fold(cohort, train_rows, fidelity_rows, y, config, config.seed, progress)
        encoders = {v: model.get_layer(f"encoder_{v}") for v in VIEWS}
        head = model.get_layer("head")
        x_fid = [
            encoders[v].predict(np.stack([cohort.image(s, v) for s in ids[fidelity_rows]]), verbose=0) for v in VIEWS
        ]
        float_raw = head.predict(x_fid, verbose=0)
    return encoders, head, _named(float_raw), feats


def _named(raw) -> dict[str, np.ndarray]:
    return {name: np.asarray(r).reshape(-1) for name, r in zip(("p_fatty", "pdff"), raw, strict=True)}


def _quant_features(encoder: EncoderModel, images) -> np.ndarray:
    return np.stack([encoder.encode(image) for image in images])


def _qat_training_set(
    cohort: Cohort,
    config,
    feats: dict[str, np.ndarray],
    train_rows: np.ndarray,
    encoders,
    files,
    cap: int,
    progress: bool,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """int8 features of (training subject, augmented variant) pairs, and the float features of the same images."""
    chosen = variants(config.augment)
    pairs = [(r, k) for r in train_rows for k in range(len(chosen))]
    if len(pairs) > cap:
        keep = np.random.default_rng(config.seed).permutation(len(pairs))[:cap]
        pairs = [pairs[i] for i in sorted(keep)]
    ids = cohort.ids
    quant, float_ = [], []
    for view in VIEWS:
        images = (apply_variant(cohort.image(ids[r], view), chosen[k]) for r, k in pairs)
        images = tqdm(images, total=len(pairs), desc=f"int8 {view}", disable=not progress)
        quant.append(_quant_features(encoders[files[view]], images))
        float_.append(np.stack([feats[view][r, k] for r, k in pairs]).astype(np.float32))
    return quant, float_


def export_bundle(
    run_dir: str | Path,
    out_dir: str | Path,
    int8: bool = True,
    n_calibration: int | None = None,
    n_fidelity: int | None = None,
    version: str = "1.0.0",
    name: str | None = None,
    max_samples: int = 300,
    epochs: int | None = None,
    debugger: bool = True,
    allow_fidelity_miss: bool = False,
    qat: bool = False,
    qat_epochs: int = 100,
    qat_images: int = 400,
    fidelity_manifest: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    started = time.perf_counter()
    if not SEMVER.match(version):
        raise ValueError(f"version {version!r} is not semver (MAJOR.MINOR.PATCH)")
    run = open_run(run_dir)
    if run.config.views != "clkl":
        raise RunError(f"{run.path} trained views={run.config.views!r}; a bedside bundle needs a CLKL run")
    if run.manifest is None or not run.manifest.is_file():
        raise RunError(f"{run.path}: its manifest {run.manifest} is not available")
    if qat and not int8:
        raise ValueError("--qat fine-tunes the head on int8 features; it needs --int8")
    if qat and run.config.finetune is not None:
        raise RunError(f"{run.path} is fine-tuned; --qat supports frozen-backbone runs (the paper's CLKL model)")
    independent = None
    if fidelity_manifest is not None:  # read it before the long part, so a bad path fails at once
        independent = read_cohort(fidelity_manifest, labelled_only=True, progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cohort = read_cohort(run.manifest, labelled_only=True, progress=progress)
    n = len(cohort.ids)
    n_calibration = n_calibration if n_calibration is not None else max(2, round(0.12 * n))
    n_fidelity = n_fidelity if n_fidelity is not None else max(2, round(0.12 * n))
    pdff = cohort.pdff()
    split = export_split(
        cohort.ids,
        cohort.vendors(),
        list(pdff >= run.config.fatty_threshold),
        n_calibration,
        n_fidelity,
        run.config.seed,
    )
    index = {s: i for i, s in enumerate(cohort.ids)}
    train_rows = np.array([index[s] for s in split.train])
    fid_rows = np.array([index[s] for s in split.fidelity])

    config = dataclasses.replace(run.config, task="both", epochs=epochs or run.config.epochs)
    encoders, head, float_out, feats = _train_final(cohort, config, train_rows, fid_rows, progress)

    # Representative dataset: calibration subjects' images (both views) and their augmented variants.
    calib_images = [cohort.image(s, v) for s in split.calibration for v in VIEWS]
    samples = representative_images(
        calib_images,
        variants(config.augment) if config.augment != "none" else variants("light"),
        max_samples,
        config.seed,
    )
    unique = {id(e): e for e in encoders.values()}
    shared = len(unique) == 1
    files_encoder: dict[str, str] = {}
    encoder_blobs: dict[str, bytes] = {}
    float_sizes = 0
    int_sizes = 0
    for view in VIEWS:
        fname = "encoder.tflite" if shared else f"encoder_{view}.tflite"
        files_encoder[view] = fname
        if fname in encoder_blobs:
            continue
        from calibration.convert import convert_encoder

        with tqdm(total=1, desc=f"converting {fname} ({'int8' if int8 else 'float'})", disable=not progress) as bar:
            blob = convert_encoder(encoders[view], samples, int8)
            bar.update(1)
        float_blob = blob if not int8 else convert_encoder(encoders[view], None, False)
        encoder_blobs[fname] = blob
        float_sizes += len(float_blob)
        int_sizes += len(blob)
        (out / fname).write_bytes(blob)

    ids = np.asarray(cohort.ids)
    threads = os.cpu_count() or 1  # export owns the machine; int8 results do not depend on threads
    tflite_encoders = {
        f: EncoderModel.from_interpreter(f, make_interpreter(b, num_threads=threads)) for f, b in encoder_blobs.items()
    }

    # The head the bundle ships: bias-corrected for the int8 encoder, then optionally quantization-aware.
    bundle_head = head
    head_kind = "float32"
    bias_report = None
    if int8:
        from calibration.bias_correction import feature_bias, shift_head_inputs

        stacked = np.stack(samples)
        bias = {}
        for fname in encoder_blobs:
            view = next(v for v in VIEWS if files_encoder[v] == fname)
            float_feats = encoders[view].predict(stacked, batch_size=16, verbose=0)
            bias[fname] = feature_bias(float_feats, _quant_features(tflite_encoders[fname], samples))
        bundle_head = shift_head_inputs(head, [bias[files_encoder[v]] for v in VIEWS])
        head_kind = "float32, bias-corrected for the int8 encoder"
        bias_report = {
            "images": len(samples),
            "mean_abs_feature_bias": float(np.mean([np.abs(b).mean() for b in bias.values()])),
        }
    if qat:
        from calibration.qat import convert_qat_head, quantization_aware_head

        quant_train, float_train = _qat_training_set(
            cohort, config, feats, train_rows, tflite_encoders, files_encoder, qat_images, progress
        )
        teacher = head.predict(float_train, batch_size=256, verbose=0)
        with tqdm(total=1, desc=f"quantization-aware head ({qat_epochs} epochs)", disable=not progress) as bar:
            bundle_head = quantization_aware_head(
                bundle_head,
                quant_train,
                teacher,
                qat_epochs,
                config.learning_rate,
                config.momentum,
                config.batch_size,
                config.seed,
            )
            bar.update(1)
        head_blob = convert_qat_head(bundle_head)
        head_kind = (
            f"quantization-aware fine-tuned on {len(quant_train[0])} int8 feature pairs; p_fatty output layer "
            "int8, the PDFF branch and the 50 176-input Dense(10) layers float32"
        )
    else:
        from calibration.convert import convert_head

        head_blob = convert_head(bundle_head)
    (out / "head.tflite").write_bytes(head_blob)
    head_interp = make_interpreter(head_blob)
    head_inputs = head_input_indices(head_interp, out / "head.tflite")

    # Fidelity: the bedside path (TFLite encoder + TFLite head) vs the float Keras model, on held-out subjects.
    def int8_features(images_by_view: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
        return {v: _quant_features(tflite_encoders[files_encoder[v]], images_by_view[v]) for v in VIEWS}

    quant_feats = int8_features({v: [cohort.image(s, v) for s in ids[fid_rows]] for v in VIEWS})
    mapping = _head_outputs(head_interp, head_inputs, bundle_head, quant_feats)
    sizes = (int_sizes, float_sizes)
    groups = {"held_out": (pdff[fid_rows], float_out, _run_head(head_interp, head_inputs, mapping, quant_feats))}
    if independent is not None:
        images = {v: [independent.image(s, v) for s in independent.ids] for v in VIEWS}
        float_ind = _named(
            head.predict([encoders[v].predict(np.stack(images[v]), batch_size=16, verbose=0) for v in VIEWS], verbose=0)
        )
        quant_ind = _run_head(head_interp, head_inputs, mapping, int8_features(images))
        groups["independent"] = (independent.pdff(), float_ind, quant_ind)
    fidelity = compare(
        np.concatenate([g[0] for g in groups.values()]),
        {k: np.concatenate([g[1][k] for g in groups.values()]) for k in ("p_fatty", "pdff")},
        {k: np.concatenate([g[2][k] for g in groups.values()]) for k in ("p_fatty", "pdff")},
        0.5,
        config.fatty_threshold,
        *sizes,
    )
    if independent is not None:
        fidelity["groups"] = {
            name: {k: v for k, v in compare(*g, 0.5, config.fatty_threshold, *sizes).items() if k != "per_subject"}
            for name, g in groups.items()
        }
        fidelity["independent_manifest"] = str(fidelity_manifest)
    fidelity["subjects"] = {
        "train": len(split.train),
        "calibration": len(split.calibration),
        "fidelity": len(split.fidelity),
        "independent": len(independent.ids) if independent is not None else 0,
    }
    fidelity["head"] = head_kind
    if bias_report:
        fidelity["bias_correction"] = bias_report
    if int8 and debugger:
        from calibration.convert import quantization_debug

        first = next(iter(unique.values()))
        fidelity["debugger_top_layers"] = quantization_debug(first, samples[: min(8, len(samples))])
    (out / "fidelity.json").write_text(json.dumps(fidelity, indent=2, default=float))
    (out / "fidelity.md").write_text(markdown(fidelity))

    probe = tflite_encoders[files_encoder["liver"]]
    report = json.loads((run.path / "report.json").read_text())
    meta: dict[str, Any] = {
        "schema": SCHEMA,
        "name": name or out.name,
        "version": version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "views": list(VIEWS),
        "input": {
            "shape": [224, 224, 3],
            "dtype": np.dtype(probe.input_dtype).name,
            "resize": "area",
            "color": "rgb",
            "preprocess": "edge_runtime.preprocess.preprocess_frame (scanner-profile crop, INTER_AREA)",
        },
        "features": {
            "size": int(quant_feats["liver"].shape[1]),
            "dtype": np.dtype(probe.output_dtype).name,
            "pooling": config.pooling,
        },
        "outputs": {
            "p_fatty": {"threshold": 0.5, "meaning": f"probability that MRI-PDFF >= {config.fatty_threshold:g} %"},
            "pdff": {"unit": "%", "meaning": "estimated MRI proton-density fat fraction"},
        },
        "head_outputs": mapping,
        "files": {"encoder": files_encoder, "head": "head.tflite", "fidelity": "fidelity.json"},
        "quantization": {
            "encoder": "int8 full-integer post-training quantization" if int8 else "float32",
            "input": {"scale": probe.input_quant.scale, "zero_point": probe.input_quant.zero_point},
            "output": {"scale": probe.output_quant.scale, "zero_point": probe.output_quant.zero_point},
            "head": head_kind,
            "bias_correction": bias_report,
            "representative_samples": len(samples) if int8 else 0,
        },
        "calibration": {
            "subjects": len(split.calibration),
            "subject_id_sha256": subject_hash(split.calibration),
            "fidelity_subjects": len(split.fidelity),
            "train_subjects": len(split.train),
        },
        "training": {
            "run": str(run.path),
            "weights": config.weights,
            "weights_id": run.weights_id,
            "finetune": config.finetune,
            "augment": config.augment,
            "epochs": config.n_epochs,
        },
        "cv_metrics": {"task": run.config.task, "pooled": report.get("pooled"), "ci95": report.get("ci95")},
    }
    listed = sorted({*encoder_blobs, "head.tflite", "fidelity.json", "fidelity.md"})
    meta["sha256"] = {f: sha256_file(out / f) for f in listed}
    (out / "bundle.json").write_text(json.dumps(meta, indent=2))

    bundle = load_bundle(out)  # prove the bedside accepts it
    check_image = cohort.image(split.fidelity[0], "liver")
    np.testing.assert_allclose(bundle.encode("liver", check_image), quant_feats["liver"][0], rtol=0, atol=1e-6)
    result = {"bundle": str(out), "sha": bundle.sha, "fidelity": fidelity, "seconds": time.perf_counter() - started}
    if not fidelity["meets_bars"] and not allow_fidelity_miss:
        raise FidelityMiss("; ".join(fidelity["misses"]))
    return result
