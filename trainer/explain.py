"""`trainer explain`: why did the model call this subject fatty? Grad-CAM and SHAP over both views.

The subject is explained by the head of the fold where it was a *test* subject, so the explanation is of
an unseen case, as at the bedside.

- Grad-CAM: gradient of the output with respect to VGG19's last convolution (block5_conv4), per view. Both
  views' heatmaps share one scale (the larger maximum), so the overlay shows which view mattered.
- SHAP (shap.KernelExplainer): Shapley values of the 7x7 spatial cells of each view's feature map (a cell
  "absent" takes its training-fold mean), i.e. how much each image region and each view pushes p_fatty or
  PDFF away from the training average. Cheap because only the head is re-evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from clkl.augment import IDENTITY
from clkl.head import load_head
from clkl.tf_setup import keras, tf
from trainer.dataset import read_cohort
from trainer.extraction import run_encoders
from trainer.features import FeatureCache
from trainer.folds import train_ids
from trainer.runs import Run, RunError, open_run

GRID = 7


def _overlay(image: np.ndarray, heat: np.ndarray, title: str, scale: float, signed: bool = False) -> np.ndarray:
    """The heatmap over the image; scale is the value shown at full colour (shared by the views compared)."""
    heat = cv2.resize(heat.astype(np.float32), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_CUBIC)
    scale = max(scale, 1e-12)
    if signed:  # red: pushes the output up, blue: pushes it down
        colored = np.zeros((*heat.shape, 3), np.uint8)
        colored[..., 0] = np.clip(heat / scale, 0, 1) * 255
        colored[..., 2] = np.clip(-heat / scale, 0, 1) * 255
    else:
        norm = heat / scale
        colored = cv2.applyColorMap((np.clip(norm, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
        colored = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB)
    out = cv2.addWeighted(image, 0.55, colored, 0.45, 0)
    out = cv2.resize(out, (448, 448), interpolation=cv2.INTER_CUBIC)
    cv2.putText(out, title, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def grad_cam(run: Run, encoder: keras.Model, head: keras.Model, images: dict[str, np.ndarray], output: int):
    """Per view: ReLU(sum_k alpha_k A_k) on block5_conv4, alpha = spatially averaged gradients.


    The tape watches block5_conv4's output itself, before it feeds the last pooling layer, and nothing else
    (no variables), so the gradient is exactly d output / d feature map, whatever the weights' trainability.

    Args:
        run: the run (views, outputs).
        encoder: the run's frozen encoder.
        head: the fold head that held the subject out.
        images: view -> preprocessed image.
        output: index of the explained output.
    """
    base = encoder.get_layer("vgg19")
    to_last_conv = keras.Model(base.input, base.get_layer("block5_conv4").output)
    last_pool = base.get_layer("block5_pool")
    normalise = encoder.get_layer("vgg_normalise")
    pool = encoder.get_layer("features")
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        maps, feats = {}, []
        for v in run.config.view_names:
            maps[v] = to_last_conv(normalise(tf.constant(images[v][None])))
            tape.watch(maps[v])
            feats.append(pool(last_pool(maps[v])))
        out = head(feats if len(feats) > 1 else feats[0])
        out = out[output] if isinstance(out, list) else out
    grads = tape.gradient(out, list(maps.values()))
    cams = {}
    for (v, a), g in zip(maps.items(), grads, strict=True):
        weights = tf.reduce_mean(g, axis=(1, 2))
        cams[v] = tf.nn.relu(tf.reduce_sum(a * weights[:, None, None, :], axis=-1))[0].numpy()
    return cams, float(np.asarray(out).reshape(-1)[0])


def shap_cells(
    run: Run,
    head: keras.Model,
    subject_feats: dict[str, np.ndarray],
    mean_feats: dict[str, np.ndarray],
    output: int,
    nsamples: int,
) -> dict[str, np.ndarray]:
    """Shapley values of each view's 7x7 cells; with average pooling, one value per view.

    Args:
        run: the run (views, pooling).
        head: the fold head that held the subject out.
        subject_feats: view -> the subject's features.
        mean_feats: view -> the training fold's mean features (an 'absent' cell takes this value).
        output: index of the explained output.
        nsamples: KernelExplainer coalitions.
    """
    import shap

    views = run.config.view_names
    spatial = run.config.pooling == "flatten"
    cells = GRID * GRID if spatial else 1

    def assemble(mask_rows: np.ndarray) -> list[np.ndarray]:
        batch = []
        for i, v in enumerate(views):
            present = mask_rows[:, i * cells : (i + 1) * cells]
            if spatial:
                keep = np.repeat(present.reshape(-1, GRID, GRID, 1), 512, axis=3).reshape(len(mask_rows), -1)
            else:
                keep = np.repeat(present, subject_feats[v].shape[0], axis=1)
            batch.append(np.where(keep > 0.5, subject_feats[v][None], mean_feats[v][None]).astype(np.float32))
        return batch

    def model_fn(mask_rows: np.ndarray) -> np.ndarray:
        out = head.predict(assemble(mask_rows) if len(views) > 1 else assemble(mask_rows)[0], verbose=0, batch_size=512)
        out = out[output] if isinstance(out, list) else out
        return np.asarray(out).reshape(-1)

    explainer = shap.KernelExplainer(model_fn, np.zeros((1, cells * len(views))))
    values = np.asarray(explainer.shap_values(np.ones((1, cells * len(views))), nsamples=nsamples, silent=True))
    values = values.reshape(-1)[: cells * len(views)]
    return {
        v: values[i * cells : (i + 1) * cells].reshape(GRID, GRID) if spatial else values[i * cells : (i + 1) * cells]
        for i, v in enumerate(views)
    }


@dataclass
class SubjectExplainer:
    """Everything needed to explain one subject with the fold head that held it out."""

    run: Run
    encoder: keras.Model
    head: keras.Model
    images: dict[str, np.ndarray]  # view -> preprocessed image
    subject_feats: dict[str, np.ndarray]
    mean_feats: dict[str, np.ndarray]  # SHAP background: the training fold's mean features
    nsamples: int

    def output(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        """One output's overlay sheet (Grad-CAM, and SHAP with flatten pooling) and its figures."""
        views, name = self.run.config.view_names, self.run.config.outputs[index]
        cams, value = grad_cam(self.run, self.encoder, self.head, self.images, index)
        shap_values = shap_cells(self.run, self.head, self.subject_feats, self.mean_feats, index, self.nsamples)
        cam_scale = max(float(cams[v].max()) for v in views)
        shap_scale = max(float(np.abs(shap_values[v]).max()) for v in views)
        panels = []
        for v in views:
            panels.append(_overlay(self.images[v], cams[v], f"Grad-CAM {v} ({name})", cam_scale))
            if self.run.config.pooling == "flatten":
                title = f"SHAP {v} (red up, blue down)"
                panels.append(_overlay(self.images[v], shap_values[v], title, shap_scale, signed=True))
        figures = {
            "value": value,
            "shap_per_view": {v: float(np.sum(shap_values[v])) for v in views},
            "gradcam": {"peak": {v: float(cams[v].max()) for v in views}, "scale": cam_scale},
        }
        return np.hstack(panels), figures


def explain_subject(
    run_dir: str | Path,
    subject_id: str,
    manifest: str | Path | None = None,
    out_dir: Path | None = None,
    nsamples: int = 400,
) -> dict[str, Any]:
    """Overlays and figures for every output of one subject, explained by the fold that held it out.

    Args:
        run_dir: a finished frozen-backbone run.
        subject_id: the subject to explain.
        manifest: where its images are (default: the run's manifest).
        out_dir: default: <run>/explanations/<subject>.
        nsamples: SHAP coalitions per output.
    """
    run = open_run(run_dir)
    manifest = Path(manifest) if manifest else run.manifest
    if manifest is None:
        raise RunError("the run does not record its manifest; pass --manifest")
    cohort = read_cohort(manifest, run.profiles, False, False, harmonisation=run.config.harmonisation)
    if subject_id not in cohort.ids:
        raise RunError(f"subject {subject_id!r} is not in {manifest}")
    fold = run.fold_of(subject_id)
    encoders = run_encoders(run)  # Grad-CAM needs the float network; SHAP uses the features the head saw
    encoder = encoders.frozen.model
    head = load_head(run.head_path(fold))
    images = {v: cohort.image(subject_id, v) for v in run.config.view_names}
    cache = FeatureCache(run.config.cache_dir, encoders.features)
    train = [s for s in train_ids(run.folds, fold) if s in cohort.ids]
    mean_feats = {
        v: cache.features([cohort.image(s, v) for s in train], [IDENTITY], desc=f"background {v}")[:, 0].mean(axis=0)
        for v in run.config.view_names
    }
    subject_feats = {v: cache.features([images[v]], [IDENTITY])[0, 0] for v in run.config.view_names}

    explainer = SubjectExplainer(run, encoder, head, images, subject_feats, mean_feats, nsamples)
    out_dir = out_dir or run.path / "explanations" / subject_id
    out_dir.mkdir(parents=True, exist_ok=True)
    record = next(s for s in cohort.subjects if s.subject_id == subject_id)
    result: dict[str, Any] = {"subject_id": subject_id, "fold": fold, "pdff": record.pdff, "outputs": {}}
    for index, name in enumerate(run.config.outputs):
        sheet, figures = explainer.output(index)
        path = out_dir / f"{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        result["outputs"][name] = {**figures, "png": str(path)}
    (out_dir / "explanation.json").write_text(json.dumps(result, indent=2))
    return result
