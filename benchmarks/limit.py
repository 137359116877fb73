"""`benchmarks limit`: this machine's own int8 ceiling, and the encoder's share of it.

The ceiling is one large int8 3x3 convolution in the same interpreter (ai-edge-litert, XNNPACK), measured in
GMAC/s. The encoder's throughput is its multiply-accumulates per invoke (summed over its convolutions)
divided by its p50 invoke time.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from benchmarks.common import machine, summarise, time_calls, write_reports
from benchmarks.models import float_encoder, tflite_runner
from edge_runtime.model.bundle import load_bundle


def conv_macs(model) -> int:
    total = 0
    for layer in model.submodules if hasattr(model, "submodules") else []:
        if layer.__class__.__name__ == "Conv2D":
            _, h, w, cout = layer.output.shape
            kh, kw, cin, _ = layer.kernel.shape
            total += int(h * w * cout * kh * kw * cin)
    return total


def big_conv_model(size: int, channels: int) -> bytes:
    from calibration.convert import quantizing_converter
    from clkl.tf_setup import keras, tf

    inp = keras.Input((size, size, channels))
    out = keras.layers.Conv2D(channels, 3, padding="same", activation="relu")(inp)
    rng = np.random.default_rng(0)
    samples = [rng.random((size, size, channels), dtype=np.float32) for _ in range(8)]
    return quantizing_converter(keras.Model(inp, out), samples, tf.int8, tf.int8).convert()


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(file_okay=False, exists=True), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/limit")
@click.option("--invokes", type=click.IntRange(10), default=200, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
def main(bundle_dir: str, out_dir: str, invokes: int, threads: int) -> None:
    """int8 GMAC/s: one large convolution (the ceiling) vs the bundle's encoder."""

    bundle = load_bundle(bundle_dir)
    size, channels = 56, 256
    conv_gmac = size * size * channels * channels * 9 / 1e9
    conv_ms = summarise(time_calls(tflite_runner(big_conv_model(size, channels), threads), invokes))
    encoder_macs = conv_macs(float_encoder(bundle.meta)) / 1e9
    model = (Path(bundle_dir) / bundle.meta.files.encoder["liver"]).read_bytes()
    enc_ms = summarise(time_calls(tflite_runner(model, threads), invokes))
    ceiling = conv_gmac / (conv_ms["p50"] / 1000)
    achieved = encoder_macs / (enc_ms["p50"] / 1000)
    result = {
        "suite": "limit",
        "machine": machine(),
        "threads": threads,
        "bundle_sha": bundle.sha,
        "ceiling": {
            "conv": f"{size}x{size}x{channels} -> {channels}, 3x3",
            "gmac": conv_gmac,
            "latency_ms": conv_ms,
            "gmac_per_s": ceiling,
        },
        "encoder": {"gmac": encoder_macs, "latency_ms": enc_ms, "gmac_per_s": achieved},
        "fraction_of_ceiling": achieved / ceiling,
        "bar_min": 0.85,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    md = (
        f"# int8 ceiling ({threads} threads)\n\n| | GMAC/invoke | p50 ms | GMAC/s |\n| --- | --- | --- | --- |\n"
        f"| one large int8 conv | {conv_gmac:.2f} | {conv_ms['p50']:.2f} | {ceiling:.0f} |\n"
        f"| encoder (int8) | {encoder_macs:.2f} | {enc_ms['p50']:.2f} | {achieved:.0f} |\n\n"
        f"Encoder reaches **{achieved / ceiling:.0%}** of the machine's int8 ceiling (bar: 85 %).\n"
    )
    write_reports(Path(out_dir), "limit", result, md)
    click.echo(md)


if __name__ == "__main__":
    main()
