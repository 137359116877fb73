"""`benchmarks profile-detect`: scanner onboarding on every phantom screen layout.

For each layout, ``--grabs`` screen grabs of different subjects, views, speckle and PDFF (some frozen with
calipers and text in the image, one with burned-in patient text touching the image, one a dual display) go through
``detect_boxes``; the IoU of each box against the layout's true B-mode box(es) and the time per grab are reported,
with the worst grab of each layout drawn in a PNG for a person to check.
Optionally the grabs are JPEG re-encoded first (capture cards that only deliver MJPEG).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np

from benchmarks.common import machine, write_reports
from edge_runtime.scanners.detect import detect_boxes, draw_overlay, iou
from phantom.layouts import LAYOUTS, assign_layouts
from phantom.render import render_dual, render_view
from phantom.subject import draw_cohort

BAR_IOU = 0.97


def _grab(layout: str, subject, seed: int, jpeg: int | None) -> np.ndarray:
    if LAYOUTS[layout].second_box is not None:
        screen = render_dual(subject, seed, layout, frame=subject.index % 3).screen
    else:
        screen = render_view(
            subject, ("liver", "kidney_liver")[subject.index % 2], seed, frame=subject.index % 3
        ).screen
    if jpeg is None:
        return screen
    _, data = cv2.imencode(".jpg", cv2.cvtColor(screen, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg])
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def run_layout(layout: str, grabs: int, seed: int, jpeg: int | None) -> tuple[dict[str, Any], np.ndarray]:
    """One layout's figures and an overlay of its worst grab."""
    truth = LAYOUTS[layout].boxes
    subjects = draw_cohort(grabs, seed, vendors=(LAYOUTS[layout].vendor,))
    if LAYOUTS[layout].second_box is None:
        subjects = assign_layouts(subjects, [layout])
    scores, times, worst = [], [], (2.0, None, None)
    for subject in subjects:
        screen = _grab(layout, subject, seed, jpeg)
        start = time.perf_counter()
        boxes = detect_boxes(screen)
        times.append((time.perf_counter() - start) * 1000)
        same = len(boxes) == len(truth)  # a wrong number of boxes scores as a miss
        scores.append(min(iou(b, t) for b, t in zip(boxes, truth, strict=True)) if same else 0.0)
        if scores[-1] < worst[0]:
            worst = (scores[-1], boxes, screen)
    overlay = worst[2]
    for box in worst[1]:
        overlay = draw_overlay(overlay, box, f"{layout}: IoU {worst[0]:.3f}")
    for x, y, w, h in truth:
        cv2.rectangle(overlay, (x, y), (x + w - 1, y + h - 1), (255, 0, 255), 1)  # the truth, thin magenta
    figures = {
        "screen": list(LAYOUTS[layout].profile.screen_size),
        "truth_boxes": [list(t) for t in truth],
        "worst_iou": min(scores),
        "mean_iou": float(np.mean(scores)),
        "worst_boxes": [list(b) for b in worst[1]],
        "ms_per_grab_p50": float(np.median(times)),
        "passes": min(scores) >= BAR_IOU,
    }
    return figures, overlay


def markdown(result: dict[str, Any]) -> str:
    flags = " ".join(result["machine"]["flags"])
    lines = [
        f"# Scanner onboarding: `profile detect` on {len(result['layouts'])} phantom layouts",
        "",
        f"{result['grabs']} grabs per layout (seed {result['seed']}), JPEG quality {result['jpeg'] or 'none (PNG)'}; "
        f"bar: worst IoU >= {BAR_IOU}. CPU: {result['machine']['cpu']} ({flags}).",
        "",
        "| layout | screen | worst IoU | mean IoU | ms per grab (p50) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, f in result["layouts"].items():
        lines.append(
            f"| {name} | {f['screen'][0]}x{f['screen'][1]} | {f['worst_iou']:.4f} | {f['mean_iou']:.4f} "
            f"| {f['ms_per_grab_p50']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _sheet(overlays: list[np.ndarray]) -> np.ndarray:
    tiles = [cv2.resize(o, (640, round(640 * o.shape[0] / o.shape[1])), interpolation=cv2.INTER_AREA) for o in overlays]
    height = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    rows = [
        np.hstack(tiles[i : i + 2] + [np.zeros_like(tiles[0])] * (2 - len(tiles[i : i + 2])))
        for i in range(0, len(tiles), 2)
    ]
    return np.vstack(rows)


@click.command()
@click.option("--grabs", type=click.IntRange(1, 500), default=20, show_default=True, help="Grabs per layout.")
@click.option("--seed", type=int, default=31, show_default=True)
@click.option("--jpeg", type=click.IntRange(10, 100), default=None, help="Re-encode grabs as JPEG of this quality.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/benchmarks/profile_detect")
def main(grabs: int, seed: int, jpeg: int | None, out_dir: str) -> None:
    """Worst and mean IoU of the detected B-mode box per layout; writes profile_detect.{json,md,png}."""
    result: dict[str, Any] = {"grabs": grabs, "seed": seed, "jpeg": jpeg, "machine": machine(), "layouts": {}}
    overlays = []
    for layout in LAYOUTS:
        result["layouts"][layout], overlay = run_layout(layout, grabs, seed, jpeg)
        overlays.append(overlay)
        click.echo(f"{layout}: worst IoU {result['layouts'][layout]['worst_iou']:.4f}", err=True)
    out = Path(out_dir)
    write_reports(out, "profile_detect", result, markdown(result))
    cv2.imwrite(str(out / "profile_detect.png"), cv2.cvtColor(_sheet(overlays), cv2.COLOR_RGB2BGR))
    click.echo(markdown(result))
