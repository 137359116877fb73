"""`benchmarks gate`: the bundle's view gate and out-of-distribution guard on phantom cohorts it never saw.

Three cohorts are rendered with a seed the bundle was not trained on:
- independent: the training layouts, standard appearance, with view=other frames of every kind;
- new layout (optional): a screen layout outside the training set, cropped by its own profile;
- shifted: the same subjects imaged unlike anything in training (finer speckle, narrow dynamic range, a bright
  grey map, gain far out of range).

Every frame goes through the bedside's own path (preprocess_frame, the bundle's encoder, the colour check,
the view head, the guard). Reported: the view confusion matrix at the bundle's floor, other frames admitted,
the guard's flag rate (and why: features, speckle or clipping) on the independent and the shifted cohort and
the AUC of its score between them, the bundle's calls where the guard is silent, and the gate's added time per
frame (colour check, view head, repeat fingerprint, guard).
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click
import numpy as np
import zmq

from benchmarks.common import machine, summarise, time_calls, write_reports
from edge_runtime.config import load_config
from edge_runtime.contracts import FATTY_PDFF, GUARD_LIMIT, OTHER_VIEW, VIEWS
from edge_runtime.model.bundle import Bundle, load_bundle
from edge_runtime.model.served import ServedModel
from edge_runtime.pipeline.frame import FrameContext
from edge_runtime.pipeline.repeats import frame_fingerprint
from edge_runtime.scanners.profiles import default_profiles, load_profiles
from edge_runtime.server import EdgeServer
from phantom.cohort import CohortForm, generate_cohort
from phantom.stream import EXAM_SCRIPT, PhantomStream, prepare_sessions
from trainer.dataset import Cohort, read_cohort

ROUTES = (*VIEWS, "rejected")


def _frames(cohort: Cohort) -> list[tuple[str, np.ndarray, str]]:
    """(true class, model input, subject) of every frame of a cohort."""
    out = [(v, cohort.image(s, v), s) for s in cohort.ids for v in VIEWS]
    return out + [(OTHER_VIEW, image, s) for s in cohort.ids for image in cohort.others.get(s, [])]


def route(bundle: Bundle, tensor: np.ndarray, features: np.ndarray) -> str:
    """Where the bedside files an 'auto' frame: a view, or rejected."""
    predicted, confidence = bundle.gate.sort(tensor, features)
    floor = bundle.meta.view_gate.confidence_floor
    return predicted if predicted in VIEWS and confidence >= floor else "rejected"


def score_cohort(bundle: Bundle, cohort: Cohort) -> dict[str, Any]:
    """Confusion (true class x route), guard scores of the view frames (flagged above GUARD_LIMIT) and why, and
    the bundle's calls on the cohort's subjects: all of them, and those whose frames the guard let through."""
    confusion = {c: dict.fromkeys(ROUTES, 0) for c in (*VIEWS, OTHER_VIEW)}
    scores: dict[str, list[float]] = {v: [] for v in VIEWS}
    reasons: Counter[str] = Counter()
    features: dict[tuple[str, str], np.ndarray] = {}
    for truth, tensor, subject in _frames(cohort):
        encoded = bundle.encode(VIEWS[0], tensor)
        if bundle.gate.view_head is not None:
            confusion[truth][route(bundle, tensor, encoded)] += 1
        if truth in VIEWS:
            features[subject, truth] = encoded
            scored = bundle.gate.guard_score(truth, tensor, encoded)
            if scored is not None:
                scores[truth].append(scored[0])
                reasons[scored[1]] += scored[0] > GUARD_LIMIT
    views = sum(confusion[v][v] for v in VIEWS), sum(sum(confusion[v].values()) for v in VIEWS)
    others = confusion[OTHER_VIEW]
    flags = [x > GUARD_LIMIT for v in VIEWS for x in scores[v]]
    return {
        "confusion": confusion,
        "view_accuracy": views[0] / max(views[1], 1),
        "other_admitted": (others["liver"] + others["kidney_liver"]) / max(sum(others.values()), 1),
        "flagged": float(np.mean(flags)) if flags else None,
        "flagged_by": dict(reasons),
        "calls": _calls(bundle, cohort, features, scores),
        "scores": scores,
    }


def _calls(bundle: Bundle, cohort: Cohort, features: dict, scores: dict[str, list[float]]) -> dict[str, Any]:
    """The bundle's AUC and accuracy on every subject, and on those with neither view flagged: whether the model
    is right where the guard stays silent."""
    fatty = cohort.pdff() >= FATTY_PDFF
    p = np.array([bundle.answer({v: features[s, v] for v in VIEWS}).p_fatty for s in cohort.ids])
    passed = np.all(np.array([scores[v] for v in VIEWS]) <= GUARD_LIMIT, axis=0) if scores[VIEWS[0]] else None
    silent = call_figures(p, fatty, bundle.threshold, passed) if passed is not None else None
    return {"all": call_figures(p, fatty, bundle.threshold, np.ones(len(p), bool)), "guard_passed": silent}


def call_figures(p_fatty: np.ndarray, fatty: np.ndarray, threshold: float, keep: np.ndarray) -> dict[str, Any]:
    """AUC and accuracy of the calls on the kept subjects; None where they are undefined (one class, or no
    subject kept: a guard that flags every subject leaves no call to judge).

    Args:
        p_fatty: the bundle's probability per subject.
        fatty: the truth per subject.
        threshold: the bundle's decision threshold.
        keep: which subjects count.
    """
    from sklearn.metrics import roc_auc_score

    both = len(set(fatty[keep])) == 2
    auc = float(roc_auc_score(fatty[keep], p_fatty[keep])) if both else None
    accuracy = float(np.mean((p_fatty[keep] >= threshold) == fatty[keep])) if keep.any() else None
    return {"subjects": int(keep.sum()), "auc": auc, "accuracy": accuracy}


def _auc(negatives: list[float], positives: list[float]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score([0] * len(negatives) + [1] * len(positives), negatives + positives))


def _cohort(out: Path, subjects: int, seed: int, form: CohortForm, harmonisation: str) -> Cohort:
    generate_cohort(out, subjects, seed, with_masks=False, form=form)
    profiles = load_profiles(out / "profiles.json")
    return read_cohort(out / "manifest.csv", profiles, progress=False, harmonisation=harmonisation)


def _latency(bundle: Bundle, cohort: Cohort) -> dict[str, float]:
    """What the gate adds to one frame at the bedside: colour check, view head, repeat fingerprint, its view's
    guard (features, speckle and clipping)."""
    tensor = cohort.image(cohort.ids[0], VIEWS[0])
    features = bundle.encode(VIEWS[0], tensor)

    def gate_once() -> None:
        if bundle.gate.view_head is not None:
            bundle.gate.sort(tensor, features)
        frame_fingerprint(tensor)
        bundle.gate.guard_score(VIEWS[0], tensor, features)

    return summarise(time_calls(gate_once, 2000, warmup=50))


def scripted_exams(bundle_dir: str, sessions: int, seed: int, fps: float = 2.0) -> dict[str, Any]:
    """Whole phantom exams (liver, kidney, probe lifted, gallbladder, partial contact, back) sent with view
    'auto' through the server's own processing, every result checked against what its frames showed.

    Args:
        bundle_dir: the bundle.
        sessions: exams, interleaved.
        seed: the phantom seed (not a training seed).
        fps: frames per second per exam, on a simulated clock (the bedside processes about this many).
    """
    audit = Path(tempfile.mkdtemp()) / "audit.jsonl"
    config = load_config(None, {"audit": {"log": audit}})
    server = EdgeServer(
        config, ServedModel.prepared(load_bundle(bundle_dir), default_profiles(), config), zmq.Context()
    )
    shots = tuple(dict.fromkeys(shot for shot, _ in EXAM_SCRIPT))
    stream = PhantomStream(prepare_sessions(sessions, seed, 2, shots=shots), fps, 1.0, script=EXAM_SCRIPT, auto=True)
    shows: dict[tuple[str, int], str] = {}
    results, correct = 0, 0
    length = sum(seconds for _, seconds in EXAM_SCRIPT)
    for i in range(int(length * fps * sessions)):
        header, image = stream.frame(i, i / (fps * sessions))
        shows[header.session, header.seq] = stream.last_truth["shows"]
        result = server.pipeline.run(FrameContext(header, image.tobytes(), time.time()))
        if result is not None:
            results += 1
            correct += all(shows[result.session, result.frames[v].seq] == v for v in VIEWS)
    server.bedside.audit.close()
    counters = server.stats.snapshot()["counters"]
    gated = {k: v for k, v in counters.items() if k.startswith("gate_rejected")}
    return {"frames": len(shows), "results": results, "correct_pairs": correct, "gate_rejected": gated}


def calls_line(calls: dict[str, Any]) -> str:
    def part(f: dict[str, Any]) -> str:
        if not f["subjects"]:
            return "no subjects"
        auc = "n/a" if f["auc"] is None else f"{f['auc']:.3f}"
        return f"{f['subjects']} subjects, AUC {auc}, accuracy {100 * f['accuracy']:.1f} %"

    passed = calls.get("guard_passed")
    silent = f"; where the guard is silent: {part(passed)}" if passed else ""
    return f"The bundle's calls: {part(calls['all'])}{silent}."


def markdown(r: dict[str, Any]) -> str:
    flags = " ".join(r["machine"]["flags"])
    lines = [f"# View gate and guard: bundle {r['bundle']}", "", f"CPU: {r['machine']['cpu']} ({flags}).", ""]
    for name, c in r["cohorts"].items():
        lines += [f"## {name} ({c['subjects']} subjects, seed {r['seed']})", ""]
        if c["view_accuracy"] is not None:
            lines += [f"View accuracy {100 * c['view_accuracy']:.1f} %, other frames admitted "
                      f"{100 * c['other_admitted']:.1f} %.", "", "| true \\ routed | " + " | ".join(ROUTES) + " |",
                      "| --- | --- | --- | --- |"]  # fmt: skip
            lines += [f"| {t} | " + " | ".join(str(row[k]) for k in ROUTES) + " |" for t, row in c["confusion"].items()]
        if c["flagged"] is not None:
            by = ", ".join(f"{k} {n}" for k, n in sorted(c["flagged_by"].items()) if n) or "none"
            lines += ["", f"Guard flags {100 * c['flagged']:.1f} % of view frames (by {by})."]
        lines += ["", calls_line(c["calls"])]
        lines.append("")
    if r.get("guard_auc") is not None:
        lines.append(f"Guard score AUC, independent vs shifted: {r['guard_auc']:.3f}.")
    lines.append(f"Gate per frame (colour, view head, repeat check, guard): p50 {r['gate_ms']['p50'] * 1000:.0f} us.")
    if r.get("exams"):
        e = r["exams"]
        lines += ["", f"Scripted exams with view 'auto': {e['frames']} frames, {e['results']} results, "
                  f"{e['correct_pairs']} from correct pairs; kept out by the gate: {e['gate_rejected']}."]  # fmt: skip
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--subjects", type=click.IntRange(4, 400), default=40, show_default=True)
@click.option("--seed", type=int, default=4242, show_default=True, help="A seed the bundle never trained on.")
@click.option("--other-frames", type=click.IntRange(0, 20), default=7, show_default=True)
@click.option("--new-layout", default=None, help="Also score a screen layout outside the training set.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/gate")
def main(bundle_dir: str, subjects: int, seed: int, other_frames: int, new_layout: str | None, out_dir: str) -> None:
    """View confusion, other frames admitted, guard flag rates and AUC, gate latency; writes gate.*."""
    bundle = load_bundle(bundle_dir)
    if bundle.gate is None:
        raise click.ClickException(f"{bundle_dir} has no view gate or guard (exported before they existed?)")
    layouts = tuple(sorted({n for n, s in (bundle.meta.scanners or {}).items() if s.screen}))
    forms = {"independent": CohortForm(layouts or CohortForm().layouts, other_frames=other_frames)}
    forms["shifted"] = CohortForm(forms["independent"].layouts, appearance="shifted")
    if new_layout:
        forms[f"new layout {new_layout}"] = CohortForm((new_layout,), other_frames=other_frames)
    result: dict[str, Any] = {"bundle": bundle_dir, "seed": seed, "machine": machine(), "cohorts": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, form in forms.items():
            cohort = _cohort(Path(tmp) / name.replace(" ", "_"), subjects, seed, form, bundle.harmonisation)
            scored = score_cohort(bundle, cohort)
            result["cohorts"][name] = {"subjects": subjects, **scored}
            if bundle.gate.view_head is None:
                result["cohorts"][name]["view_accuracy"] = None
            click.echo(f"{name}: scored", err=True)
        result["gate_ms"] = _latency(bundle, cohort)
    if bundle.gate.view_head is not None:
        result["exams"] = scripted_exams(bundle_dir, 4, seed)
    scores = {k: [x for v in c.pop("scores").values() for x in v] for k, c in result["cohorts"].items()}
    result["guard_auc"] = _auc(scores["independent"], scores["shifted"]) if scores["independent"] else None
    write_reports(Path(out_dir), "gate", result, markdown(result))
    click.echo(markdown(result))
