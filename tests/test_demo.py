"""The demo's live summary reads what a display received and fails loudly on what it did not do.

The audit log records each result before it is sent, so it cannot hold the end-to-end time; the demo reads the
results `edge-runtime watch --record` received instead. A played exam with no result, or one that ended with no
answer, makes the summary list a problem (and `make demo` exit 1)."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from pathlib import Path

import zmq
from helpers import Source, breathed, phantom_screens, send_until_encoded, start_server, wait_for

from edge_runtime.sinks.audit import read_results
from edge_runtime.tools.watch import watch

ROOT = Path(__file__).resolve().parents[1]


def _demo():
    spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo"] = module  # its dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


def _play(bundle_dir: Path, tmp_path: Path, received: Path, sessions: dict[str, int]) -> Path:
    """Live exams of the given subjects into a served bundle, while a watcher records what it receives."""
    screens, ctx = phantom_screens(2), zmq.Context()
    source = Source(ctx)
    server = start_server(bundle_dir, source.endpoint, tmp_path, exam={"hold_s": 0.0})  # a call within 7 pairs
    watcher = threading.Thread(
        target=watch, args=(server.results_endpoint, lambda line: None, None, 20, None, received)
    )
    watcher.start()
    try:
        for session, subject in sessions.items():
            for k in range(7):
                for view in ("liver", "kidney_liver"):
                    scanner, image = screens[(subject, view)]
                    send_until_encoded(server, source, session, view, scanner, breathed(image, k))
        assert wait_for(lambda: received.exists() and len(received.read_text().splitlines()) >= 10, timeout=10)
    finally:
        server.stop()
        source.close()
        ctx.destroy(linger=0)
    watcher.join(25)
    return tmp_path / "audit" / "results.jsonl"


def test_the_live_summary_reads_the_received_results_and_names_what_went_wrong(bundle_dir: Path, tmp_path: Path):
    demo = _demo()
    received = tmp_path / "received.jsonl"
    audit = _play(bundle_dir, tmp_path, received, {"exam-a": 0, "exam-b": 1})
    assert all("end_to_end" not in r["latency_ms"] for r in read_results(audit)), "audited before it is sent"
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"exam-a": {"pdff": 3.0, "fatty": False}, "exam-b": {"pdff": 12.0, "fatty": True}}))
    run = demo.LiveRun(audit, received, truth, tmp_path / "frames.jsonl")
    summary = demo.summarise(run, 2)
    assert summary["problems"] == [], summary["problems"]
    assert summary["e2e_p50"] > 0 and summary["results"] == len(received.read_text().splitlines())
    assert len(summary["exams"]) == 2 and all("truth PDFF" in line for line in summary["exams"])

    truth.write_text(json.dumps({"exam-a": {"pdff": 3.0, "fatty": False}, "exam-c": {"pdff": 9.0, "fatty": True}}))
    problems = demo.summarise(run, 2)["problems"]
    assert "exam exam-c was played but got no result" in problems
    received.write_text("")
    assert "no result reached the display" in demo.summarise(run, 2)["problems"]
