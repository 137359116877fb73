"""The audit log's hash chain: `edge-runtime audit verify` passes an intact log (across rotations and restarts),
names the first edited or removed line, and tolerates and reports a line torn by kill -9."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from click.testing import CliRunner

from edge_runtime.cli import main as edge_cli
from edge_runtime.sinks.audit import AuditLog, read_audit, verify_audit


def _log(path: Path, start: int, n: int, max_bytes: int = 50_000_000) -> None:
    log = AuditLog(path, max_bytes=max_bytes, backups=3)
    for i in range(start, start + n):
        log.append({"i": i, "pad": "x" * 40})
    log.close()


def _verify(*paths: Path):
    return CliRunner().invoke(edge_cli, ["audit", "verify", *map(str, paths)])


def test_an_intact_log_verifies_across_rotations_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    _log(path, 0, 30, max_bytes=2048)
    _log(path, 30, 30, max_bytes=2048)  # a restart continues the chain
    assert (tmp_path / "results.jsonl.1").exists()
    result = _verify(path)
    assert result.exit_code == 0 and "intact" in result.output, result.output
    kept = [r["i"] for r in read_audit(path) if "i" in r]
    assert kept == sorted(kept) and kept[-1] == 59
    assert verify_audit(path).starts_after_rotation  # the oldest file was rotated away, and that is said


def test_an_edited_or_removed_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    _log(path, 0, 10)
    lines = path.read_text().splitlines()
    edited = list(lines)
    record = json.loads(edited[4]) | {"i": 999}
    edited[4] = json.dumps(record, separators=(",", ":"))
    path.write_text("\n".join(edited) + "\n")
    result = _verify(path)
    assert result.exit_code == 1 and f"{path}:6" in result.output and "edited or removed" in result.output
    path.write_text("\n".join(lines[:3] + lines[4:]) + "\n")  # a line removed
    assert verify_audit(path).broken.startswith(f"{path}:4")


def test_a_torn_last_line_is_tolerated_reported_and_the_chain_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    _log(path, 0, 5)
    with path.open("a") as fh:
        fh.write('{"i": 5, "pad": "xx')  # kill -9 in the middle of a write
    assert [r["i"] for r in read_audit(path)] == [0, 1, 2, 3, 4]
    log = AuditLog(path)
    assert log.torn_at_start
    log.append({"i": 6})
    log.close()
    verdict = verify_audit(path)
    assert verdict.intact and verdict.records == 6 and verdict.torn == [f"{path}:6"]
    result = _verify(path)
    assert result.exit_code == 0 and "torn line" in result.output


def test_a_whole_record_missing_only_its_newline_stays_in_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    _log(path, 0, 3)
    path.write_text(path.read_text().rstrip("\n"))
    log = AuditLog(path)
    log.append({"i": 3})
    log.close()
    verdict = verify_audit(path)
    assert verdict.intact and verdict.records == 4 and not verdict.torn


def test_a_full_disk_is_counted_said_and_left_behind_when_it_frees(tmp_path: Path) -> None:
    """A real full filesystem (a 64 kB tmpfs): writes fail without raising, the error is said, and the log goes on
    by itself, chain intact, once space is freed."""
    import subprocess

    import pytest

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("this machine does not let the test mount a tmpfs (the /dev/full test still runs)")
    try:
        filler = disk / "filler"
        with filler.open("wb") as fh, contextlib.suppress(OSError):
            fh.write(b"x" * 60_000)
        log, written = AuditLog(disk / "results.jsonl"), []
        for i in range(40):
            written.append(log.append({"i": i, "pad": "x" * 100}))
        assert not all(written) and log.failures == written.count(False) and "No space left" in log.error
        filler.unlink()
        assert log.append({"i": 40}) and log.error is None
        log.close()
        kept = [r["i"] for r in read_audit(disk / "results.jsonl")]
        assert kept[-1] == 40 and verify_audit(disk / "results.jsonl").intact
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_results_keep_flowing_to_a_full_audit_disk_marked_unaudited(bundle_dir: Path, tmp_path: Path) -> None:
    import zmq
    from helpers import Display, Source, phantom_screens, send_until_encoded, start_server, wait_for

    ctx = zmq.Context()
    source = Source(ctx)
    server = start_server(bundle_dir, source.endpoint, tmp_path, audit={"log": Path("/dev/full")})
    display = Display(ctx, server.results_endpoint)
    try:
        screens = phantom_screens(2)
        for i, session in enumerate(["exam-a", "exam-b"]):
            for view in ("liver", "kidney_liver"):
                scanner, screen = screens[(i, view)]
                send_until_encoded(server, source, session, view, scanner, screen)
        assert wait_for(lambda: (display.poll(), len(display.received) >= 2)[1])
        heartbeat = server.heartbeat()
    finally:
        server.stop()
        source.close()
        ctx.destroy(linger=0)
    assert all(r.audited is False for r in display.received)
    assert server.stats.counters["audit_write_failures"] >= 2
    assert heartbeat.audit.ok is False and "No space left" in heartbeat.audit.error


def test_retention_by_age_deletes_counts_and_notes_it_and_the_chain_still_verifies(tmp_path: Path) -> None:
    import os
    import time

    path = tmp_path / "results.jsonl"
    _log(path, 0, 30, max_bytes=2048)  # rotates: results.jsonl.1 (and .2) hold the oldest records
    rotated = sorted(tmp_path.glob("results.jsonl.*"))
    assert rotated
    old = time.time() - 40 * 86400
    for f in rotated:
        os.utime(f, (old, old))
    log = AuditLog(path, max_bytes=2048, backups=3, max_age_days=30)
    assert log.retired == len(rotated) and not any(f.exists() for f in rotated)
    log.append({"i": 30, "pad": "x"})
    log.close()
    notes = [r for r in read_audit(path) if r.get("record") == "retention"]
    assert sorted(n["deleted"] for n in notes) == sorted(f.name for f in rotated)
    assert all("30 days" in n["why"] for n in notes)
    verdict = verify_audit(path)
    assert verdict.intact and verdict.starts_after_rotation


@contextlib.contextmanager
def _read_only_folder(folder: Path):
    """A folder nobody may write: a read-only mount under root (root ignores modes), a 0o500 folder otherwise."""
    import os
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_serve_refuses_to_start_when_the_audit_folder_is_not_writable(bundle_dir: Path, tmp_path: Path) -> None:
    """A volume mounted read-only or owned by another user is a misconfiguration: said at start, by folder, with no
    traceback; a disk that fills later is the degraded mode instead (test_supervision)."""
    import subprocess
    import sys

    for log in ("audit/results.jsonl", "results.jsonl"):  # a folder to create in it, and the log itself
        with _read_only_folder(tmp_path / "volume") as volume:
            args = ["serve", "--bundle", str(bundle_dir), "--allow-unsigned", "--audit-log", str(volume / log),
                    "--frames", "tcp://127.0.0.1:5721", "--results", "tcp://127.0.0.1:5722",
                    "--prometheus-port", "0"]  # fmt: skip
            done = subprocess.run([sys.executable, "-m", "edge_runtime.cli", *args], capture_output=True, text=True,
                                  timeout=120)  # fmt: skip
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert f"the audit folder {(volume / log).parent} is not writable" in done.stderr, done.stderr
