"""`benchmarks dicom`: the bedside as a DICOM storage node, against a live `edge-runtime serve --dicom-listen`.

- **Throughput.** A kidney-liver still, then a 60-frame 640x480 liver cine loop of the same phantom study, stored by
  dcmtk's storescu: the pipeline's pace on the loop (results per second, first to last) against the pace the
  encoder's own invoke p50 allows (measured in the same run, before the box starts), frames per second end to end
  (the store's transfer included), the time from the store's last byte to the exam update of the loop's last
  frame and from that frame's encoding to its exam update, and where each frame's time went (per-stage p50).
- **Hostile peers.** ``--hostile`` malformed or hostile datasets over many associations (truncated pixel data, a
  wrong VR, huge Rows and Columns, no pixel data, no study UID), plus associations from an unlisted AE title,
  associations proposing only a non-image SOP class, and connections that never speak: every dataset must get its
  failure status, the counters must match exactly, the box must keep serving, and its memory stay bounded (RSS
  before and after).
"""

from __future__ import annotations

import copy
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import machine, time_calls, write_reports
from benchmarks.fault_box import LiveBox
from edge_runtime.tools.ports import free_port

CINE_FRAMES, CINE_SIZE = 60, (640, 480)
BOX_CONFIG = '[runtime.dicom]\nallowed_calling = ["SCANNER"]\nnetwork_timeout_s = 2.0\nstudy_idle_s = 5.0\n'

KINDS = ("truncated", "wrong_vr", "huge", "no_pixels", "no_study")
EXPECTED = {
    "truncated": (0xC000, "short_pixel_data"),
    "wrong_vr": (0xA900, "not_image"),
    "huge": (0xA700, "too_large"),
    "no_pixels": (0xA900, "not_image"),
    "no_study": (0xA900, "not_image"),
}


def _study_files(work: Path) -> tuple[list[Path], Any]:
    """A kidney-liver still and a 60-frame liver cine of one phantom study, 640x480, each region the whole frame."""
    import cv2

    from phantom.dicom import StudyIdentity, UltrasoundRegion, write_ultrasound_dicom
    from phantom.render import profile_for, render_view
    from phantom.subject import draw_cohort

    subject = draw_cohort(2, 41, vendors=("GE",))[0]
    profile, identity = profile_for(subject), StudyIdentity.new(subject.subject_id)
    x, y, w, h = profile.crop_box

    def frame(view: str, k: int) -> np.ndarray:
        box = render_view(subject, view, 41, frame=k).screen[y : y + h, x : x + w]
        return cv2.resize(box, CINE_SIZE, interpolation=cv2.INTER_AREA)

    region = [UltrasoundRegion(0, 0, CINE_SIZE[0] - 1, CINE_SIZE[1] - 1)]
    still = write_ultrasound_dicom(work / "kidney.dcm", frame("kidney_liver", 0), region, "GE", profile.name, identity)
    loop = np.stack([frame("liver", 1 + k) for k in range(CINE_FRAMES)])
    cine = write_ultrasound_dicom(work / "cine.dcm", loop, region, "GE", profile.name, identity)
    return [still, cine], identity


def _storescu(files: list[Path], port: int) -> None:
    args = ["storescu", "-aet", "SCANNER", "-aec", "FATTYLIVER", "127.0.0.1", str(port), *map(str, files)]
    subprocess.run(args, check=True, capture_output=True, timeout=300)


def encoder_invoke_p50(bundle_dir: Path, invokes: int = 60) -> float:
    """The int8 encoder's own invoke p50 (ms), in this run, on this machine, before the box starts: the pace a frame
    source could reach if nothing but the encoder took time."""
    from edge_runtime.contracts import INPUT_SHAPE, VIEWS
    from edge_runtime.model.bundle import load_bundle

    bundle, tensor = load_bundle(bundle_dir, num_threads=2), np.zeros(INPUT_SHAPE, np.uint8)
    return float(np.percentile(time_calls(lambda: bundle.encode(VIEWS[0], tensor), invokes), 50))


def throughput(box: LiveBox, port: int, work: Path) -> dict[str, Any]:
    """The cine loop through the live box: frames per second from the store's start to the exam's last update, the
    time from the last byte to that update, and where each frame's time went (per-stage p50)."""
    (still, cine), identity = _study_files(work)
    _storescu([still], port)
    started = time.monotonic()
    _storescu([cine], port)
    last_byte = time.monotonic()
    box.wait_results(CINE_FRAMES, timeout=300, after=started)
    ours = [(t, r) for t, r in box.heard.results_after(started) if r.session == identity.study_uid]
    done = ours[-1][0] if ours else float("nan")
    stages = {
        k: float(np.median([r.latency_ms[k] for _, r in ours if k in r.latency_ms])) for k in ours[-1][1].latency_ms
    }
    after_encode = sum(
        ms for k, ms in ours[-1][1].latency_ms.items() if k in ("gate", "pair", "head", "exam", "publish")
    )
    heard = [t for t, _ in ours]
    return {
        "frames": CINE_FRAMES,
        "results": len(ours),
        "store_s": last_byte - started,
        "frames_per_s": CINE_FRAMES / (done - started),
        "pace_frames_per_s": (len(heard) - 1) / (heard[-1] - heard[0]) if len(heard) > 1 else float("nan"),
        "last_byte_to_exam_update_s": done - last_byte,
        "last_frame_encoded_to_exam_update_ms": after_encode,
        "stage_p50_ms": stages,
    }


def _hostile(ds: Any, kind: str) -> Any:
    from pydicom.dataelem import DataElement

    bad = copy.deepcopy(ds)  # a shallow copy shares its elements with the good image
    if kind == "truncated":
        bad.PixelData = bad.PixelData[: len(bad.PixelData) // 2]
    elif kind == "wrong_vr":
        bad[0x00280010] = DataElement(0x00280010, "LO", "four hundred")  # Rows as text
    elif kind == "huge":
        bad.Rows, bad.Columns = 65000, 65000
    elif kind == "no_pixels":
        del bad.PixelData
    else:
        del bad.StudyInstanceUID
    return bad


def hostile(box: LiveBox, port: int, work: Path, count: int) -> dict[str, Any]:
    """``count`` hostile datasets (25 per association) and hostile peers; the statuses each got."""
    import psutil
    import pydicom
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, UltrasoundImageStorage

    (still, _), _ = _study_files(work)
    good, pid = pydicom.dcmread(still), box.serves[-1].pid
    rss_before = psutil.Process(pid).memory_info().rss / 2**20
    statuses: dict[str, list[int]] = {kind: [] for kind in KINDS}
    peers = {"unlisted_ae_refused": 0, "ct_only_refused": 0, "idle_closed": 0}
    for start in range(0, count, 25):
        idle = socket.create_connection(("127.0.0.1", port), timeout=60)
        for title, sop, key in (("INTRUDER", UltrasoundImageStorage, "unlisted_ae_refused"),
                                ("SCANNER", CTImageStorage, "ct_only_refused")):  # fmt: skip
            peer = AE(ae_title=title)
            peer.add_requested_context(sop)
            assoc = peer.associate("127.0.0.1", port, ae_title="FATTYLIVER")
            peers[key] += not assoc.is_established or not assoc.accepted_contexts
            if assoc.is_established:
                assoc.release()
        scanner = AE(ae_title="SCANNER")
        scanner.add_requested_context(UltrasoundImageStorage, str(good.file_meta.TransferSyntaxUID))
        assoc = scanner.associate("127.0.0.1", port, ae_title="FATTYLIVER")
        for i in range(start, min(start + 25, count)):
            kind = KINDS[i % len(KINDS)]
            statuses[kind].append(int(assoc.send_c_store(_hostile(good, kind)).Status))
        assoc.release()
        peers["idle_closed"] += idle.recv(1) == b""  # closed by the network timeout
        idle.close()
    _storescu([still], port)  # still serving: a valid image is stored and analysed
    time.sleep(2.5)  # one metrics period
    rss_after = psutil.Process(pid).memory_info().rss / 2**20
    return {"statuses": statuses, "peers": peers, "rss_mb": [rss_before, rss_after]}


def markdown(result: dict[str, Any]) -> str:
    t, h, m = result["throughput"], result["hostile"], result["machine"]
    allowed = 1000 / result["encoder_p50_ms"]
    right = all(all(s == EXPECTED[k][0] for s in v) for k, v in h["statuses"].items())
    lines = [
        "# DICOM storage node (`serve --dicom-listen`)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, flags {' '.join(m['flags'])}",
        "",
        f"- {t['frames']}-frame {CINE_SIZE[0]}x{CINE_SIZE[1]} cine loop: {t['frames_per_s']:.1f} frames/s end to end, "
        f"stored in {t['store_s']:.2f} s, last byte -> exam update {t['last_byte_to_exam_update_s']:.2f} s, "
        f"{t['results']} results",
        f"- the encoder's own invoke p50 in this run: {result['encoder_p50_ms']:.1f} ms, so {allowed:.1f} frames/s at "
        f"most; the pipeline's pace on the cine (first to last result) {t['pace_frames_per_s']:.1f} frames/s, "
        f"{t['pace_frames_per_s'] / allowed:.0%} of that (bar: 80 %); end to end, store included, "
        f"{t['frames_per_s'] / allowed:.0%}",
        f"- the last frame: encoded -> its exam update in {t['last_frame_encoded_to_exam_update_ms']:.0f} ms "
        "(bar: 1 s)",
        "- per-stage p50 (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in t["stage_p50_ms"].items()),
        f"- {sum(len(v) for v in h['statuses'].values())} hostile datasets: every status as expected: {right}; "
        f"counters match: {result['counters_match']}",
        f"- peers: {h['peers']}; a valid store afterwards analysed: {result['still_serving']}",
        f"- serve RSS {h['rss_mb'][0]:.0f} MB before, {h['rss_mb'][1]:.0f} MB after",
    ]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--trusted-keys", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--hostile", "hostile_n", type=click.IntRange(5, 5000), default=500, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/dicom")
def main(bundle_dir: str, trusted_keys: str, hostile_n: int, out_dir: str) -> None:
    """Throughput of a stored cine loop and the node's answers to hostile peers, against a live serve."""
    out, port = Path(out_dir), free_port()
    encoder_p50 = encoder_invoke_p50(Path(bundle_dir))
    with tempfile.TemporaryDirectory() as tmp:
        box = LiveBox(Path(tmp) / "box", Path(bundle_dir), Path(trusted_keys), Path(tmp) / "audit" / "log.jsonl")
        config = Path(tmp) / "edge.toml"
        config.write_text(BOX_CONFIG)
        try:
            box.start_serve(extra=("--config", str(config), "--dicom-listen", f"127.0.0.1:{port}"))
            result: dict[str, Any] = {"machine": machine(), "encoder_p50_ms": encoder_p50}
            result["throughput"] = throughput(box, port, Path(tmp))
            before = dict(box.heard.metrics[-1][1].counters)
            result["hostile"] = hostile(box, port, Path(tmp), hostile_n)
            after = box.heard.metrics[-1][1].counters
        finally:
            box.close()
    expected = {f"dicom_failed_{EXPECTED[k][1]}": 0 for k in KINDS}
    for kind, got in result["hostile"]["statuses"].items():
        expected[f"dicom_failed_{EXPECTED[kind][1]}"] += len(got)
    result["counters_match"] = all(after.get(k, 0) - before.get(k, 0) == n for k, n in expected.items())
    result["still_serving"] = after.get("dicom_objects_analysed", 0) - before.get("dicom_objects_analysed", 0) == 1
    write_reports(out, "dicom", result, markdown(result))
    click.echo(markdown(result))
