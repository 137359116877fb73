"""Safe model updates: a SIGHUP to a tampered bundle keeps the old model serving and says why; a SIGHUP to a good one
verifies and warms it up while the old one serves, then swaps it in between frames, ending every active exam with
its exam_final; the heartbeat and the audit log say which model serves since when."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import zmq
from click.testing import CliRunner
from helpers import Display, Source, phantom_screens, runtime_config, send_until_encoded, wait_for

from edge_runtime.cli import main as edge_cli
from edge_runtime.model.bundle import load_bundle
from edge_runtime.model.served import ConfiguredModel
from edge_runtime.server import EdgeServer
from edge_runtime.sinks.audit import read_audit


def _bundle_variant(bundle_dir: Path, out: Path, version: str, sign_key: Path | None) -> Path:
    """A copy of the test bundle with another version in bundle.json: re-signed when given a key, else tampered."""
    shutil.copytree(bundle_dir, out)
    meta = json.loads((out / "bundle.json").read_text())
    meta["version"] = version
    (out / "bundle.json").write_text(json.dumps(meta, indent=1))
    if sign_key is not None:
        result = CliRunner().invoke(edge_cli, ["bundle", "sign", str(out), "--key", str(sign_key)])
        assert result.exit_code == 0, result.output
    return out


def _point_config_at(config_file: Path, bundle: Path, trusted: Path) -> None:
    config_file.write_text(f'[runtime.model]\nbundle = "{bundle}"\ntrusted_keys = "{trusted}"\n')


def _pair(server: EdgeServer, source: Source, session: str) -> None:
    screens = phantom_screens(1)
    for view in ("liver", "kidney_liver"):
        scanner, screen = screens[(0, view)]
        send_until_encoded(server, source, session, view, scanner, screen)


def test_a_tampered_update_is_refused_and_a_good_one_swaps_between_frames(
    bundle_dir: Path, release_key: Path, tmp_path: Path
) -> None:
    trusted = release_key.parent
    tampered = _bundle_variant(bundle_dir, tmp_path / "tampered", "0.2.0-edited", None)
    good = _bundle_variant(bundle_dir, tmp_path / "good", "0.2.0", release_key)
    config_file = tmp_path / "edge.toml"
    _point_config_at(config_file, bundle_dir, trusted)
    ctx = zmq.Context()
    source = Source(ctx)
    tables = {"transport": {"frames": source.endpoint, "results": "tcp://127.0.0.1:*"}}
    config = runtime_config(tmp_path, bundle_dir, **tables)
    loader = ConfiguredModel(config_file, {})
    first = loader.load()
    server = EdgeServer(config, first, context=ctx, loader=loader)
    server.start()
    display = Display(ctx, server.results_endpoint)
    try:
        _pair(server, source, "before")
        served_since = server.heartbeat().model_since
        _point_config_at(config_file, tampered, trusted)
        server.served.updates.request(server.served.current.bundle.model_info)
        server.served.updates.wait(60)
        refused = server.heartbeat().model_update
        assert refused is not None and not refused.ok and "does not match" in refused.error
        assert server.served.current.bundle.version == "0.1.0" and len(server.bedside.worker.sessions) == 1, (
            "the old model and its exam serve on"
        )

        _point_config_at(config_file, good, trusted)
        server.served.updates.request(server.served.current.bundle.model_info)
        assert wait_for(lambda: server.served.current.bundle.version == "0.2.0", timeout=60), (
            "the good bundle was never swapped in"
        )
        heartbeat = server.heartbeat()
        _pair(server, source, "after")
        assert wait_for(lambda: (display.poll(), any(r.session == "after" for r in display.received))[1])
    finally:
        server.stop()
        source.close()
        ctx.destroy(linger=0)
    assert heartbeat.model_update.ok and heartbeat.model_update.sessions_ended == 1
    assert heartbeat.model.sha == load_bundle(good).sha and heartbeat.model_since > served_since
    after = [r for r in display.received if r.session == "after"]
    assert all(r.model.version == "0.2.0" for r in after)
    records = read_audit(config.audit.log)
    updates = [r for r in records if r.get("record") == "model_update"]
    assert [u["ok"] for u in updates] == [False, True], "both the refusal and the swap are in the audit log"
    ended = [r for r in records if r.get("record") == "exam_final" and r["session"] == "before"]
    assert len(ended) == 1 and "model update" in ended[0]["cause"] and ended[0]["model"]["version"] == "0.1.0"
    assert server.stats.counters.get("inference_errors", 0) == 0
