"""`benchmarks display-load`: the bedside page under load, and what it costs the runtime.

1. Memory: a stand-in runtime publishes 4 exams at 10 results/s each (plus thumbnails, heartbeats and metrics)
   for ``--minutes`` to a real `edge-runtime display` process with a headless Chromium following the page.
   The display's RSS is sampled every 5 s; growth is measured after a 30 s warm-up.
2. Cost to `serve`: the runtime under a phantom stream (thumbnails on), end-to-end p50 without and with the
   display and its browser attached, in the same run.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import psutil
import zmq

from benchmarks.common import machine, summarise, write_reports
from benchmarks.e2e import one_run
from edge_runtime.contracts import (
    INPUT_SHAPE,
    TOPIC_HEARTBEAT,
    TOPIC_RESULT,
    TOPIC_THUMBNAIL,
    ExamEstimate,
    FrameRef,
    HeartbeatMessage,
    ModelInfo,
    ResultMessage,
    ThumbnailMessage,
)
from edge_runtime.display.browser import headless_chromium
from edge_runtime.sinks.thumbnails import thumbnail_jpeg
from edge_runtime.tools.ports import free_port
from edge_runtime.wire.protocol import message_parts

MODEL = ModelInfo(name="load", version="0.0.0", sha="0" * 16)
WARM_UP_S = 30.0


def start_display(results: str, port: int) -> tuple[subprocess.Popen, Any]:
    """`edge-runtime display` as its own process, and a headless Chromium on its page."""
    command = [sys.executable, "-m", "edge_runtime.cli", "display", "--results", results]
    display = subprocess.Popen([*command, "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL)
    time.sleep(3.0)
    browser = headless_chromium()
    browser.get(f"http://127.0.0.1:{port}/")
    return display, browser


def _result(session: str, i: int, now: float) -> ResultMessage:
    pdff = 3.0 + 6.0 * (session.endswith("1") or session.endswith("3")) + np.sin(i / 7)
    exam = ExamEstimate(call="normal", p_fatty=0.2, pdff=pdff, n_pairs=min(i, 30), calibrated=True, stable_since=now)
    ref = FrameRef(seq=i, ts=now)
    return ResultMessage(
        session=session,
        trigger="liver",
        frames={"liver": ref, "kidney_liver": ref},
        p_fatty=0.3,
        fatty=False,
        threshold=0.5,
        pdff=float(pdff),
        model=MODEL,
        latency_ms={"encode": 20.0, "head": 1.0, "end_to_end": 25.0},
        exam=exam,
    )


def publish_load(pub: zmq.Socket, sessions: int, rate: float, seconds: float, on_tick) -> int:
    """Results at rate per session, one thumbnail pair per session per second, heartbeats every second."""
    jpeg = base64.b64encode(thumbnail_jpeg(np.random.default_rng(0).integers(0, 255, INPUT_SHAPE, np.uint8)))
    started, sent, next_second = time.monotonic(), 0, 0.0
    names = [f"exam-load-{k}" for k in range(sessions)]
    while (elapsed := time.monotonic() - started) < seconds:
        now = time.time()
        for name in names:
            pub.send_multipart(message_parts(TOPIC_RESULT, _result(name, sent, now)))
        if elapsed >= next_second:
            next_second += 1.0
            beat = HeartbeatMessage(
                ts=now, uptime_s=elapsed, model=MODEL, sessions=sessions, pending=0, calibrated=True, validation="x"
            )
            pub.send_multipart(message_parts(TOPIC_HEARTBEAT, beat))
            for name in names:
                for view in ("liver", "kidney_liver"):
                    thumb = ThumbnailMessage(session=name, view=view, seq=sent, ts=now, jpeg=jpeg.decode())
                    pub.send_multipart(message_parts(TOPIC_THUMBNAIL, thumb))
            on_tick(elapsed)
        sent += 1
        time.sleep(max(0.0, started + sent / rate - time.monotonic()))
    return sent * sessions


def memory_phase(sessions: int, rate: float, minutes: float) -> dict[str, Any]:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    port = free_port()
    pub.bind(f"tcp://127.0.0.1:{port}")
    display, browser = start_display(f"tcp://127.0.0.1:{port}", free_port())
    proc, samples = psutil.Process(display.pid), []

    def sample(elapsed: float) -> None:
        if int(elapsed) % 5 == 0:
            samples.append({"t": elapsed, "rss_mb": proc.memory_info().rss / 2**20, "cpu": proc.cpu_percent()})

    try:
        results = publish_load(pub, sessions, rate, minutes * 60, sample)
        cards = len(browser.find_elements("css selector", ".card"))
    finally:
        browser.quit()
        display.terminate()
        display.wait(10)
        pub.close(linger=0)
        ctx.destroy(linger=0)
    steady = [s["rss_mb"] for s in samples if s["t"] >= WARM_UP_S]
    return {
        "results_published": results,
        "cards_on_page": cards,
        "rss_mb_after_warm_up": steady[0],
        "rss_mb_end": steady[-1],
        "rss_growth_pct": 100 * (steady[-1] - steady[0]) / steady[0],
        "display_cpu_pct_mean": float(np.mean([s["cpu"] for s in samples[1:]])),
        "samples": samples,
    }


def serve_phase(bundle: str, fps: float, seconds: float) -> dict[str, Any]:
    """serve's end-to-end latency without, then with, the display and a browser following it."""
    out = {}
    for attached in (False, True):
        results = f"tcp://127.0.0.1:{free_port()}"
        display = browser = None
        if attached:
            display, browser = start_display(results, free_port())
        try:
            run = one_run(
                bundle,
                fps,
                None,
                seconds,
                2,
                4,
                2.0,
                "raw",
                {"transport": {"results": results}, "thumbnails": {"enabled": True}},
            )
        finally:
            if browser is not None:
                browser.quit()
            if display is not None:
                display.terminate()
                display.wait(10)
        out["with_display" if attached else "without_display"] = summarise(run["end_to_end_ms"])
    return out


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--minutes", type=click.FloatRange(1), default=5, show_default=True)
@click.option("--sessions", type=click.IntRange(1), default=4, show_default=True)
@click.option("--rate", type=click.FloatRange(0.5), default=10, show_default=True, help="Results/s per session.")
@click.option("--serve-seconds", type=click.FloatRange(10), default=45, show_default=True)
@click.option("--fps", type=click.FloatRange(1), default=8, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/display_load")
def main(bundle_dir: str, minutes: float, sessions: int, rate: float, serve_seconds: float, fps: float, out_dir: str):
    """Display memory under load, and serve's latency with and without the display attached."""
    result = {"machine": machine(), "sessions": sessions, "rate_per_session": rate, "minutes": minutes}
    result["serve"] = serve_phase(bundle_dir, fps, serve_seconds)
    result["memory"] = memory_phase(sessions, rate, minutes)
    write_reports(Path(out_dir), "display_load", result, markdown(result))
    click.echo(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    m, s, cpu = r["memory"], r["serve"], r["machine"]
    return "\n".join(
        [
            "# The bedside display under load (display-load)",
            "",
            f"Machine: {cpu['cpu']}, flags {' '.join(cpu['flags'])}.",
            "",
            f"- {r['sessions']} exams at {r['rate_per_session']:g} results/s each for {r['minutes']:g} min "
            f"({m['results_published']} results, thumbnails every second, a headless Chromium following): display "
            f"RSS {m['rss_mb_after_warm_up']:.1f} MB after {WARM_UP_S:.0f} s -> {m['rss_mb_end']:.1f} MB at the end "
            f"({m['rss_growth_pct']:+.1f} %), mean CPU {m['display_cpu_pct_mean']:.0f} % of one core; "
            f"{m['cards_on_page']} exam cards on the page at the end",
            f"- serve end-to-end p50 without the display {s['without_display']['p50']:.1f} ms, with the display and "
            f"a browser attached {s['with_display']['p50']:.1f} ms (p90 {s['without_display']['p90']:.1f} vs "
            f"{s['with_display']['p90']:.1f} ms)",
            "",
        ]
    )
