"""What the tests share: the quick training protocol, trainer commands, and loopback pieces of the bedside (a frame
source, a display, a server on free ports, waiting for conditions)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from click.testing import CliRunner, Result

from benchmarks.common import storescu  # noqa: F401 - the tests' scanner, shared with the benchmarks
from edge_runtime.config import RuntimeConfig, load_config, merge
from edge_runtime.contracts import TOPIC_RESULT, FrameHeader, ResultMessage, parse_message
from edge_runtime.model.bundle import load_bundle
from edge_runtime.model.served import ServedModel
from edge_runtime.pipeline.frame import FrameContext
from edge_runtime.scanners.profiles import default_profiles
from edge_runtime.server import EdgeServer
from edge_runtime.wire.protocol import encode_frame
from phantom.render import profile_for, render_view
from phantom.subject import draw_cohort

# -- the trainer --------------------------------------------------------------------------------------------------
QUICK_PROTOCOL = {
    "--weights": "none",
    "--augment": "light",
    "--appearance": "none",
    "--epochs": "2",
    "--folds": "2",
    "--task": "both",
    "--bootstrap": "20",
}


def train_args(manifest: Path, out: Path, cache: Path | None = None, **changes: str) -> list[str]:
    """`trainer train` with the quick protocol (random weights, few epochs), the given options changed
    (``epochs="5"`` sets --epochs 5; ``features="int8"`` adds --features int8)."""
    options = dict(QUICK_PROTOCOL)
    options.update({f"--{k.replace('_', '-')}": v for k, v in changes.items()})
    if cache is not None:
        options["--cache-dir"] = str(cache)
    args = ["train", "--manifest", str(manifest), "--out", str(out)]
    return args + [part for option, value in options.items() for part in (option, value)]


def invoke_trainer(*args: str) -> Result:
    from trainer.cli import main as trainer_cli

    return CliRunner().invoke(trainer_cli, list(args))


def copy_run(run_dir: Path, dst: Path, **config_changes: Any) -> Path:
    """A copy of a finished run with some of its recorded configuration changed."""
    import json
    import shutil

    shutil.copytree(run_dir, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(config_changes)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    return list(csv.DictReader(path.read_text().splitlines()))


def export(run: Path, out: Path, *extra: str, samples: str = "16") -> Result:
    """`trainer export --int8` quickly: few representative samples, no debugger, misses allowed."""
    args = ["export", "--run", str(run), "--out", str(out), "--samples", samples, "--no-debugger"]
    return invoke_trainer(*args, "--allow-fidelity-miss", *extra)


# -- the bedside on loopback --------------------------------------------------------------------------------------
def wait_for(condition: Callable[[], bool], timeout: float = 20.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def phantom_screens(n_subjects: int = 2, seed: int = 9) -> dict[tuple[int, str], tuple[str, np.ndarray]]:
    """(subject index, view) -> (scanner profile name, RGB screen)."""
    out = {}
    for s in draw_cohort(n_subjects, seed):
        for view in ("liver", "kidney_liver"):
            out[(s.index, view)] = (profile_for(s).name, render_view(s, view, seed).screen)
    return out


def breathed(screen: np.ndarray, k: int) -> np.ndarray:
    """The k-th live frame of a still screen: shifted 3k pixels down, as breathing moves the picture. The runtime
    pairs a frame only once (a frozen screen is one image), so a test that wants several results sends these."""
    return np.roll(screen, 3 * k, axis=0)


def frame_context(view: str, seq: int, image: np.ndarray, scanner: str, session: str = "s") -> FrameContext:
    """A raw frame as the source hands it to the pipeline (frame time 100 s + seq)."""
    header = FrameHeader(1, seq, 100.0 + seq, session, scanner, view, image.shape[1], image.shape[0], 3, "raw")
    return FrameContext(header, np.ascontiguousarray(image).tobytes(), 100.0 + seq)


def runtime_config(tmp_path: Path, bundle: Path | None = None, **tables: dict[str, Any]) -> RuntimeConfig:
    """A configuration for a test server: the audit log in tmp_path, metrics every 0.5 s, tables changed."""
    base = {"model": {"bundle": bundle}, "audit": {"log": tmp_path / "audit" / "results.jsonl"}}
    base["metrics"] = {"period_s": 0.5}
    return load_config(None, merge(base, tables))


def offline_server(bundle_dir: Path, tmp_path: Path, **tables: dict[str, Any]) -> EdgeServer:
    """A server that is never started: tests drive its pipeline (server.pipeline.run) and admission directly."""
    config = runtime_config(tmp_path, bundle_dir, **tables)
    model = ServedModel.prepared(load_bundle(bundle_dir), default_profiles(), config)
    return EdgeServer(config, model, context=zmq.Context())


def start_server(bundle_dir: Path, frames: str, tmp_path: Path, **tables: dict[str, Any]) -> EdgeServer:
    tables = merge({"transport": {"frames": frames, "results": "tcp://127.0.0.1:*"}}, tables)
    config = runtime_config(tmp_path, bundle_dir, **tables)
    model = ServedModel.prepared(load_bundle(bundle_dir, num_threads=2), default_profiles(), config)
    server = EdgeServer(config, model, context=zmq.Context())
    server.start()
    time.sleep(0.3)  # let the SUB connect (ZeroMQ slow joiner)
    return server


class Source:
    """A frame source bound on a free loopback port (PUB), like the grabber or the phantom stream."""

    def __init__(self, ctx: zmq.Context, endpoint: str = "tcp://127.0.0.1:*"):
        self.sock = ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.LINGER, 0)
        for attempt in range(50):  # a just-closed socket frees its port asynchronously
            try:
                self.sock.bind(endpoint)
                break
            except zmq.ZMQError:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.seqs: dict[str, int] = {}  # per session, as a scanner numbers an exam's frames

    def send(self, session: str, view: str, scanner: str, image: np.ndarray, encoding: str = "raw") -> FrameHeader:
        seq = self.seqs.get(session, 0)
        header = FrameHeader(
            1, seq, time.time(), session, scanner, view, image.shape[1], image.shape[0], image.shape[2], encoding
        )
        self.seqs[session] = seq + 1
        self.sock.send_multipart(encode_frame(header, image))
        return header

    def send_parts(self, parts: list) -> None:
        self.sock.send_multipart(parts)

    def close(self) -> None:
        self.sock.close(linger=0)


def send_until_encoded(server, source: Source, session: str, view: str, scanner: str, image: np.ndarray) -> int:
    """Send one frame (again if the SUB was not connected yet) until the worker has encoded it; returns its seq."""
    before = server.stats.counters["frames_encoded"]
    for _ in range(20):
        header = source.send(session, view, scanner, image)
        if wait_for(lambda: server.stats.counters["frames_encoded"] > before, timeout=3):
            return header.seq
    raise AssertionError(f"frame of {session}/{view} was never encoded")


class Display:
    def __init__(self, ctx: zmq.Context, endpoint: str, topics=(b"result",)):
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        for t in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, t)
        self.sock.connect(endpoint)
        self.received: list[ResultMessage] = []

    def poll(self, timeout_ms: int = 100) -> None:
        """Collect results, read through the declared contract (a malformed one fails the test)."""
        while self.sock.poll(timeout_ms):
            topic, body = self.sock.recv_multipart()
            if topic == TOPIC_RESULT:
                self.received.append(parse_message(topic, body))
            timeout_ms = 0

    def close(self) -> None:
        self.sock.close(linger=0)
