"""A terminal view of live results and latency percentiles, for the person at the bedside or the engineer."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from edge_runtime.protocol import TOPIC_HEARTBEAT, TOPIC_METRICS, TOPIC_RESULT


def format_result(r: dict[str, Any]) -> str:
    call = "FATTY " if r["fatty"] else "normal"
    lat = r["latency_ms"]
    return (
        f"{r['session']:<18} {call}  p={r['p_fatty']:.2f}  PDFF {r['pdff']:5.1f} %   "
        f"seq L{r['frames']['liver']['seq']}/K{r['frames']['kidney_liver']['seq']}   "
        f"e2e {lat['end_to_end']:6.1f} ms (encode {lat['encode']:.1f})"
    )


def format_metrics(m: dict[str, Any]) -> str:
    c, e2e = m["counters"], m["latency_ms"]["end_to_end"]
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(m["rejected"].items())) or "none"
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
    client_key: Path | None = None,
    server_key: Path | None = None,
) -> list[dict[str, Any]]:
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    if client_key and server_key:
        from edge_runtime.security import make_client

        make_client(sub, client_key, server_key)
    for topic in (TOPIC_RESULT, TOPIC_METRICS, TOPIC_HEARTBEAT):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(endpoint)
    results: list[dict[str, Any]] = []
    deadline = None if timeout is None else time.monotonic() + timeout
    last_heartbeat = time.monotonic()
    try:
        while count is None or len(results) < count:
            if deadline is not None and time.monotonic() >= deadline:
                break
            if not sub.poll(500):
                if time.monotonic() - last_heartbeat > 5:
                    echo("-- no heartbeat from the runtime for 5 s")
                    last_heartbeat = time.monotonic()
                continue
            topic, body = sub.recv_multipart()
            data = json.loads(body)
            if topic == TOPIC_RESULT:
                results.append(data)
                echo(format_result(data))
            elif topic == TOPIC_METRICS:
                echo(format_metrics(data))
            else:
                last_heartbeat = time.monotonic()
    finally:
        sub.close(linger=0)
    return results
