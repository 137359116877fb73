"""`benchmarks latency`: the encoder of one bundle on this machine, every way it can run, in one run.

Variants: Keras float predict, Keras float under tf.function (the fastest float path), float TFLite and int8
TFLite in ai-edge-litert, and tflite-runtime when installed; TFLite variants at each thread count. The
float variants use the bundle's architecture (VGG19 encoder, same pooling) with random weights: latency does
not depend on weight values, and the benchmark then needs neither the run nor a weights download.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import cdf_plot, machine, rss_mb, summarise, time_calls, write_reports
from benchmarks.models import float_encoder, tflite_runner
from edge_runtime.contracts import INPUT_SHAPE
from edge_runtime.model.bundle import load_bundle


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(file_okay=False, exists=True), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/latency")
@click.option("--invokes", type=click.IntRange(10), default=1000, show_default=True)
@click.option("--threads", "thread_list", default="1,2", show_default=True, help="Comma-separated thread counts.")
@click.option(
    "--max-seconds",
    type=click.FloatRange(1),
    default=180,
    show_default=True,
    help="Cap per variant; the report states the number of invokes actually timed.",
)
@click.option("--no-tensorflow", is_flag=True, help="Skip the Keras and float-TFLite variants.")
def main(bundle_dir: str, out_dir: str, invokes: int, thread_list: str, max_seconds: float, no_tensorflow: bool):
    """Encoder latency table: Keras float, tf.function float, float TFLite, int8 TFLite (and tflite-runtime)."""
    out = Path(out_dir)
    bundle = load_bundle(bundle_dir)
    meta = bundle.meta
    threads = [int(t) for t in thread_list.split(",") if t.strip()]
    int8_model = (Path(bundle_dir) / meta.files.encoder["liver"]).read_bytes()
    image = np.random.default_rng(0).integers(0, 256, (1, *INPUT_SHAPE), dtype=np.uint8)
    results: dict[str, dict[str, Any]] = {}
    series: dict[str, np.ndarray] = {}
    sizes = {"int8 tflite": len(int8_model)}

    def record(name: str, fn, size_before: float) -> None:
        ms = time_calls(fn, invokes, max_seconds=max_seconds)
        results[name] = {**summarise(ms), "rss_growth_mb": rss_mb() - size_before}
        series[name] = ms
        click.echo(
            f"{name:<34} p50 {results[name]['p50']:8.1f} ms  p99 {results[name]['p99']:8.1f}  n={results[name]['n']}",
            err=True,
        )

    if not no_tensorflow:
        from clkl.tf_setup import tf

        rss0 = rss_mb()
        encoder = float_encoder(meta)
        record("keras float predict", lambda: encoder.predict(image, verbose=0), rss0)
        fn = tf.function(lambda x: encoder(x, training=False))
        x = tf.constant(image)
        record("keras float tf.function", lambda: fn(x).numpy(), rss0)
        from calibration.convert import convert_encoder

        float_model = convert_encoder(encoder, None, int8=False)
        sizes["float tflite"] = len(float_model)
        for t in threads:
            rss0 = rss_mb()
            record(f"float tflite litert {t}t", tflite_runner(float_model, t), rss0)
    for t in threads:
        rss0 = rss_mb()
        record(f"int8 tflite litert {t}t", tflite_runner(int8_model, t), rss0)
    try:
        import tflite_runtime  # noqa: F401

        for t in threads:
            rss0 = rss_mb()
            record(f"int8 tflite-runtime {t}t", tflite_runner(int8_model, t, "tflite_runtime"), rss0)
    except ImportError:
        results["tflite-runtime"] = {"skipped": "not installed (needs numpy<2; ai-edge-litert is the interpreter)"}

    best_int8 = min((r["p50"] for k, r in results.items() if k.startswith("int8 tflite litert")), default=None)
    ratios = {}
    if "keras float predict" in results and best_int8:
        ratios = {
            "int8_vs_keras_predict": results["keras float predict"]["p50"] / best_int8,
            "int8_vs_tf_function": results["keras float tf.function"]["p50"] / best_int8,
            "int8_vs_float_tflite": min(r["p50"] for k, r in results.items() if k.startswith("float tflite"))
            / best_int8,
            "int8_size_vs_float": sizes["int8 tflite"] / sizes["float tflite"],
        }
    report = {
        "suite": "latency",
        "bundle": {"path": bundle_dir, "sha": bundle.sha, "name": bundle.name},
        "machine": machine(),
        "invokes": invokes,
        "variants": results,
        "sizes_bytes": sizes,
        "ratios": ratios,
        "bars": {"int8_vs_tf_function_min": 3.5, "int8_vs_float_tflite_min": 4.0},
        "peak_rss_mb": __import__("resource").getrusage(__import__("resource").RUSAGE_SELF).ru_maxrss / 1024,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    lines = [
        f"# Encoder latency ({bundle.name}, sha {bundle.sha})",
        "",
        f"{report['machine']['cpu']}, {report['machine']['cores']} cores",
        "",
        "| variant | n | mean | p50 | p90 | p99 | p99.9 | max | flatness p90-p10 | tail p99.9-p95 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        if "p50" in r:
            lines.append(
                f"| {name} | {r['n']} | {r['mean']:.1f} | {r['p50']:.1f} | {r['p90']:.1f} | {r['p99']:.1f} | "
                f"{r['p99_9']:.1f} | {r['max']:.1f} | {r['flatness_p90_p10']:.1f} | "
                f"{r['tail_p99_9_p95']:.1f} |"
            )
        else:
            lines.append(f"| {name} | {r['skipped']} |")
    lines += [
        "",
        "Ratios (p50, same run): " + json.dumps({k: round(v, 2) for k, v in ratios.items()}),
        f"Sizes: {sizes}",
        "",
    ]
    write_reports(out, "latency", report, "\n".join(lines))
    cdf_plot(out / "latency_cdf.png", series, "Encoder latency CDF")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
