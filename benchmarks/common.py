"""Shared by the suites: timing statistics, machine description, and the JSON + Markdown + PNG reports."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import psutil


def time_calls(fn: Callable[[], Any], invokes: int, warmup: int = 5, max_seconds: float | None = None) -> np.ndarray:
    """Milliseconds per call, warm-up discarded; stops early (and says so by the count) at max_seconds."""
    for _ in range(warmup):
        fn()
    samples = []
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    for _ in range(invokes):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
        if deadline is not None and time.perf_counter() > deadline:
            break
    return np.asarray(samples)


def summarise(ms: np.ndarray) -> dict[str, float]:
    """Mean, spread and percentiles; flatness = p90 - p10 and tail = p99.9 - p95, as flow benchmarks report."""
    p = {q: float(np.percentile(ms, q)) for q in (10, 50, 90, 95, 99, 99.9)}
    return {
        "n": len(ms),
        "mean": float(ms.mean()),
        "std": float(ms.std()),
        "p50": p[50],
        "p90": p[90],
        "p99": p[99],
        "p99_9": p[99.9],
        "max": float(ms.max()),
        "flatness_p90_p10": p[90] - p[10],
        "tail_p99_9_p95": p[99.9] - p[95],
    }


def machine() -> dict[str, Any]:
    """CPU model, cores, SIMD flags that matter for int8 kernels, and library versions."""
    cpu, flags = platform.processor() or platform.machine(), []
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
        flag_line = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
        flags = sorted(f for f in flag_line if f.startswith(("avx", "fma", "sse4")) or "vnni" in f)
    versions = {}
    for dist in (
        "numpy",
        "ai-edge-litert",
        "tflite-runtime",
        "tensorflow",
        "tf-keras",
        "pyzmq",
        "opencv-python-headless",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "flags": flags,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
    }


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def write_reports(out: Path, name: str, result: dict[str, Any], markdown: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=float))
    (out / f"{name}.md").write_text(markdown)


def cdf_plot(path: Path, series: dict[str, np.ndarray], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, ms in series.items():
        xs = np.sort(ms)
        ax.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=label)
    ax.set(xscale="log", xlabel="latency (ms, log)", ylabel="fraction of calls", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bars_plot(path: Path, stages: dict[str, float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    ax.barh(list(stages), list(stages.values()), color="#4c78a8")
    ax.set(xlabel="p50 latency (ms)", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- DICOM peers (dcmtk) ------------------------------------------------------------------------------------------
STORESCU_PROPOSE = {  # how storescu is told to send a file in its own transfer syntax (it proposes uncompressed else)
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


def storescu(
    files: list[Path], port: int, calling: str = "SCANNER", called: str = "FATTYLIVER", timeout: float = 120
) -> list[str]:
    """dcmtk's storescu sends the files as a scanner would, one association per transfer syntax (in file order);
    returns what each run printed on failure (empty when every store succeeded)."""
    import subprocess

    import pydicom

    groups: dict[str, list[Path]] = {}
    for path in files:
        syntax = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        groups.setdefault(syntax, []).append(path)
    failures = []
    for syntax, paths in groups.items():
        option = STORESCU_PROPOSE.get(syntax, "-xe")
        args = ["storescu", option, "-aet", calling, "-aec", called, "127.0.0.1", str(port), *map(str, paths)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            failures.append(f"{syntax}: {done.stderr.strip()[-400:]}")
    return failures
