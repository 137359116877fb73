"""The cross-validation engine: subject-level folds, cached frozen features (or fine-tuning), one head per fold.

Frozen backbone (the paper's default): features of every augmented variant come from the cache, so each
fold trains only the small head, over all epochs, in seconds to minutes on a CPU. Fine-tuning bypasses
the cache and trains the VGG19 branches on images.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from clkl.augment import apply_variant
from clkl.encoder import build_encoder, build_vgg19_base, set_trainable
from clkl.head import build_head, compile_head, fit_minmax
from clkl.tf_setup import choose_strategy, keras
from edge_runtime.contracts import INPUT_SHAPE
from trainer.config import TrainConfig
from trainer.dataset import Cohort
from trainer.folds import fold_rows, load_folds, make_folds, save_folds
from trainer.hri_input import with_hri_input
from trainer.kernel_sgd import SgdSettings, train_head
from trainer.progress import EpochBar


@dataclass
class FoldOutcome:
    fold: int
    test_ids: list[str]
    predictions: dict[str, np.ndarray]  # output name -> per test subject (the fold's head: the paper's CV)
    history: dict[str, list[float]]
    seconds: float
    members: list[dict[str, np.ndarray]] = field(default_factory=list)  # the fold's ensemble, its head first


def targets(cohort: Cohort, outputs: tuple[str, ...], fatty_threshold: float) -> dict[str, np.ndarray]:
    pdff = cohort.pdff().astype(np.float32)
    return {o: ((pdff >= fatty_threshold).astype(np.float32) if o == "p_fatty" else pdff) for o in outputs}


def save_head(head: keras.Model, path: Path) -> None:
    """A fold head as HDF5, the format every run so far holds (runs.Run.head_path); tf-keras's advice to move to
    its native format is printed on every save, so it is kept out of every run's output."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file", category=UserWarning)
        head.save(path)


def predict_outputs(model: keras.Model, x: dict[str, np.ndarray], outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A head's outputs for a cohort's subjects, in one direct call. Keras' predict builds a tf.function per
    model, and a run builds a model per fold, so TensorFlow warned of retracing in every run's output."""
    raw = model({k: np.asarray(v, np.float32) for k, v in x.items()}, training=False)
    raw = raw if isinstance(raw, list | tuple) else [raw]
    return {o: np.asarray(r).reshape(-1) for o, r in zip(outputs, raw, strict=True)}


def fit_head_on_features(
    feats: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
    rows: np.ndarray,
    config: TrainConfig,
    seed: int,
    desc: str,
    progress: bool,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Train one head on all augmented variants of the given subjects (variants of both views paired by index).

    Args:
        feats: view -> (subjects, variants, features) cached features.
        y: output name -> one target per subject.
        rows: the training subjects' row indices (test subjects never reach the MinMax fit).
        config: the protocol (epochs, batch size, SGD settings, MinMax floor, outputs).
        seed: the head's initialisation and shuffling seed.
        desc: progress bar label.
        progress: show the epoch bar.
    """
    views, blocks = config.view_names, head_blocks(config)
    n_variants = next(iter(feats.values())).shape[1]
    x_train = np.concatenate([feats[b][rows].reshape(len(rows) * n_variants, -1) for b in blocks], axis=1)
    y_train = {o: np.repeat(t[rows], n_variants) for o, t in y.items()}
    keras.utils.set_random_seed(seed)
    with choose_strategy(config.strategy).scope():
        minmax = fit_minmax(x_train, config.minmax_floor)
        head = build_head(views, feats[views[0]].shape[2], config.outputs, minmax, seed, config.head_scalars)
        compile_head(head, config.outputs, config.learning_rate, config.momentum)
    if config.head_loop == "kernel":
        sgd = SgdSettings(config.n_epochs, config.batch_size, config.learning_rate, config.momentum, seed)
        return head, train_head(head, x_train, y_train, sgd, desc, progress)
    edges = np.cumsum([feats[b].shape[2] for b in blocks])[:-1]
    x_by_view = dict(zip((input_name(b, config) for b in blocks), np.split(x_train, edges, axis=1), strict=True))
    bar = EpochBar(config.n_epochs, desc, progress)
    history = head.fit(
        x_by_view,
        y_train,
        epochs=config.n_epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[bar],
    )
    return head, {k: [float(v) for v in vals] for k, vals in history.history.items()}


def predict_rows(head: keras.Model, feats: dict[str, np.ndarray], rows: np.ndarray, config: TrainConfig):
    """Outputs for the given subjects from their un-augmented image only (variant 0): test folds never see an

    augmented variant, as in the paper.

    Args:
        head: a trained head.
        feats: view -> (subjects, variants, features).
        rows: the subjects to predict.
        config: which views and outputs.
    """
    x = {input_name(b, config): feats[b][rows, 0] for b in head_blocks(config)}
    return predict_outputs(head, x, config.outputs)


def head_blocks(config: TrainConfig) -> tuple[str, ...]:
    """The features dict's blocks a head takes, in input order: each view's, then its one-number inputs."""
    return (*config.view_names, *config.head_scalars)


def input_name(block: str, config: TrainConfig) -> str:
    """The head input a features block feeds."""
    return block if block in config.head_scalars else f"features_{block}"


def finetune_fold(
    cohort: Cohort,
    rows: np.ndarray,
    test_rows: np.ndarray,
    y: dict[str, np.ndarray],
    config: TrainConfig,
    seed: int,
    progress: bool,
) -> tuple[keras.Model, dict[str, np.ndarray], dict[str, list[float]]]:
    """Two VGG19 branches (one per view) trained end to end on images; no cache (the backbone changes).

    Args:
        cohort: the preprocessed images.
        rows: training subjects' row indices.
        test_rows: test subjects' row indices (predicted from their un-augmented images).
        y: output name -> one target per subject.
        config: the protocol, including the fine-tuning depth.
        seed: initialisation and shuffling seed.
        progress: show the epoch bar.
    """
    views = config.view_names
    chosen = config.variant_set
    keras.utils.set_random_seed(seed)
    with choose_strategy(config.strategy).scope():
        encoders = {}
        for v in views:
            base = build_vgg19_base(config.weights, config.seed, name=f"vgg19_{v}")
            encoders[v] = build_encoder(base, config.pooling, name=f"encoder_{v}")
        ids = np.asarray(cohort.ids)
        x_train = {
            f"image_{v}": np.stack([apply_variant(cohort.image(s, v), var) for s in ids[rows] for var in chosen])
            for v in views
        }
        initial = np.concatenate([encoders[v].predict(x_train[f"image_{v}"], verbose=0) for v in views], axis=1)
        minmax = fit_minmax(initial, config.minmax_floor)
        head = build_head(views, initial.shape[1] // len(views), config.outputs, minmax, seed)
        for v in views:
            set_trainable(encoders[v].get_layer(f"vgg19_{v}"), config.finetune)
        images = [keras.Input(INPUT_SHAPE, dtype="uint8", name=f"image_{v}") for v in views]
        outs = head(
            [encoders[v](im) for v, im in zip(views, images, strict=True)]
            if len(views) > 1
            else encoders[views[0]](images[0])
        )
        outs = outs if isinstance(outs, list) else [outs]
        # Re-expose the nested head's outputs under their own names so losses map by name.
        named = [keras.layers.Activation("linear", name=o)(t) for o, t in zip(config.outputs, outs, strict=True)]
        model = keras.Model(images, named, name="clkl_finetuned")
        compile_head(model, config.outputs, config.learning_rate, config.momentum)
    y_train = {o: np.repeat(t[rows], len(chosen)) for o, t in y.items()}
    # The nested head names its outputs; map them onto the wrapper's output names.
    y_fit = dict(zip(model.output_names, [y_train[o] for o in config.outputs], strict=True))
    hist = model.fit(
        x_train,
        y_fit,
        epochs=config.n_epochs,
        batch_size=config.batch_size,
        verbose=0,
        callbacks=[EpochBar(config.n_epochs, "fine-tuning", progress)],
    )
    x_test = {f"image_{v}": np.stack([cohort.image(s, v) for s in ids[test_rows]]) for v in views}
    preds = predict_outputs(model, x_test, config.outputs)
    return model, preds, {k: [float(x) for x in vals] for k, vals in hist.history.items()}


def run_cross_validation(
    cohort: Cohort,
    config: TrainConfig,
    out_dir: Path,
    features: dict[str, np.ndarray] | None,
    folds_file: Path | None = None,
    progress: bool = True,
) -> list[FoldOutcome]:
    """Train and test every fold; writes config, folds, per-fold heads and histories into out_dir.

    Args:
        cohort: the labelled cohort.
        config: the configuration to cross-validate.
        out_dir: the run directory.
        features: view -> (subjects, variants, features) for a frozen backbone; None when fine-tuning.
        folds_file: reuse these folds (another run's folds.json) instead of drawing new ones.
        progress: show progress bars.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save(out_dir / "config.json")
    ids = cohort.ids
    pdff = cohort.pdff()
    if folds_file is not None:
        folds = load_folds(folds_file, ids)
    else:
        folds = make_folds(ids, cohort.vendors(), list(pdff >= config.fatty_threshold), config.folds, config.seed)
    save_folds(out_dir / "folds.json", folds)
    y = targets(cohort, config.outputs, config.fatty_threshold)
    features = with_hri_input(features, cohort, config) if features is not None else None

    outcomes = []
    progress_bar = {"total": len(folds), "desc": "folds", "unit": "fold", "disable": not progress}
    for k, rows, test_rows in tqdm(fold_rows(folds, ids), **progress_bar):
        started = time.perf_counter()
        fold_dir = out_dir / f"fold{k}"
        fold_dir.mkdir(exist_ok=True)
        members: list[dict[str, np.ndarray]] = []
        if config.finetune is None:
            head, history = fit_head_on_features(
                features, y, rows, config, config.seed + k, f"fold {k + 1}/{len(folds)}", progress
            )
            preds = predict_rows(head, features, test_rows, config)
            save_head(head, fold_dir / "head.h5")
            bagged = bagged_heads(features, y, rows, config, (config.seed + k, f"fold {k + 1} bag"), progress)
            members = [preds, *(predict_rows(h, features, test_rows, config) for h in bagged)]
        else:
            model, preds, history = finetune_fold(cohort, rows, test_rows, y, config, config.seed + k, progress)
            model.save_weights(fold_dir / "model.weights.h5")
        (fold_dir / "history.json").write_text(json.dumps(history))
        outcomes.append(FoldOutcome(k, list(folds[k]), preds, history, time.perf_counter() - started, members))
    return outcomes


def bag_rows(rows: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A subsample of the training subjects (rows index subjects; their variants travel with them)."""
    rng = np.random.default_rng([seed, 0xBA6])
    keep = max(2, round(share * len(rows)))
    return np.sort(rng.choice(rows, size=keep, replace=False))


def bagged_heads(
    features: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
    rows: np.ndarray,
    config: TrainConfig,
    naming: tuple[int, str],
    progress: bool,
) -> list[keras.Model]:
    """config.ensemble heads, each trained like the main one on its own subsample of the training subjects.

    Args:
        features: view -> (subjects, variants, features).
        y: output name -> one target per subject.
        rows: the training subjects' rows (no other subject reaches any bag).
        config: the protocol; ensemble and ensemble_subsample set the bag.
        naming: the main head's seed (each bag member takes its own from it) and the progress label.
        progress: show the epoch bars.
    """
    seed, label = naming
    heads = []
    for m in range(config.ensemble):
        member_seed = seed * 100 + m + 1
        subset = bag_rows(rows, config.ensemble_subsample, member_seed)
        head, _ = fit_head_on_features(features, y, subset, config, member_seed, f"{label} {m + 1}", progress)
        heads.append(head)
    return heads
