"""A terminal view of live results and latency percentiles, for the person at the bedside or the engineer."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from edge_runtime.contracts import (
    TOPIC_HEARTBEAT,
    TOPIC_METRICS,
    TOPIC_RESULT,
    ExamEstimate,
    HeartbeatMessage,
    MetricsMessage,
    ResultMessage,
)
from edge_runtime.wire.transport import CurveClientKeys, MessageHub, subscriber

HEARTBEAT_SILENCE_S = 5.0


def interval_label(coverage: float | None) -> str:
    """What an interval is, in words a clinician reads: the share of patients like this one it covers."""
    return f"{100 * coverage:.0f} % of patients like this one" if coverage else "interval"


def format_exam(exam: ExamEstimate, now: float) -> str:
    """The exam as the bedside should read it: a definite call, or plainly that the model cannot tell and why;
    PDFF with what its interval means; how long the call has held."""
    if exam.call is None or exam.p_fatty is None:
        return f"exam --            ({exam.reason})"
    f_lo, f_hi = exam.pdff_interval or (exam.pdff, exam.pdff)
    held = f"stable {now - exam.stable_since:4.0f} s" if exam.stable_since is not None else "settling"
    flags = ("" if exam.calibrated else " uncalibrated") + (" DISCORDANT" if exam.discordant else "")
    pdff = f"PDFF {exam.pdff:4.1f} % [{f_lo:.1f}-{f_hi:.1f}] ({interval_label(exam.pdff_coverage)})"
    if exam.call == "indeterminate":
        head = f"exam INDETERMINATE: the model cannot tell ({exam.reason or 'no single class'})"
    else:
        at = f" <= {100 * exam.definite_error:g} % wrong" if exam.definite_error else ""
        head = f"exam {exam.call.upper():<7} p={exam.p_fatty:.2f} (certified{at})"
    return f"{head}  {pdff}  {exam.n_pairs:2d} pairs, {held}{flags}"


def format_result(r: ResultMessage) -> str:
    """Exam first (what a clinician reads), then the latest pair and its latency in a quieter tail."""
    lat = r.latency_ms
    trigger = r.frames[r.trigger].ts
    return (
        f"{r.session:<18} {format_exam(r.exam, trigger)}   | pair p={r.p_fatty:.2f} PDFF {r.pdff:4.1f} %  "
        f"e2e {lat.get('end_to_end', float('nan')):5.1f} ms"
    )


def format_metrics(m: MetricsMessage) -> str:
    c, e2e = m.counters, m.latency_ms.get("end_to_end", {})
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(m.rejected.items())) or "none"
    pct = " ".join(f"{k} {e2e[k]:.1f}" for k in ("p50", "p90", "p99", "p99_9", "max") if k in e2e)
    return (
        f"-- frames {c.get('frames_received', 0)} received, {c.get('frames_encoded', 0)} encoded, "
        f"{c.get('frames_dropped_stale', 0)} stale; rejected: {rejected}; results {c.get('results_published', 0)};"
        f" end-to-end ms {pct or 'n/a'}"
    )


def watch(
    endpoint: str,
    echo: Callable[[str], None],
    count: int | None = None,
    timeout: float | None = None,
    curve: CurveClientKeys | None = None,
    record: Path | None = None,
) -> list[ResultMessage]:
    """Print results and metrics as they arrive; returns the results seen.

    Args:
        endpoint: the runtime's results endpoint.
        echo: where lines go (click.echo in the CLI).
        count: stop after this many results.
        timeout: stop after this many seconds.
        curve: this display's keys when the runtime uses CURVE.
        record: also append each result, as published, to this JSON-lines file (what a display received, with its
            end-to-end time, which the audit log cannot hold: it records a result before it is sent).
    """
    results: list[ResultMessage] = []
    recorder = open(record, "a") if record is not None else None  # noqa: SIM115 - closed below
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        with subscriber(endpoint, (TOPIC_RESULT, TOPIC_METRICS, TOPIC_HEARTBEAT), curve=curve) as sock:
            _follow(MessageHub(sock), echo, results, recorder, count, deadline)
    finally:
        if recorder is not None:
            recorder.close()
    return results


def _follow(hub: MessageHub, echo, results: list[ResultMessage], recorder, count: int | None, deadline) -> None:
    """Until ``count`` results or the deadline: print each message, keep and record each result."""
    last_heartbeat = time.monotonic()
    while (count is None or len(results) < count) and (deadline is None or time.monotonic() < deadline):
        received = hub.receive(500)
        if received is None:
            if time.monotonic() - last_heartbeat > HEARTBEAT_SILENCE_S:
                echo(f"-- no heartbeat from the runtime for {HEARTBEAT_SILENCE_S:g} s")
                last_heartbeat = time.monotonic()
            continue
        _, message = received
        if isinstance(message, ResultMessage):
            results.append(message)
            echo(format_result(message))
            if recorder is not None:
                recorder.write(message.model_dump_json() + "\n")
                recorder.flush()
        elif isinstance(message, MetricsMessage):
            echo(format_metrics(message))
        elif isinstance(message, HeartbeatMessage):
            last_heartbeat = time.monotonic()
