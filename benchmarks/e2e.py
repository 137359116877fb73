"""`benchmarks e2e`: the runtime under a live phantom stream, frame published -> result published.

Each run starts a fresh server in this process and the phantom scanner as a separate process on loopback,
and stops after the requested number of results. Reported: per-stage and end-to-end percentiles, frames
received/dropped/rejected, CPU and RSS over time, and the ratios the performance bars use (end-to-end p50 vs
the encoder's raw invoke p50 measured in the same run; vs the naive float two-view forward pass per frame).
``--soak MINUTES`` runs once at the given rate for that long and reports RSS growth and tail latency.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import psutil
import zmq

from benchmarks.common import bars_plot, cdf_plot, machine, summarise, time_calls, write_reports
from edge_runtime.config import load_config, merge
from edge_runtime.contracts import INPUT_SHAPE, BundleMeta, Stage
from edge_runtime.model.bundle import load_bundle
from edge_runtime.model.served import ServedModel
from edge_runtime.scanners.profiles import default_profiles
from edge_runtime.server import EdgeServer
from edge_runtime.tools.ports import free_port


def _naive_two_view_ms(bundle_meta: BundleMeta, calls: int = 15) -> float | None:
    """The naive design: a float two-view VGG19 forward pass (tf.function) for every frame."""
    try:
        from benchmarks.models import float_encoder
        from clkl.tf_setup import tf
    except ImportError:
        return None
    encoder = float_encoder(bundle_meta)
    fn = tf.function(lambda x: encoder(x, training=False))
    x = tf.constant(np.random.default_rng(0).integers(0, 256, (2, *INPUT_SHAPE), dtype=np.uint8))
    return float(np.percentile(time_calls(lambda: fn(x).numpy(), calls, warmup=2), 50))


def one_run(
    bundle_dir: str,
    fps: float,
    results: int | None,
    seconds: float | None,
    threads: int,
    sessions: int,
    switch_every: float,
    encoding: str,
    runtime: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One fresh server and stream; runtime overrides edge.toml tables (e.g. transport.results, thumbnails)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        settings = {
            "model": {"bundle": bundle_dir, "threads": threads},
            "transport": {"frames": f"tcp://127.0.0.1:{port}", "results": "tcp://127.0.0.1:*"},
            "audit": {"log": Path(tmp) / "audit.jsonl"},
            "metrics": {"period_s": 5.0},
        }
        config = load_config(None, merge(settings, runtime or {}))
        model = ServedModel.prepared(load_bundle(bundle_dir, num_threads=threads), default_profiles(), config)
        server = EdgeServer(config, model, zmq.Context())
        server.start()
        duration = seconds if seconds else 3600
        stream = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "phantom.cli",
                "stream",
                "--frames",
                f"tcp://127.0.0.1:{port}",
                "--fps",
                str(fps),
                "--sessions",
                str(sessions),
                "--switch-every",
                str(switch_every),
                "--duration",
                str(duration + 30),
                "--encoding",
                encoding,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        me, peer = psutil.Process(), psutil.Process(stream.pid)
        samples: list[dict[str, float]] = []
        stop = threading.Event()

        def sample() -> None:
            me.cpu_percent(), peer.cpu_percent()
            while not stop.wait(1.0):
                with_peer = peer.is_running()
                samples.append(
                    {
                        "t": time.time(),
                        "rss_mb": me.memory_info().rss / 2**20,
                        "cpu_runtime": me.cpu_percent(),
                        "cpu_stream": peer.cpu_percent() if with_peer else 0,
                    }
                )

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # Wait for the stream's pre-rendering, then measure from the first result on.
        while server.stats.counters["results_published"] == 0 and stream.poll() is None:
            time.sleep(0.1)
        t0 = time.time()
        base = server.stats.snapshot()
        for window in server.stats.latency.values():  # measure the steady state only
            window.samples.clear()
        while stream.poll() is None:
            done = server.stats.counters["results_published"] - base["counters"].get("results_published", 0)
            if (results and done >= results) or (seconds and time.time() - t0 >= seconds):
                break
            time.sleep(0.2)
        elapsed = time.time() - t0
        snap = server.stats.snapshot()
        stream.terminate()
        stream.wait(10)
        stop.set()
        server.stop()
    counters = {k: v - base["counters"].get(k, 0) for k, v in snap["counters"].items()}
    e2e = np.fromiter(server.stats.latency["end_to_end"].samples, float)
    return {
        "seconds": elapsed,
        "counters": counters,
        "rejected": snap["rejected"],
        "latency_ms": snap["latency_ms"],
        "end_to_end_ms": e2e,
        "results_per_s": counters.get("results_published", 0) / elapsed,
        "frames_per_s_in": counters.get("frames_received", 0) / elapsed,
        "samples": samples,
    }


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(file_okay=False, exists=True), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/e2e")
@click.option(
    "--fps",
    type=click.FloatRange(0.5, 240),
    default=8,
    show_default=True,
    help="Input frame rate; below the encoder's capacity gives the per-new-frame latency.",
)
@click.option("--results", "n_results", type=click.IntRange(10), default=1000, show_default=True)
@click.option("--runs", type=click.IntRange(1), default=3, show_default=True)
@click.option("--soak", "soak_minutes", type=click.FloatRange(0.1), default=None, help="One long run of this length.")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
@click.option("--sessions", type=click.IntRange(1), default=2, show_default=True)
@click.option("--switch-every", type=click.FloatRange(0.1), default=2.0, show_default=True)
@click.option("--encoding", type=click.Choice(["raw", "png", "jpeg"]), default="raw", show_default=True)
def main(
    bundle_dir: str,
    out_dir: str,
    fps: float,
    n_results: int,
    runs: int,
    soak_minutes: float | None,
    threads: int,
    sessions: int,
    switch_every: float,
    encoding: str,
) -> None:
    """End-to-end latency of the runtime under a phantom stream (3 runs, or one soak)."""
    bundle = load_bundle(bundle_dir, num_threads=threads)
    image = np.random.default_rng(0).integers(0, 256, INPUT_SHAPE, dtype=np.uint8)
    raw = bundle.encoders["liver"]
    raw.interpreter.set_tensor(raw.input_index, image[None])
    invoke_p50 = float(np.percentile(time_calls(raw.interpreter.invoke, 100), 50))
    naive = _naive_two_view_ms(bundle.meta)
    outs = []
    n_runs = 1 if soak_minutes else runs
    for i in range(n_runs):
        click.echo(
            f"run {i + 1}/{n_runs}: {fps:g} frames/s, "
            + (f"{soak_minutes:g} min soak" if soak_minutes else f"{n_results} results"),
            err=True,
        )
        outs.append(
            one_run(
                bundle_dir,
                fps,
                None if soak_minutes else n_results,
                soak_minutes * 60 if soak_minutes else None,
                threads,
                sessions,
                switch_every,
                encoding,
            )
        )
    table, series = [], {}
    for i, r in enumerate(outs):
        e2e = summarise(r["end_to_end_ms"])
        series[f"run {i + 1}"] = r["end_to_end_ms"]
        rss = [s["rss_mb"] for s in r["samples"]]
        warm = rss[len(rss) // 10 :] or rss
        minute = max(1, min(60, len(warm) // 4))
        growth = (np.mean(warm[-minute:]) - np.mean(warm[:minute])) / np.mean(warm[:minute]) if warm else 0.0
        r["summary"] = {
            "end_to_end": e2e,
            "rss_growth": float(growth),
            "rss_mb_max": max(rss) if rss else None,
            "p99_over_p50": e2e["p99"] / e2e["p50"],
            "e2e_p50_over_invoke_p50": e2e["p50"] / invoke_p50,
            "naive_over_e2e_p50": (naive / e2e["p50"]) if naive else None,
            "cpu_runtime_mean": float(np.mean([s["cpu_runtime"] for s in r["samples"]] or [0])),
            "cpu_stream_mean": float(np.mean([s["cpu_stream"] for s in r["samples"]] or [0])),
        }
        c = r["counters"]
        table.append(
            f"| {i + 1} | {c.get('results_published', 0)} | {r['frames_per_s_in']:.1f} | "
            f"{c.get('frames_dropped_stale', 0)} | {sum(r['rejected'].values())} | {e2e['p50']:.1f} | "
            f"{e2e['p90']:.1f} | {e2e['p99']:.1f} | {e2e['p99_9']:.1f} | {e2e['max']:.1f} | "
            f"{r['summary']['e2e_p50_over_invoke_p50']:.2f} | {r['summary']['p99_over_p50']:.2f} | "
            f"{growth:+.1%} |"
        )
    stages = {s: outs[-1]["latency_ms"][s].get("p50", 0.0) for s in map(str, Stage)}
    report = {
        "suite": "e2e",
        "machine": machine(),
        "bundle_sha": bundle.sha,
        "fps": fps,
        "threads": threads,
        "encoding": encoding,
        "encoder_invoke_p50_ms": invoke_p50,
        "naive_two_view_float_ms": naive,
        "runs": [{k: v for k, v in r.items() if k != "end_to_end_ms"} for r in outs],
        "bars": {
            "e2e_p50_over_invoke_max": 1.25,
            "naive_over_e2e_min": 6,
            "p99_over_p50_max": 2,
            "rss_growth_max": 0.05,
        },
    }
    md = "\n".join(
        [
            f"# Runtime end to end ({fps:g} frames/s in, {threads} threads, {encoding} frames)",
            "",
            f"Encoder raw invoke p50 {invoke_p50:.1f} ms; naive float two-view pass per frame "
            + (f"{naive:.1f} ms" if naive else "n/a (no TensorFlow)"),
            "",
            "| run | results | frames/s in | dropped stale | rejected | e2e p50 | p90 | p99 | p99.9 | max | "
            "p50/invoke | p99/p50 | RSS growth |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            *table,
            "",
            "Stage p50 (ms), last run: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()),
            "",
            f"naive / e2e p50: {outs[-1]['summary']['naive_over_e2e_p50']:.1f}x" if naive else "",
            "",
        ]
    )
    write_reports(Path(out_dir), "e2e", report, md)
    cdf_plot(Path(out_dir) / "e2e_cdf.png", series, "End-to-end latency per result")
    bars_plot(Path(out_dir) / "e2e_stages.png", stages, "Per-stage p50")
    click.echo(md)


if __name__ == "__main__":
    main()
