"""Replay recorded frame messages through whichever bedside runtime is importable, and write what it answered.

``python tests/replay_runtime.py BUNDLE FRAMES OUT`` (FRAMES: a pickled list of multipart messages). Run once with
the repository's runtime and once with the runtime before the declared pipeline (extracted from git history onto
PYTHONPATH), the two transcripts must be equal: ``tests/test_pipeline.py``. The older runtime has one server class
with ``handle_message`` and ``process``; the pipeline has an admission step and ``pipeline.run``.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import zmq


def _known_fields(data: Any, model: Any) -> Any:
    """bundle.json reduced to the fields a model knows (an older runtime refuses fields added after it)."""
    fields = getattr(model, "model_fields", None)
    if fields is None or not isinstance(data, dict):
        return data
    by_alias = {(info.alias or name): info for name, info in fields.items()}
    kept = {}
    for key, value in data.items():
        if key in by_alias:
            annotation = by_alias[key].annotation
            inner = [a for a in getattr(annotation, "__args__", ()) if hasattr(a, "model_fields")]
            kept[key] = _known_fields(value, inner[0] if inner else annotation)
    return kept


def _older_bundle(bundle: Path, meta_model: Any, work: Path) -> Path:
    """A copy of the bundle, in the replay's own folder, whose bundle.json holds only what the older runtime reads."""
    copy = work / bundle.name
    shutil.copytree(bundle, copy)
    meta = json.loads((bundle / "bundle.json").read_text())
    (copy / "bundle.json").write_text(json.dumps(_known_fields(meta, meta_model)))
    return copy


def _exam(exam: Any) -> dict[str, Any] | None:
    if exam is None:
        return None
    keep = ("call", "reason", "p_fatty", "p_fatty_interval", "pdff", "pdff_interval", "n_pairs", "stable_since")
    data = exam.model_dump(mode="json")
    return {k: data[k] for k in (*keep, "discordant", "views_seen")}


def _result(result: Any) -> dict[str, Any] | None:
    if result is None:
        return None
    frames = {v: [ref.seq, ref.view_confidence, ref.out_of_distribution] for v, ref in result.frames.items()}
    return {
        "session": result.session,
        "trigger": result.trigger,
        "frames": frames,
        "p_fatty": result.p_fatty,
        "fatty": result.fatty,
        "pdff": result.pdff,
        "out_of_distribution": result.out_of_distribution,
        "exam": _exam(result.exam),
    }


def _server(bundle_dir: Path, audit: Path) -> tuple[Any, Any, Any]:
    """The runtime's server over the bundle, with a way to admit a message and to run one queued frame."""
    from edge_runtime.server import EdgeServer

    if hasattr(EdgeServer, "process"):  # the runtime before the declared pipeline: its modules sat at the top
        from edge_runtime.bundle import load_bundle
        from edge_runtime.profiles import default_profiles
        from edge_runtime.schema import BundleMeta

        from edge_runtime.config import RuntimeConfig

        bundle = load_bundle(_older_bundle(bundle_dir, BundleMeta, audit.parent))
        server = EdgeServer(RuntimeConfig(audit_log=audit), bundle, default_profiles(), zmq.Context())
        return server, server.handle_message, server.process
    from edge_runtime.config import load_config
    from edge_runtime.model.bundle import load_bundle
    from edge_runtime.model.served import ServedModel
    from edge_runtime.scanners.profiles import default_profiles

    config = load_config(None, {"audit": {"log": audit}})
    model = ServedModel.prepared(load_bundle(bundle_dir), default_profiles(), config)
    server = EdgeServer(config, model, zmq.Context())
    server.frames = server.bedside.worker.queue
    server.audit = server.bedside.audit
    return server, server.bedside.admission.admit, server.pipeline.run


def replay(bundle_dir: Path, messages: list[list[bytes]], audit: Path) -> dict[str, Any]:
    server, admit, run = _server(bundle_dir, audit)
    results = []
    for i, parts in enumerate(messages):
        admit(parts, 1000.0 + i)
        while (frame := server.frames.take(timeout=0)) is not None:  # both runtimes name their queue so
            results.append(_result(run(frame)))
    snapshot = server.stats.snapshot()
    server.audit.close()
    import edge_runtime

    return {
        "runtime": str(Path(edge_runtime.__file__).parent),
        "results": results,
        "counters": snapshot["counters"],
        "rejected": snapshot["rejected"],
    }


def main() -> None:
    bundle, frames, out = (Path(a) for a in sys.argv[1:4])
    messages = pickle.loads(frames.read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        transcript = replay(bundle, messages, Path(tmp) / "audit.jsonl")
    out.write_text(json.dumps(transcript, indent=1))


if __name__ == "__main__":
    main()
