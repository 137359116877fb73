"""`benchmarks hri`: the hepatorenal index on kidney-liver frames of phantom subjects the product never saw.

Two cohorts are rendered with a seed of their own: the training consoles (PHILIPS- and GE-like layouts) and a
CANON-like console whose layout and physics no bundle trained on. Every frame goes through the bedside's own path
(preprocess_frame, then edge_runtime.measure.hri.measure_frame), and is judged against the phantom's truth masks:
- placement: both regions inside the true liver and cortex (at most 5 % of each region's pixels outside);
- agreement: Spearman rho of the automated HRI with the truth masks' HRI (liver in the cortex's depth band over
  the cortex), and of each with the true PDFF; the AUC of each for PDFF >= 5 %;
- what could not be measured, by reason and by PDFF band; the measurement's time per frame.
It writes hri.json, hri.md, a scatter of automated against truth HRI, and a sheet of frames with their regions.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from benchmarks.common import machine, summarise, write_reports
from edge_runtime.contracts import FATTY_PDFF, PDFF_BAND_NAMES
from edge_runtime.measure.hri import FrameHri, exam_hri, measure_frame
from edge_runtime.model.uncertainty import pdff_band
from phantom.anatomy import CORTEX, LIVER
from phantom.subject import draw_cohort
from phantom.truth import input_and_labels, truth_hri

COHORTS = {"training consoles": ("PHILIPS", "GE"), "unseen console": ("CANON",)}
INSIDE = 0.95  # a region is placed when at least this share of its pixels lies in its true tissue


def placed(hri: FrameHri, labels: np.ndarray) -> tuple[float, float]:
    """The share of each region's pixels inside its true tissue: cortex, liver."""
    cortex = (labels[hri.cortex.mask(labels.shape)] == CORTEX).mean()
    liver = (labels[hri.liver.mask(labels.shape)] == LIVER).mean()
    return float(cortex), float(liver)


def truth_at_depth(tensor: np.ndarray, labels: np.ndarray, hri: FrameHri) -> float:
    """The truth masks' HRI over the rows the two regions span: the index of ideal regions at the depth chosen, so
    its agreement with the automated one judges the regions alone, apart from which depth was chosen."""
    shape = labels.shape
    rows = np.flatnonzero((hri.liver.mask(shape) | hri.cortex.mask(shape)).any(axis=1))
    grey = tensor[:, :, 0].astype(np.float64)[rows]
    return float(grey[labels[rows] == LIVER].mean() / grey[labels[rows] == CORTEX].mean())


def score_subject(subject: Any, seed: int, frames: int) -> dict[str, Any]:
    """One subject's first frame judged against its masks, and its exam HRI over ``frames`` speckle realisations
    (as the bedside combines a cine loop's frames) against the truth masks' mean over the same frames."""
    tensor, labels = input_and_labels(subject, "kidney_liver", seed)
    started = time.perf_counter()
    hri = measure_frame(tensor)
    row = {
        "subject": subject.subject_id,
        "vendor": subject.vendor,
        "pdff": subject.pdff,
        "ms": (time.perf_counter() - started) * 1000,
        "truth": truth_hri(tensor, labels),
        "hri": hri.value,
        "absent": None if hri.absent is None else str(hri.absent),
    }
    if hri.value is not None:
        row["inside_cortex"], row["inside_liver"] = placed(hri, labels)
        row["truth_at_depth"] = truth_at_depth(tensor, labels, hri)
    more = [input_and_labels(subject, "kidney_liver", seed, k) for k in range(1, frames)]
    exam = exam_hri([hri, *(measure_frame(t) for t, _ in more)])
    truths = [row["truth"], *(truth_hri(t, m) for t, m in more)]
    row |= {"exam_hri": exam.value, "exam_frames": exam.frames, "exam_truth": float(np.exp(np.mean(np.log(truths))))}
    return row | {"_tensor": tensor, "_hri": hri}


def _rho(a: list[float], b: list[float]) -> float | None:
    return float(spearmanr(a, b).statistic) if len(a) >= 3 else None


def _auc(scores: list[float], pdff: list[float]) -> float | None:
    fatty = [p >= FATTY_PDFF for p in pdff]
    return float(roc_auc_score(fatty, scores)) if 0 < sum(fatty) < len(fatty) else None


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Placement, agreement and what was not measured, for one group of frames."""
    measured = [r for r in rows if r["hri"] is not None]
    both = [r for r in measured if min(r["inside_cortex"], r["inside_liver"]) >= INSIDE]
    auto, truth, pdff = ([r[k] for r in measured] for k in ("hri", "truth", "pdff"))
    exams = [r for r in rows if r["exam_hri"] is not None]
    bands = {name: [r for r in rows if pdff_band(r["pdff"]) == name] for name in PDFF_BAND_NAMES}
    return {
        "frames": len(rows),
        "measured": len(measured),
        "placed": len(both),
        "placed_share": len(both) / len(measured) if measured else None,
        "rho_truth": _rho(auto, truth),
        "rho_truth_at_depth": _rho(auto, [r["truth_at_depth"] for r in measured]),
        "rho_pdff_auto": _rho(auto, pdff),
        "rho_pdff_truth": _rho(truth, pdff),
        "auc_auto": _auc(auto, pdff),
        "auc_truth_same_frames": _auc(truth, pdff),
        "exams_measured": len(exams),
        "exam_rho_truth": _rho([r["exam_hri"] for r in exams], [r["exam_truth"] for r in exams]),
        "exam_rho_pdff_auto": _rho([r["exam_hri"] for r in exams], [r["pdff"] for r in exams]),
        "exam_rho_pdff_truth": _rho([r["exam_truth"] for r in exams], [r["pdff"] for r in exams]),
        "exam_auc": _auc([r["exam_hri"] for r in exams], [r["pdff"] for r in exams]),
        "absent": dict(Counter(r["absent"] for r in rows if r["absent"] is not None)),
        "measured_by_band": {k: f"{sum(r['hri'] is not None for r in v)}/{len(v)}" for k, v in bands.items()},
    }


def _figure(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Hepatorenal index on kidney-liver frames of new phantom subjects (benchmarks hri)",
        "",
        f"Machine: {result['machine']['cpu']}, flags {' '.join(result['machine']['flags'])}.",
        "",
        "| cohort | vendor | frames | measured | both regions inside | rho vs truth HRI | rho with PDFF: auto, "
        "truth | AUC PDFF>=5: auto, truth | exams: measured, rho vs truth, AUC | exams: rho with PDFF, auto, truth | "
        "measured per band | not measured |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cohort, vendors in result["cohorts"].items():
        for vendor, s in vendors.items():
            lines.append(
                f"| {cohort} | {vendor} | {s['frames']} | {s['measured']} | {s['placed']} "
                f"({_figure(s['placed_share'] and 100 * s['placed_share'], 0)} %) | {_figure(s['rho_truth'])} "
                f"({_figure(s['rho_truth_at_depth'])} at the chosen depth) | "
                f"{_figure(s['rho_pdff_auto'])}, {_figure(s['rho_pdff_truth'])} | {_figure(s['auc_auto'])}, "
                f"{_figure(s['auc_truth_same_frames'])} | {s['exams_measured']}, {_figure(s['exam_rho_truth'])}, "
                f"{_figure(s['exam_auc'])} | {_figure(s['exam_rho_pdff_auto'])}, {_figure(s['exam_rho_pdff_truth'])} | "
                f"{', '.join(f'{k} {v}' for k, v in s['measured_by_band'].items())} | "
                f"{', '.join(f'{k} {v}' for k, v in s['absent'].items()) or '-'} |"
            )
    t = result["time_ms"]
    lines += [
        "",
        f"An exam is {result['frames_per_exam']} speckle realisations of the view, combined as the bedside does; its "
        "truth is the masks' HRI over the same frames (geometric mean). Against the true PDFF, the two indices are "
        "judged side by side: the masks' index is a reference for placement, not for what the index should track.",
        f"Measurement per frame: p50 {t['p50']:.1f} ms, p90 {t['p90']:.1f} ms ({t['n']} frames).",
    ]
    return "\n".join(lines) + "\n"


def scatter(path: Path, rows: dict[str, list[dict[str, Any]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 4.5), squeeze=False)
    for ax, (cohort, group) in zip(axes[0], rows.items(), strict=True):
        for vendor in sorted({r["vendor"] for r in group}):
            mine = [r for r in group if r["vendor"] == vendor and r["hri"] is not None]
            ax.scatter([r["truth"] for r in mine], [r["hri"] for r in mine], s=14, label=vendor)
        ax.plot([0.6, 2.2], [0.6, 2.2], color="grey", lw=0.8)
        ax.set(title=cohort, xlabel="truth-mask HRI", ylabel="automated HRI")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sheet(path: Path, rows: list[dict[str, Any]], count: int = 12) -> None:
    """Frames with their regions drawn (cortex magenta, liver cyan) and the HRI, as a sonographer checks them."""
    tiles = []
    for r in rows[:count]:
        tile = cv2.cvtColor(np.ascontiguousarray(r["_tensor"][:, :, 0]), cv2.COLOR_GRAY2BGR)
        hri: FrameHri = r["_hri"]
        for region, colour in ((hri.cortex, (255, 0, 255)), (hri.liver, (255, 255, 0))):
            if region is not None:
                cv2.polylines(tile, [np.round(np.array(region.outline)).astype(np.int32)], True, colour, 1)
        said = f"{hri.value:.2f}" if hri.value is not None else str(hri.absent)
        cv2.putText(tile, f"{said} / {r['pdff']:.1f}%", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
        tiles.append(tile)
    while len(tiles) % 4:
        tiles.append(np.zeros_like(tiles[0]))
    cv2.imwrite(str(path), np.vstack([np.hstack(tiles[i : i + 4]) for i in range(0, len(tiles), 4)]))


@click.command()
@click.option("--subjects", type=click.IntRange(8, 400), default=60, show_default=True, help="Per cohort.")
@click.option("--seed", type=int, default=4444, show_default=True, help="A seed no bundle trained on.")
@click.option("--frames", type=click.IntRange(1, 20), default=4, show_default=True, help="Frames per exam.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/hri")
def main(subjects: int, seed: int, frames: int, out_dir: str) -> None:
    """Placement, agreement with the truth masks, and speed of the hepatorenal index."""
    out, grouped, result = Path(out_dir), {}, {"machine": machine(), "cohorts": {}, "seed": seed}
    result["frames_per_exam"] = frames
    for cohort, vendors in COHORTS.items():
        people = draw_cohort(subjects, seed, prevalence=0.6, vendors=vendors, pdff_distribution="severity-rich")
        rows = [score_subject(s, seed, frames) for s in people]
        grouped[cohort] = rows
        per_vendor = {v: summary([r for r in rows if r["vendor"] == v]) for v in vendors}
        result["cohorts"][cohort] = per_vendor | ({"all": summary(rows)} if len(vendors) > 1 else {})
        print(cohort, {v: (s["measured"], s["placed"], _figure(s["exam_rho_truth"])) for v, s in per_vendor.items()})
    everything = [r for rows in grouped.values() for r in rows]
    result["time_ms"] = summarise(np.array([r["ms"] for r in everything]))
    result["frames"] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in everything]
    write_reports(out, "hri", result, markdown(result))
    scatter(out / "hri_agreement.png", grouped)
    sheet(out / "hri_regions.png", everything)
    print(markdown(result))
