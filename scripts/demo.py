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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.contracts import BundleMeta, ExamEstimate, ResultMessage, Stage
from edge_runtime.pipeline.exam import count_flips
from edge_runtime.sinks.audit import read_final_exams, verify_audit

OUT = Path(os.environ.get("DEMO_OUT", "out/demo"))
SUBJECTS = int(os.environ.get("DEMO_SUBJECTS", "48"))
EPOCHS = os.environ.get("DEMO_EPOCHS")  # default: the paper's (1000 for the two-output head)
WEIGHTS = os.environ.get("DEMO_WEIGHTS", "none")
# Half of the default looks: extraction is the demo's cost (docs/DESIGN.md, "Across scanners").
DEMO_APPEARANCE = os.environ.get("DEMO_APPEARANCE", "gain,dynamic_range,zoom")
SEED = 2021
SESSIONS = 3
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


OVERFLOWING_JS = """
return Array.from(document.querySelectorAll('.card')).filter((card) => {
  const call = card.querySelector('.call');
  return call.scrollWidth > call.clientWidth || call.getBoundingClientRect().right > card.getBoundingClientRect().right;
}).map((card) => card.dataset.session + ': ' + card.querySelector('.call').innerText);
"""


class PageCamera:
    """Screenshots of the bedside page in headless Chromium (`make demo` installs it): no sessions, live, stale."""

    def __init__(self, url: str, out: Path):
        from edge_runtime.display.browser import BrowserMissing, headless_chromium

        self.url, self.out, self.browser, self.missing = url, out, None, None
        print(f"    bedside page: {url} (open it in a browser while the exam runs)", flush=True)
        try:
            self.browser = headless_chromium()
        except BrowserMissing as exc:
            self.missing = f"no screenshots of the page: {exc}"
            print(f"    {self.missing}", flush=True)

    def overflowing(self) -> list[str]:
        """What is wrong with the live page: no browser, no exam on it, or a verdict running out of its card."""
        if self.browser is None:
            return [self.missing or "no browser"]
        if not self.browser.find_elements("css selector", ".card"):
            return ["the live page shows no exam"]
        return [f"the verdict overflows its card ({said})" for said in self.browser.execute_script(OVERFLOWING_JS)]

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


def command(program: str, *words: str, **options: object) -> list[str]:
    """A command line: the program from this environment (none when empty), its words, then ``--option value``
    for each option (``--flag`` alone for True)."""
    line = [str(BIN / program)] if program else []
    line += list(words)
    for name, value in options.items():
        line += [f"--{name.replace('_', '-')}"] + ([] if value is True else [str(value)])
    return line


def live(bundle: Path, trusted: Path) -> LiveRun:
    banner("Bedside: edge-runtime serve + phantom exams with no view key (the bundle's gate decides) + live results")
    folder = OUT / "audit"
    run = LiveRun(folder / "results.jsonl", folder / "received.jsonl", folder / "truth.json", folder / "frames.jsonl")
    for path in (run.audit, run.received):
        path.unlink(missing_ok=True)
    serve = subprocess.Popen(
        command("edge-runtime", "serve", bundle=bundle, trusted_keys=trusted, frames=FRAMES, results=RESULTS)
        + command("", audit_log=run.audit, metrics_period=5, thumbnails=True)
    )
    display = subprocess.Popen(command("edge-runtime", "display", results=RESULTS, listen=PAGE))
    camera = PageCamera(f"http://{PAGE}/", OUT / "display")
    camera.shot("no-sessions", after_s=3.0)
    exams = {"fps": 15, "sessions": SESSIONS, "script": "exam", "auto_views": True, "duration": 25, "seed": SEED}
    stream = subprocess.Popen(
        command("phantom", "stream", frames=FRAMES, frame_log=run.frame_log, truth_log=run.truth, **exams)
    )
    try:
        watch = command("edge-runtime", "watch", results=RESULTS, timeout=45, record=run.received)
        subprocess.run(watch, check=False)
        camera.shot("live")
        run.problems += camera.overflowing()
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
    if serve.returncode != 0:
        run.problems.append(f"edge-runtime serve exited with code {serve.returncode}, not a clean shutdown")
    return run


@dataclass
class LiveRun:
    """Where the live part of the demo leaves its evidence, and what it found wrong."""

    audit: Path  # the box's audit log: every result, recorded before it is sent, and each exam's final answer
    received: Path  # what the display received (edge-runtime watch --record), with end-to-end times
    truth: Path  # each session's subject and true PDFF (the phantom stream's)
    frame_log: Path  # what each frame sent showed
    problems: list[str] = field(default_factory=list)


def summarise(run: LiveRun, sessions: int) -> dict:
    """The live figures, and every way the run fell short of what the demo says it does (``problems``)."""
    received = [ResultMessage.model_validate_json(line) for line in _lines(run.received)]
    finals = {f["session"]: f for f in read_final_exams(run.audit)} if run.audit.exists() else {}
    truth = json.loads(run.truth.read_text()) if run.truth.exists() else {}
    problems = list(run.problems) + _live_problems(received, finals, truth, sessions)
    if run.audit.exists() and not verify_audit(run.audit).intact:
        problems.append(f"the audit log {run.audit} does not verify: {verify_audit(run.audit).broken}")
    e2e = np.array([r.end_to_end_ms for r in received]) if received else np.full(1, np.nan)
    enc = np.array([r.latency_ms[Stage.ENCODE] for r in received]) if received else np.full(1, np.nan)
    return {
        "results": len(received),
        "sessions": sorted({r.session for r in received}),
        "e2e_p50": float(np.percentile(e2e, 50)),
        "e2e_p90": float(np.percentile(e2e, 90)),
        "encode_p50": float(np.percentile(enc, 50)),
        "audit": str(run.audit),
        "exams": exam_lines(received, finals, truth),
        "pairs": pair_line(received, run.frame_log),
        "problems": problems,
    }


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _live_problems(received: list[ResultMessage], finals: dict[str, dict], truth: dict, sessions: int) -> list[str]:
    """A played exam with no result, no final record, or a final record with no answer is a demo that failed."""
    problems = []
    if not received:
        problems.append("no result reached the display")
    if any(np.isnan(r.end_to_end_ms) for r in received):
        problems.append("a published result carries no end-to-end time")
    played = sorted(truth) or [f"#{k}" for k in range(sessions)]
    answered = {r.session for r in received}
    for session in played:
        if session not in answered:
            problems.append(f"exam {session} was played but got no result")
        elif session not in finals:
            problems.append(f"exam {session} ended with no final record in the audit log")
        elif finals[session]["exam"].get("call") is None:
            problems.append(f"exam {session} ended with no answer: {finals[session]['exam'].get('reason')}")
    return problems


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


def exam_lines(records: list[ResultMessage], finals: dict[str, dict], truth: dict) -> list[str]:
    """Per live exam: how often the per-pair call and the exam call flipped, the final answer and the truth."""
    lines = []
    for session in sorted({r.session for r in records}):
        results = [r for r in records if r.session == session]
        final = finals.get(session)
        exam = ExamEstimate.model_validate(final["exam"]) if final else results[-1].exam
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
    summary = summarise(live(bundle, trusted), SESSIONS)
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
    if summary["problems"]:
        lines += ["## DEMO FAILED", "", *(f"- {p}" for p in summary["problems"]), ""]
    (OUT / "SUMMARY.md").write_text("\n".join(lines))
    banner("4/4 Summary")
    print("\n".join(lines))
    if summary["problems"]:
        print(f"\nmake demo FAILED: {len(summary['problems'])} problem(s), listed above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
