"""The README's demo on embedded defaults: phantom cohort -> CLKL training -> int8 bundle -> live bedside run.

Every step prints what it runs and how long it took; every artefact lands in out/demo/. Defaults (48
subjects, the paper's 1000 epochs, which the kernel-form head loop trains in seconds, three appearance-look
families whose features take most of the time) take about six minutes on two CPU cores; fewer subjects leave
too few per fold to learn from. The summary scores each live exam
against the phantom's truth: flips of the per-pair call against flips of the exam call. The backbone uses random weights
(`none`) so the demo runs offline; set DEMO_WEIGHTS=imagenet (or a path to VGG19 no-top weights) for the
ImageNet backbone of the paper.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edge_runtime.audit import read_results
from edge_runtime.contracts import BundleMeta, ResultMessage
from edge_runtime.exam import count_flips

OUT = Path(os.environ.get("DEMO_OUT", "out/demo"))
SUBJECTS = int(os.environ.get("DEMO_SUBJECTS", "48"))
EPOCHS = os.environ.get("DEMO_EPOCHS")  # default: the paper's (1000 for the two-output head)
WEIGHTS = os.environ.get("DEMO_WEIGHTS", "none")
# Half of the default looks: extraction is the demo's cost (docs/DESIGN.md, "Across scanners").
DEMO_APPEARANCE = os.environ.get("DEMO_APPEARANCE", "gain,dynamic_range,zoom")
SEED = 2021
FRAMES, RESULTS = "tcp://127.0.0.1:5755", "tcp://127.0.0.1:5756"
PAGE = "127.0.0.1:8765"  # the bedside page (edge-runtime display), open it in a browser during the demo
BIN = Path(sys.executable).parent


def banner(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def step(title: str, *cmd: str) -> float:
    banner(title)
    print("    $ " + " ".join(cmd), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    took = time.perf_counter() - started
    print(f"    done in {took:.1f} s", flush=True)
    return took


def wait_until_served(url: str, timeout: float = 15.0) -> None:
    """The display process takes a moment to import and bind; wait for its page before looking at it."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)


class PageCamera:
    """Screenshots of the bedside page in a headless Chromium (when installed): no sessions, live, stale."""

    def __init__(self, url: str, out: Path):
        from edge_runtime.display.browser import BrowserMissing, headless_chromium

        self.url, self.out, self.browser = url, out, None
        print(f"    bedside page: {url} (open it in a browser while the exam runs)", flush=True)
        try:
            self.browser = headless_chromium()
        except BrowserMissing as exc:
            print(f"    no screenshots of the page: {exc}", flush=True)

    def shot(self, state: str, after_s: float = 0.0) -> None:
        if self.browser is None:
            return
        time.sleep(after_s)
        if self.browser.current_url != self.url:
            wait_until_served(self.url)
            self.browser.get(self.url)
            time.sleep(1.5)
        self.out.mkdir(parents=True, exist_ok=True)
        self.browser.save_screenshot(str(self.out / f"{state}.png"))
        print(f"    screenshot of the page ({state}): {self.out / f'{state}.png'}", flush=True)

    def close(self) -> None:
        if self.browser is not None:
            self.browser.quit()


def sign_demo_bundle(bundle: Path) -> Path:
    """Sign the bundle with the demo's own key (made once) and return the folder of keys `serve` trusts."""
    keys, trusted, edge = OUT / "keys", OUT / "trusted-keys", str(BIN / "edge-runtime")
    if not (keys / "demo.secret").is_file():
        step("signing key for the demo", edge, "keys", "signing", "--out", str(keys), "--name", "demo")
    trusted.mkdir(exist_ok=True)
    (trusted / "demo.public").write_bytes((keys / "demo.public").read_bytes())
    step("sign the bundle (serve trusts only bundles signed by a key in --trusted-keys)", edge, "bundle", "sign",
         str(bundle), "--key", str(keys / "demo.secret"))  # fmt: skip
    return trusted


def live(bundle: Path, trusted: Path) -> dict:
    banner("Bedside: edge-runtime serve + phantom exams with no view key (the bundle's gate decides) + live results")
    audit, truth = OUT / "audit" / "results.jsonl", OUT / "audit" / "truth.json"
    frame_log = OUT / "audit" / "frames.jsonl"
    audit.unlink(missing_ok=True)
    serve = subprocess.Popen(
        [
            str(BIN / "edge-runtime"),
            "serve",
            "--bundle",
            str(bundle),
            "--trusted-keys",
            str(trusted),
            "--frames",
            FRAMES,
            "--results",
            RESULTS,
            "--audit-log",
            str(audit),
            "--metrics-period",
            "5",
            "--thumbnails",
        ]
    )
    display = subprocess.Popen([str(BIN / "edge-runtime"), "display", "--results", RESULTS, "--listen", PAGE])
    camera = PageCamera(f"http://{PAGE}/", OUT / "display")
    camera.shot("no-sessions", after_s=3.0)
    stream = subprocess.Popen(
        [
            str(BIN / "phantom"),
            "stream",
            "--frames",
            FRAMES,
            "--fps",
            "15",
            "--sessions",
            "3",
            "--script",
            "exam",
            "--auto-views",
            "--frame-log",
            str(frame_log),
            "--duration",
            "25",
            "--seed",
            str(SEED),
            "--truth-log",
            str(truth),
        ]
    )
    try:
        subprocess.run([str(BIN / "edge-runtime"), "watch", "--results", RESULTS, "--timeout", "45"], check=False)
        camera.shot("live")
    finally:
        stream.send_signal(signal.SIGINT)
        stream.wait(15)
        serve.send_signal(signal.SIGTERM)
        serve.wait(20)
        camera.shot("stale", after_s=4.0)
        camera.close()
        display.send_signal(signal.SIGTERM)
        display.wait(15)
    print(f"    runtime exited with code {serve.returncode} (0 = clean shutdown)", flush=True)
    records = [ResultMessage.model_validate(r) for r in read_results(audit)] if audit.exists() else []
    e2e = np.array([r.latency_ms["end_to_end"] for r in records]) if records else np.zeros(1)
    enc = np.array([r.latency_ms["encode"] for r in records]) if records else np.zeros(1)
    return {
        "results": len(records),
        "sessions": sorted({r.session for r in records}),
        "e2e_p50": float(np.percentile(e2e, 50)),
        "e2e_p90": float(np.percentile(e2e, 90)),
        "e2e_max": float(e2e.max()),
        "encode_p50": float(np.percentile(enc, 50)),
        "audit": str(audit),
        "exams": exam_lines(records, json.loads(truth.read_text()) if truth.exists() else {}),
        "pairs": pair_line(records, frame_log),
    }


def pair_line(records: list[ResultMessage], frame_log: Path) -> str:
    """How many results were built from a liver frame and a kidney-liver frame, by the stream's own truth: the
    exams were sent with view 'auto', through air, gallbladder and a lifted probe."""
    if not frame_log.exists():
        return "no frame log"
    shows = {}
    for line in frame_log.read_text().splitlines():
        frame = json.loads(line)
        shows[frame["session"], frame["seq"]] = frame["shows"]
    correct = sum(all(shows.get((r.session, r.frames[v].seq)) == v for v in r.frames) for r in records)
    return f"{correct}/{len(records)} results from a true liver + kidney-liver pair ({len(shows)} frames sent)"


def exam_lines(records: list[ResultMessage], truth: dict) -> list[str]:
    """Per live exam: how often the per-pair call and the exam call flipped, the exam answer and the truth."""
    lines = []
    for session in sorted({r.session for r in records}):
        results = [r for r in records if r.session == session]
        exam = results[-1].exam
        if exam.pdff is None:
            answer = f"no call ({exam.reason})"
        else:
            answer = f"{exam.call or 'no call yet'} (p {exam.p_fatty:.2f}, PDFF {exam.pdff:.1f} %)"
        if exam.pdff_interval:
            lo, hi = exam.pdff_interval
            answer = answer[:-1] + f", {lo:.1f}-{hi:.1f} for 90 % of patients like this one)"
        if exam.call == "indeterminate":
            answer += f": {exam.reason}"
        known = truth.get(session)
        told = f"truth PDFF {known['pdff']:.1f} % ({'fatty' if known['fatty'] else 'normal'})" if known else "truth n/a"
        lines.append(
            f"  - {session}: {len(results)} pairs; flips: per-pair call {count_flips([r.fatty for r in results])}, "
            f"exam call {count_flips([r.exam.call for r in results if r.exam])}; exam {answer}; {told}"
        )
    return lines


def agreement_line(fidelity: dict, threshold: float) -> str:
    """Counts, not a percentage: with a handful of held-out subjects one borderline call is 17 %, and the
    reader should see how close to the threshold any changed call was."""
    rows = fidelity["per_subject"]
    changed = [r for r in rows if (r["p_float"] >= threshold) != (r["p_int8"] >= threshold)]
    line = f"float and int8 agree on {len(rows) - len(changed)}/{len(rows)} held-out subjects"
    if changed:
        line += " (changed: " + ", ".join(f"p_fatty {r['p_float']:.3f} -> {r['p_int8']:.3f}" for r in changed)
        line += "; see docs/DESIGN.md, 'Fidelity needs subjects')"
    return line


def main() -> int:
    started = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    cohort, run, bundle = OUT / "cohort", OUT / "run-clkl", OUT / "bundle-clkl-int8"
    step(
        f"1/4 Phantom cohort: {SUBJECTS} subjects with known PDFF, both views, PHILIPS-like and GE-like screens",
        str(BIN / "phantom"),
        "cohort",
        "--subjects",
        str(SUBJECTS),
        "--seed",
        str(SEED),
        "--out",
        str(cohort),
    )
    step(
        "2/4 CLKL training: frozen VGG19, light augmentation plus the three appearance families that carried "
        "over best between scanners, sector-median harmonisation, 5-fold subject-level cross-validation",
        str(BIN / "trainer"),
        "train",
        "--manifest",
        str(cohort / "manifest.csv"),
        "--out",
        str(run),
        "--weights",
        WEIGHTS,
        "--augment",
        "light",
        "--appearance",
        DEMO_APPEARANCE,
        *(["--epochs", EPOCHS] if EPOCHS else []),
        "--task",
        "both",
        "--bootstrap",
        "300",
        "--cache-dir",
        str(OUT / "feature-cache"),
    )
    step(
        "3/4 int8 export: calibration on held-out subjects, fidelity report, verified bundle",
        str(BIN / "trainer"),
        "export",
        "--run",
        str(run),
        "--out",
        str(bundle),
        "--int8",
        "--samples",
        "120",
        "--version",
        "0.1.0",
        "--no-debugger",
        "--allow-fidelity-miss",
    )
    trusted = sign_demo_bundle(bundle)
    summary = live(bundle, trusted)
    total = time.perf_counter() - started
    report = json.loads((run / "report.json").read_text())["pooled"]
    fidelity = json.loads((bundle / "fidelity.json").read_text())
    meta = BundleMeta.from_json((bundle / "bundle.json").read_bytes(), bundle / "bundle.json")
    lines = [
        "# Demo summary",
        "",
        f"- cohort: {SUBJECTS} phantom subjects, contact sheet `{cohort / 'contact_sheet.png'}`",
        f"- cross-validation (`{run / 'report.md'}`), pooled over all subjects: AUC {report['auc']:.3f}, "
        f"accuracy {report['accuracy']:.1%}, R^2 {report['r2']:.3f}; plots in `{run}`",
        f"- int8 bundle `{bundle}`: {agreement_line(fidelity, meta.outputs.p_fatty.threshold)}, PDFF mean |diff| "
        f"{fidelity['pdff_mean_abs_diff']:.2f} pp, encoder {fidelity['encoder_size_ratio']:.0%} of float",
        f"- live: {summary['results']} results for sessions {', '.join(summary['sessions'])}; end-to-end p50 "
        f"{summary['e2e_p50']:.0f} ms, p90 {summary['e2e_p90']:.0f} ms (encoder p50 {summary['encode_p50']:.0f} ms); "
        f"audit log `{summary['audit']}`",
        f"- views from the bundle's gate, no operator key: {summary['pairs']}",
        "- live exams (exam call = trimmed mean of recent pairs behind a hysteresis, docs/DESIGN.md):",
        *summary["exams"],
        f"- wall time {total / 60:.1f} min",
        "",
    ]
    (OUT / "SUMMARY.md").write_text("\n".join(lines))
    banner("4/4 Summary")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
