"""`benchmarks faults`: each fault against a live `edge-runtime serve` with a phantom exam streaming into it.

Faults: the audit disk full, the audit folder read-only, kill -9 under heavy writing (then a restart on the same
log), SIGSTOP/SIGCONT of serve and of the scanner's stream, the wall clock jumping +1 h and back (libfaketime,
monotonic clock untouched), the bundle's files removed while serving (then a SIGHUP to it, then restored), a
stalled results subscriber, and frames at 10x the usual rate.

For each: frames sent, received and counted lost in transport; results published, heard and in the audit log;
what was lost beyond what was counted (a result heard that claims to be audited but is not in the log, or a frame
neither received nor counted: want none), whether the audit chain verifies, and the recovery time (fault over ->
the next audited result). JSON + Markdown in out/benchmarks/faults/.
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import zmq

from benchmarks.common import machine, write_reports
from benchmarks.fault_box import FAKETIME_LIBRARY, LiveBox
from edge_runtime.model.signing import make_signing_key, sign_bundle
from edge_runtime.sinks.audit import read_audit, verify_audit

BASE_FPS = 15.0
FAULT_S = 5.0


def _mount_disk(folder: Path, kind: str) -> bool:
    """The audit folder on its own small filesystem: tmpfs, or ext4 on a loop device that can be forced read-only."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "tmpfs":
        return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)]).returncode == 0
    image = folder.with_suffix(".img")
    subprocess.run(["truncate", "-s", "16M", str(image)], check=True)
    made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True).returncode == 0
    options = "loop,errors=remount-ro"
    return made and subprocess.run(["mount", "-o", options, str(image), str(folder)]).returncode == 0


def _fill(folder: Path) -> None:
    """Fill the filesystem to the last byte."""
    subprocess.run(["dd", "if=/dev/zero", f"of={folder / 'filler'}", "bs=4k"], capture_output=True)


def _first_audited_after(box: LiveBox, t: float | None) -> float | None:
    if t is None:
        return None
    later = [when for when, r in box.heard.results_after(t) if r.audited]
    return round(later[0] - t, 2) if later else None


def fault_disk_full(box: LiveBox) -> dict[str, Any]:
    serve = box.start_serve()
    box.start_stream(BASE_FPS)
    box.wait_results(5)
    _fill(box.audit_log.parent)
    start = time.monotonic()
    time.sleep(FAULT_S)
    alarm = [hb for when, hb in box.heard.heartbeats if when > start and hb.audit and not hb.audit.ok]
    (box.audit_log.parent / "filler").unlink()
    end = time.monotonic()
    box.wait_results(5, after=end, timeout=30)
    unaudited = sum(1 for when, r in box.heard.results if start <= when <= end and r.audited is False)
    return {"serve": serve, "end": end, "heartbeat_alarm": bool(alarm), "results_marked_unaudited": unaudited}


def fault_read_only(box: LiveBox) -> dict[str, Any]:
    """The kernel forcing the audit filesystem read-only, as it does after I/O errors (ext4 errors=remount-ro).
    Such a filesystem stays read-only until it is checked and mounted again: there is no recovery to time."""
    serve = box.start_serve()
    box.start_stream(BASE_FPS)
    box.wait_results(5)
    mounts = Path("/proc/mounts").read_text().splitlines()
    device = next(line.split()[0] for line in mounts if f" {box.audit_log.parent} " in line)
    Path(f"/sys/fs/ext4/{Path(device).name}/trigger_fs_error").write_text("benchmarks faults\n")
    start = time.monotonic()
    time.sleep(FAULT_S)
    alarm = [hb for when, hb in box.heard.heartbeats if when > start and hb.audit and not hb.audit.ok]
    unaudited = sum(1 for when, r in box.heard.results if when >= start and r.audited is False)
    return {"serve": serve, "end": None, "heartbeat_alarm": bool(alarm), "results_marked_unaudited": unaudited}


def fault_kill9(box: LiveBox) -> dict[str, Any]:
    first = box.start_serve()
    box.start_stream(4 * BASE_FPS, sessions=4)
    box.wait_results(30)
    killed_at = time.monotonic()
    killed = box.stop_serve(first, signal.SIGKILL)
    serve = box.start_serve()
    end = time.monotonic()
    box.wait_results(5, after=end, timeout=60)
    down_s = end - killed_at  # frames sent meanwhile reach no runtime, so none can count them
    return {
        "serve": serve,
        "end": end,
        "killed_exit": killed.code,
        "down_s": round(down_s, 1),
        "frames_sent_while_down_est": round(4 * BASE_FPS * down_s),
    }


def _stop_and_continue(box: LiveBox, target: str) -> dict[str, Any]:
    serve = box.start_serve()
    box.start_stream(BASE_FPS)
    box.wait_results(5)
    proc = serve if target == "serve" else box.stream
    proc.send_signal(signal.SIGSTOP)
    time.sleep(FAULT_S)
    proc.send_signal(signal.SIGCONT)
    end = time.monotonic()
    box.wait_results(3, after=end, timeout=30)
    return {"serve": serve, "end": end}


def fault_sigstop_serve(box: LiveBox) -> dict[str, Any]:
    return _stop_and_continue(box, "serve")


def fault_sigstop_stream(box: LiveBox) -> dict[str, Any]:
    return _stop_and_continue(box, "stream")


def fault_clock_jump(box: LiveBox) -> dict[str, Any]:
    if not FAKETIME_LIBRARY.is_file():
        raise FileNotFoundError(f"{FAKETIME_LIBRARY} (Debian's faketime) is missing")
    clock = box.work / "faketime"
    clock.write_text("+0\n")
    serve = box.start_serve(faketime_file=clock)
    box.start_stream(BASE_FPS)
    box.wait_results(5)
    clock.write_text("+3600\n")  # one hour forward ...
    time.sleep(FAULT_S)
    clock.write_text("+0\n")  # ... and back
    end = time.monotonic()
    box.wait_results(5, after=end, timeout=30)
    jumped = sum(1 for _, hb in box.heard.heartbeats if hb.ts - time.time() > 3000)  # serve's clock did move
    return {"serve": serve, "end": end, "heartbeats_stamped_an_hour_ahead": jumped}


def fault_bundle_removed(box: LiveBox) -> dict[str, Any]:
    serve = box.start_serve()
    box.start_stream(BASE_FPS)
    box.wait_results(5)
    away = box.bundle.with_name("bundle-moved-away")
    box.bundle.rename(away)
    serve.send_signal(signal.SIGHUP)  # an update to a bundle that is gone must be refused
    time.sleep(FAULT_S)
    away.rename(box.bundle)
    refused = [hb.model_update for _, hb in box.heard.heartbeats if hb.model_update and not hb.model_update.ok]
    end = time.monotonic()
    box.wait_results(5, after=end, timeout=30)
    return {"serve": serve, "end": end, "update_refused": refused[-1].error if refused else None}


def fault_model_update(box: LiveBox) -> dict[str, Any]:
    """Not a fault: the update a site makes. A new signed version put at the bundle path, then SIGHUP."""
    serve = box.start_serve()
    box.start_stream(BASE_FPS)
    box.wait_results(5)
    staged = box.bundle.with_name("bundle-next")
    shutil.copytree(box.bundle, staged)
    meta = json.loads((staged / "bundle.json").read_text())
    (staged / "bundle.json").write_text(json.dumps(meta | {"version": meta["version"] + "-next"}, indent=1))
    sign_bundle(staged, box.trusted.parent / "keys" / "faults.secret")
    box.bundle.rename(box.bundle.with_name("bundle-previous"))
    staged.rename(box.bundle)
    asked = time.monotonic()
    serve.send_signal(signal.SIGHUP)
    swapped = None
    while swapped is None and time.monotonic() - asked < 60:
        later = [when for when, hb in box.heard.heartbeats if when > asked and hb.model.version.endswith("-next")]
        swapped = later[0] if later else None
        time.sleep(0.1)
    on_new = lambda: sum(1 for _, r in box.heard.results if r.model.version.endswith("-next"))  # noqa: E731
    while on_new() < 5 and time.monotonic() - asked < 60:
        time.sleep(0.1)
    times = [when for when, _ in box.heard.results]
    gaps = [b - a for a, b in itertools.pairwise(times) if a >= asked - 5]
    return {
        "serve": serve,
        "end": asked,
        "swap_s": None if swapped is None else round(swapped - asked, 2),
        "longest_gap_between_results_s": round(max(gaps), 2) if gaps else None,
        "results_on_new_model": on_new(),
    }


def fault_stalled_subscriber(box: LiveBox) -> dict[str, Any]:
    serve = box.start_serve()
    ctx = zmq.Context()
    stalled = ctx.socket(zmq.SUB)  # connects, subscribes to everything, never reads
    stalled.setsockopt(zmq.RCVHWM, 10)
    stalled.setsockopt(zmq.SUBSCRIBE, b"")
    stalled.connect(f"tcp://127.0.0.1:{box.results_port}")
    box.start_stream(2 * BASE_FPS, sessions=4)
    start = time.monotonic()
    box.wait_results(5)
    time.sleep(3 * FAULT_S)
    stalled.close(linger=0)
    ctx.destroy(linger=0)
    end = time.monotonic()
    return {"serve": serve, "end": end, "results_heard_while_stalled": len(box.heard.results_after(start))}


def fault_flood(box: LiveBox) -> dict[str, Any]:
    import psutil

    serve = box.start_serve()
    box.start_stream(10 * BASE_FPS, sessions=4)
    box.wait_results(5)
    process = psutil.Process(serve.pid)
    rss_start = process.memory_info().rss / 2**20
    time.sleep(3 * FAULT_S)
    rss_end = process.memory_info().rss / 2**20
    return {"serve": serve, "end": time.monotonic(), "serve_rss_mb": [round(rss_start), round(rss_end)]}


FAULTS: dict[str, tuple[str, Callable[[LiveBox], dict[str, Any]], str | None]] = {
    # name: (what it does, the fault, the filesystem the audit folder must be on: tmpfs, ext4 or any)
    "disk_full": ("the audit filesystem (tmpfs) filled to the last byte for 5 s, then freed", fault_disk_full, "tmpfs"),
    "read_only": (
        "the kernel forces the audit filesystem (ext4) read-only, as after I/O errors",
        fault_read_only,
        "ext4",
    ),
    "kill9": ("kill -9 of serve under 60 frames/s, 4 sessions; restarted on the same log", fault_kill9, None),
    "sigstop_serve": ("SIGSTOP of serve for 5 s, then SIGCONT", fault_sigstop_serve, None),
    "sigstop_stream": ("SIGSTOP of the scanner's stream for 5 s, then SIGCONT", fault_sigstop_stream, None),
    "clock_jump": ("serve's wall clock +1 h for 5 s, then back (monotonic clock untouched)", fault_clock_jump, None),
    "bundle_removed": ("the bundle folder moved away, SIGHUP to it, restored 5 s later", fault_bundle_removed, None),
    "model_update": ("a new signed version put at the bundle path, then SIGHUP", fault_model_update, None),
    "stalled_subscriber": (
        "a results subscriber that never reads, 15 s at 30 frames/s",
        fault_stalled_subscriber,
        False,
    ),
    "flood_10x": ("frames at 150 frames/s (10x), 4 sessions, 15 s", fault_flood, None),
}


def _result_key(record: dict[str, Any]) -> tuple:
    trigger = record["trigger"]
    return record["session"], trigger, record["frames"][trigger]["seq"], record["frames"][trigger]["ts"]


def _frames_counted(box: LiveBox) -> tuple[int, int]:
    """Frames received and counted lost in transport, over every serve process (counters restart with one)."""
    received = lost = 0
    last: dict[str, int] | None = None
    for _, metrics in [*box.heard.metrics, (None, None)]:
        counters = metrics.counters if metrics else None
        if last is not None and (
            counters is None or counters.get("frames_received", 0) < last.get("frames_received", 0)
        ):
            received += last.get("frames_received", 0)
            lost += last.get("frames_lost_in_transport", 0)
        last = counters
    return received, lost


def account(box: LiveBox, outcome: dict[str, Any]) -> dict[str, Any]:
    """What went in, what came out, what the audit log holds, and what was lost beyond what was counted."""
    records = read_audit(box.audit_log) if box.audit_log.exists() else []
    in_log = {_result_key(r) for r in records if "record" not in r}
    heard = [r for _, r in box.heard.results]
    claimed_but_missing = [r for r in heard if r.audited and _result_key(r.model_dump(mode="json")) not in in_log]
    received, lost_in_transport = _frames_counted(box)
    published = sum(e.results_published for e in box.exits)
    verdict = verify_audit(box.audit_log) if box.audit_log.exists() else None
    final = box.exits[-1]
    ttl_ended = sum(1 for r in records if r.get("record") == "exam_final" and r.get("why") == "ttl")
    return {
        "frames_sent": box.frames_sent,
        "frames_per_s_sent": round(box.frames_sent / max(box.stream_seconds, 1e-9), 1),
        "frames_received": received,
        "frames_lost_in_transport_counted": lost_in_transport,
        "frames_unaccounted": box.frames_sent - received - lost_in_transport,
        "results_published": published,
        "results_heard": len(heard),
        "results_marked_unaudited": sum(1 for r in heard if r.audited is False),
        "audit_results": len(in_log),
        "results_lost_uncounted": len(claimed_but_missing),
        "audit_intact": None if verdict is None else verdict.intact,
        "audit_torn_lines": None if verdict is None else len(verdict.torn),
        "exams_ended_by_ttl": ttl_ended,
        "recovery_s": _first_audited_after(box, outcome["end"]),
        "exit_code": final.code,
        "last_line": final.last_line,
    }


def run_fault(name: str, bundle: Path, trusted: Path, work: Path) -> dict[str, Any]:
    what, fault, own_disk = FAULTS[name]
    folder = work / name
    audit_dir = folder / "audit"
    if own_disk and not _mount_disk(audit_dir, own_disk):
        return {"fault": what, "skipped": f"cannot mount {own_disk} for the audit folder (needs root)"}
    box = LiveBox(folder, bundle, trusted, audit_dir / "results.jsonl")
    try:
        outcome = fault(box)
        box.stop_stream()
        time.sleep(2.5)  # two metrics periods: the last metrics message counts every frame
        box.stop_serve(outcome.pop("serve"))
        report = {"fault": what, **account(box, outcome), "notes": {k: v for k, v in outcome.items() if k != "end"}}
    except Exception as exc:  # a fault that breaks the harness is reported, and the other faults still run
        report = {"fault": what, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        box.close()
        if own_disk:
            shutil.copytree(audit_dir, folder / "audit-kept", dirs_exist_ok=True)
            subprocess.run(["umount", "-l", str(audit_dir)], check=False)  # a loop device detaches with it
    return report


def signed_copy(bundle: Path, work: Path) -> tuple[Path, Path]:
    """The bundle copied and signed by a key made for this run, and the folder trusting only that key."""
    copy, keys = work / "bundle", work / "keys"
    shutil.copytree(bundle, copy)
    secret, public = make_signing_key(keys, "faults")
    sign_bundle(copy, secret)
    trusted = work / "trusted"
    trusted.mkdir()
    shutil.copy(public, trusted)
    return copy, trusted


def _notes(notes: dict[str, Any]) -> str:
    return "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in notes.items())


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Faults against a live serve",
        "",
        f"Machine: {result['machine'].get('cpu')}; flags {result['machine'].get('flags')}",
        "",
        "| fault | frames sent / received / counted lost / unaccounted | results published / heard / unaudited "
        "(said) / in log / lost uncounted | chain | TTL-ended exams | recovery s | exit | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in result["faults"].items():
        if "error" in r or "skipped" in r:
            lines.append(f"| {name} | {r.get('error') or r.get('skipped')} | | | | | | |")
            continue
        frames = f"{r['frames_sent']} / {r['frames_received']} / {r['frames_lost_in_transport_counted']} / "
        frames += f"**{r['frames_unaccounted']}**"
        results = f"{r['results_published']} / {r['results_heard']} / {r['results_marked_unaudited']} / "
        results += f"{r['audit_results']} / **{r['results_lost_uncounted']}**"
        chain = "intact" if r["audit_intact"] else "BROKEN"
        chain += f", {r['audit_torn_lines']} torn" if r["audit_torn_lines"] else ""
        lines.append(
            f"| {name} | {frames} | {results} | {chain} | {r['exams_ended_by_ttl']} | {r['recovery_s']} | "
            f"{r['exit_code']}: {r['last_line'][:110]} | {_notes(r['notes'])} |"
        )
    lines += ["", *(f"- **{name}**: {r['fault']}" for name, r in result["faults"].items())]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--bundle", type=click.Path(file_okay=False, exists=True, path_type=Path), required=True)
@click.option("--only", multiple=True, type=click.Choice(list(FAULTS)), help="Run only these faults.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("out/benchmarks/faults"), show_default=True)
def main(bundle: Path, only: tuple[str, ...], out: Path) -> None:
    """Each fault against a live serve; prints a table and writes faults.json and faults.md."""
    result: dict[str, Any] = {"machine": machine(), "faults": {}}
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        signed, trusted = signed_copy(bundle, Path(tmp))
        for name in only or FAULTS:
            click.echo(f"fault {name}: {FAULTS[name][0]} ...", err=True)
            result["faults"][name] = report = run_fault(name, signed, trusted, Path(tmp))
            click.echo(f"  {report}", err=True)
    text = markdown(result)
    write_reports(out, "faults", result, text)
    click.echo(text)
