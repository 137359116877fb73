"""Trainer epoch: head over cached frozen features vs the same epoch running the VGG19 backbone.

Same data (a small phantom cohort, light augmentation, both views), same head, same batch size, one run.
The cached epoch is what the frozen-backbone protocol does 1000 times per fold; the backbone epoch is what
it would cost without the cache (forward pass of both VGG19 branches for every augmented image).
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import click
import numpy as np


@click.command()
@click.option("--subjects", type=click.IntRange(4), default=8, show_default=True)
@click.option("--augment", type=click.Choice(["none", "light", "paper"]), default="light", show_default=True)
@click.option("--cached-epochs", type=click.IntRange(3), default=20, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/trainer_epoch")
def main(subjects: int, augment: str, cached_epochs: int, out_dir: str) -> None:
    from clkl.augment import apply_variant, variants
    from clkl.head import build_head, compile_head, fit_minmax
    from clkl.tf_setup import keras, tf
    from edge_runtime.contracts import INPUT_SHAPE
    from phantom.cohort import generate_cohort
    from trainer.config import TrainConfig
    from trainer.dataset import read_cohort
    from trainer.extraction import extract, frozen_encoder
    from trainer.features import FloatEncoder

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        generate_cohort(tmp, subjects, seed=1, with_masks=False)
        config = TrainConfig(weights="none", augment=augment, cache_dir=str(Path(tmp) / "cache"), task="classify")
        cohort = read_cohort(Path(tmp) / "manifest.csv", progress=False, harmonisation=config.harmonisation)
        started = time.perf_counter()
        frozen = frozen_encoder(config)
        feats = extract(cohort, config, FloatEncoder(frozen.model, frozen.weights_id, config.pooling), False)
        encoder = frozen.model
        extraction_s = time.perf_counter() - started

        views = config.view_names
        n_var = feats[views[0]].shape[1]
        x = {f"features_{v}": feats[v].reshape(-1, feats[v].shape[2]) for v in views}
        y = np.repeat((cohort.pdff() >= 5).astype(np.float32), n_var)
        head = build_head(
            views, feats[views[0]].shape[2], ("p_fatty",), fit_minmax(np.concatenate(list(x.values()), axis=1)), 0
        )
        compile_head(head, ("p_fatty",), 1e-4, 0.9)
        head.fit(x, y, epochs=1, batch_size=64, verbose=0)  # warm-up (graph tracing)
        started = time.perf_counter()
        head.fit(x, y, epochs=cached_epochs, batch_size=64, verbose=0)
        cached_epoch_s = (time.perf_counter() - started) / cached_epochs

        # The same epoch without the cache: the same frozen VGG19 runs on every augmented image of both views.
        images = [keras.Input(INPUT_SHAPE, dtype="uint8", name=f"image_{v}") for v in views]
        p_fatty = keras.layers.Activation("linear", name="p_fatty")(head([encoder(im) for im in images]))
        model = keras.Model(images, p_fatty)
        compile_head(model, ("p_fatty",), 1e-4, 0.9)
        chosen = variants(augment)
        x_img = {
            f"image_{v}": np.stack([apply_variant(cohort.image(s, v), var) for s in cohort.ids for var in chosen])
            for v in views
        }
        model.fit({k: a[:2] for k, a in x_img.items()}, y[:2], epochs=1, batch_size=64, verbose=0)  # warm-up
        started = time.perf_counter()
        model.fit(x_img, y, epochs=1, batch_size=64, verbose=0)
        backbone_epoch_s = time.perf_counter() - started

    result = {
        "samples_per_epoch": len(y),
        "views": list(views),
        "augment": augment,
        "feature_extraction_s": extraction_s,
        "extraction_per_image_s": extraction_s / (len(cohort.ids) * len(views) * n_var),
        "cached_epoch_s": cached_epoch_s,
        "backbone_epoch_s": backbone_epoch_s,
        "speedup": backbone_epoch_s / cached_epoch_s,
        "machine": {"cpu": platform.processor() or platform.machine(), "tensorflow": tf.__version__},
    }
    (out / "trainer_epoch.json").write_text(json.dumps(result, indent=2))
    md = (
        "# Trainer epoch: cached features vs running the backbone\n\n"
        f"{result['samples_per_epoch']} samples/epoch ({subjects} subjects x {n_var} variants, both views)\n\n"
        "| epoch | seconds |\n| --- | --- |\n"
        f"| head over cached features | {cached_epoch_s:.4f} |\n| backbone + head | {backbone_epoch_s:.2f} |\n\n"
        f"**speed-up {result['speedup']:.0f}x**; one-time extraction {extraction_s:.1f} s "
        f"({result['extraction_per_image_s']:.3f} s per image)\n"
    )
    (out / "trainer_epoch.md").write_text(md)
    click.echo(md)


if __name__ == "__main__":
    main()
