"""Signed bundles: `edge-runtime keys signing`, `bundle sign` and `bundle verify`. A signed bundle verifies; an
edited bundle.json, a swapped and re-hashed file, a key not trusted here and an unsigned bundle are each refused
by name; unsigned bundles load only when explicitly allowed."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime.cli import main as edge_cli


def _edge(*args: str):
    return CliRunner().invoke(edge_cli, [str(a) for a in args])


@pytest.fixture()
def signed(bundle_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the test bundle signed by a new key, and a trusted-keys folder holding only that key."""
    bundle, keys, trusted = tmp_path / "bundle", tmp_path / "keys", tmp_path / "trusted"
    shutil.copytree(bundle_dir, bundle)
    made = _edge("keys", "signing", "--out", keys, "--name", "vendor")
    assert made.exit_code == 0, made.output
    trusted.mkdir()
    shutil.copy(keys / "vendor.public", trusted)
    result = _edge("bundle", "sign", bundle, "--key", keys / "vendor.secret")
    assert result.exit_code == 0 and "signed by key" in result.output, result.output
    return bundle, trusted


def test_export_signs_with_the_release_key(bundle_dir: Path, release_key: Path) -> None:
    trusted = release_key.with_suffix(".public").parent
    result = _edge("bundle", "verify", bundle_dir, "--trusted-keys", trusted)
    assert result.exit_code == 0 and "signed by release.public" in result.output, result.output


def test_signing_keys_are_private_and_never_overwritten(tmp_path: Path) -> None:
    assert _edge("keys", "signing", "--out", tmp_path, "--name", "k").exit_code == 0
    assert stat.S_IMODE((tmp_path / "k.secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k.public").stat().st_mode) == 0o644
    again = _edge("keys", "signing", "--out", tmp_path, "--name", "k")
    assert again.exit_code != 0 and "exists" in again.output and "Traceback" not in again.output


def test_a_signed_bundle_verifies_and_names_its_key(signed: tuple[Path, Path]) -> None:
    from edge_runtime.model.bundle import load_bundle
    from edge_runtime.model.signing import TrustPolicy

    bundle, trusted = signed
    result = _edge("bundle", "verify", bundle, "--trusted-keys", trusted)
    assert result.exit_code == 0 and "signed by vendor.public" in result.output, result.output
    assert load_bundle(bundle, trust=TrustPolicy.from_folder(trusted)).signed_by == "vendor.public"


def _rehash(bundle: Path, name: str) -> None:
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["sha256"][name] = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    (bundle / "bundle.json").write_text(json.dumps(meta, indent=1))


def test_tampered_untrusted_and_unsigned_bundles_are_refused_by_name(signed: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, trusted = signed
    cases = {}
    edited = tmp_path / "edited"
    shutil.copytree(bundle, edited)
    meta = json.loads((edited / "bundle.json").read_text())
    meta["outputs"]["p_fatty"]["threshold"] = 0.0001  # calls everyone fatty
    (edited / "bundle.json").write_text(json.dumps(meta, indent=1))
    cases["does not match bundle.json"] = edited
    forged = tmp_path / "forged"  # the edit, and the signature file's hash made to name it: the signature still fails
    shutil.copytree(edited, forged)
    sig = json.loads((forged / "bundle.sig").read_text())
    sig["bundle_json_sha256"] = hashlib.sha256((forged / "bundle.json").read_bytes()).hexdigest()
    (forged / "bundle.sig").write_text(json.dumps(sig))
    cases["does not match bundle.json (edited after signing?)"] = forged
    swapped = tmp_path / "swapped"
    shutil.copytree(bundle, swapped)
    fidelity = json.loads((swapped / "fidelity.json").read_text()) | {"meets_bars": True}
    (swapped / "fidelity.json").write_text(json.dumps(fidelity))
    _rehash(swapped, "fidelity.json")
    cases["does not match bundle.json "] = swapped
    unsigned = tmp_path / "unsigned"
    shutil.copytree(bundle, unsigned)
    (unsigned / "bundle.sig").unlink()
    cases["unsigned bundle"] = unsigned
    garbled = tmp_path / "garbled"
    shutil.copytree(bundle, garbled)
    (garbled / "bundle.sig").write_text("{not json")
    cases["not a readable signature"] = garbled
    other = tmp_path / "other-keys"
    _edge("keys", "signing", "--out", other, "--name", "stranger")
    (other / "stranger.secret").unlink()
    cases["not among the trusted keys"] = (bundle, other)
    for said, target in cases.items():
        folder, keys = target if isinstance(target, tuple) else (target, trusted)
        result = _edge("bundle", "verify", folder, "--trusted-keys", keys)
        assert result.exit_code != 0 and said.strip() in result.output, (said, result.output)
        assert "Traceback" not in result.output


def test_unsigned_bundles_load_only_when_allowed_and_a_broken_bundle_is_never_signed(
    bundle_dir: Path, tmp_path: Path
) -> None:
    from edge_runtime.model.bundle import BundleError, load_bundle
    from edge_runtime.model.signing import SignatureRefused, TrustPolicy, make_signing_key

    unsigned = tmp_path / "unsigned"
    shutil.copytree(bundle_dir, unsigned)
    (unsigned / "bundle.sig").unlink()
    trusted = TrustPolicy.from_folder(make_signing_key(tmp_path / "trusted", "t")[1].parent)
    with pytest.raises(SignatureRefused, match="unsigned bundle"):
        load_bundle(unsigned, trust=trusted)
    assert load_bundle(unsigned, trust=TrustPolicy({}, allow_unsigned=True)).signed_by is None
    with pytest.raises(BundleError, match="holds no"):
        TrustPolicy.from_folder(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(bundle_dir, broken)
    (broken / "fidelity.json").write_text("{}")
    (broken / "bundle.sig").unlink(missing_ok=True)
    secret, _ = make_signing_key(tmp_path / "keys", "k")
    result = _edge("bundle", "sign", broken, "--key", secret)
    assert result.exit_code != 0 and "SHA-256 mismatch" in result.output and not (broken / "bundle.sig").exists()


def _serve(bundle: Path, *trust: str) -> subprocess.CompletedProcess:
    args = ["serve", "--bundle", str(bundle), "--frames", "tcp://127.0.0.1:5631", "--results", "tcp://127.0.0.1:5632"]
    command = [sys.executable, "-m", "edge_runtime.cli", *args, *trust]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_serve_refuses_at_start_what_it_cannot_trust(signed: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, trusted = signed
    edited = tmp_path / "edited"
    shutil.copytree(bundle, edited)
    (edited / "bundle.json").write_text((edited / "bundle.json").read_text().replace('"0.1.0"', '"9.9.9"'))
    unsigned = tmp_path / "unsigned"
    shutil.copytree(bundle, unsigned)
    (unsigned / "bundle.sig").unlink()
    cases = {
        "does not match bundle.json": _serve(edited, "--trusted-keys", str(trusted)),
        "unsigned bundle": _serve(unsigned, "--trusted-keys", str(trusted)),
        "no trusted keys: pass --trusted-keys": _serve(bundle),
    }
    for said, done in cases.items():
        assert done.returncode != 0 and said in done.stderr, (said, done.stderr)
        assert "Traceback" not in done.stderr


def test_a_signed_bundle_serves_names_its_key_and_swaps_in_again_on_sighup(
    signed: tuple[Path, Path], tmp_path: Path
) -> None:
    import signal

    import zmq
    from helpers import wait_for

    from edge_runtime.contracts import HeartbeatMessage

    bundle, trusted = signed
    args = ["serve", "--bundle", str(bundle), "--trusted-keys", str(trusted), "--frames", "tcp://127.0.0.1:5633"]
    args += ["--results", "tcp://127.0.0.1:5634", "--audit-log", str(tmp_path / "a.jsonl")]
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", *args], stderr=subprocess.PIPE, text=True)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.connect("tcp://127.0.0.1:5634")
    sub.setsockopt(zmq.SUBSCRIBE, b"heartbeat")

    def heartbeat() -> HeartbeatMessage:
        assert wait_for(lambda: sub.poll(100) != 0, timeout=30), "no heartbeat"
        return HeartbeatMessage.model_validate_json(sub.recv_multipart()[1])

    try:
        first = heartbeat()
        proc.send_signal(signal.SIGHUP)  # the same bundle again: verified, warmed up and swapped in
        assert wait_for(lambda: heartbeat().model_update is not None, timeout=30), "SIGHUP never answered"
        updated = heartbeat()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        sub.close(linger=0)
        ctx.destroy(linger=0)
    assert first.model.signed_by == "vendor.public" and first.model_update is None
    assert updated.model_update.ok and updated.model_since > first.model_since, updated.model_update
    assert proc.returncode == 0 and "UNSIGNED" not in err and "now serving" in err
