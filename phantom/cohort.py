"""Write a phantom cohort to disk: scanner-screen PNGs, truth masks, manifest.csv, truth.json, contact sheet.

The manifest has the same columns users give for real data (see trainer.manifest), so every downstream
path (validate, train, export, serve) runs on the phantom exactly as on hospital images.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.schema import VIEWS
from phantom.contact_sheet import build_contact_sheet
from phantom.render import profile_for, render_view
from phantom.subject import Subject, draw_cohort

MANIFEST_COLUMNS = ("subject_id", "view", "scanner", "path", "pdff", "mask_path")
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


@dataclass
class CohortSummary:
    out_dir: Path
    subjects: list[Subject]
    seconds: float

    @property
    def manifest(self) -> Path:
        return self.out_dir / "manifest.csv"

    @property
    def contact_sheet(self) -> Path:
        return self.out_dir / "contact_sheet.png"


def image_name(subject: Subject, view: str) -> str:
    return f"{subject.subject_id}_{view}.png"


def write_rgb_png(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), PNG_PARAMS):
        raise OSError(f"could not write {path}")


def _render_and_write(job: tuple[Subject, str, int, str, bool]) -> None:
    subject, view, seed, out_dir, with_masks = job
    rendered = render_view(subject, view, seed)
    write_rgb_png(Path(out_dir) / "images" / image_name(subject, view), rendered.screen)
    if with_masks:
        cv2.imwrite(str(Path(out_dir) / "masks" / image_name(subject, view)), rendered.mask, PNG_PARAMS)


def _run_jobs(jobs: list[tuple[Subject, str, int, str, bool]], workers: int) -> Iterator[None]:
    if workers <= 1:
        for job in jobs:
            yield _render_and_write(job)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_render_and_write, jobs, chunksize=2)


def generate_cohort(
    out_dir: str | Path,
    n_subjects: int,
    seed: int,
    prevalence: float = 39 / 90,
    with_masks: bool = True,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> CohortSummary:
    """Render every subject's two views (in parallel; each image has its own seed, so order is irrelevant).

    Args:
        out_dir: the cohort folder.
        n_subjects: how many subjects.
        seed: the cohort seed (same seed, byte-identical files).
        prevalence: share of fatty subjects.
        with_masks: also write truth label masks.
        workers: rendering processes (default: all cores).
        on_progress: called with 1 after each rendered view.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    if with_masks:
        (out / "masks").mkdir(exist_ok=True)
    subjects = draw_cohort(n_subjects, seed, prevalence)
    jobs = [(s, v, seed, str(out), with_masks) for s in subjects for v in VIEWS]
    for _ in _run_jobs(jobs, workers if workers is not None else (os.cpu_count() or 1)):
        if on_progress:
            on_progress(1)

    with open(out / "manifest.csv", "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS if with_masks else MANIFEST_COLUMNS[:-1])
        for s in subjects:
            for v in VIEWS:
                row = [s.subject_id, v, profile_for(s).name, f"images/{image_name(s, v)}", f"{s.pdff:.2f}"]
                writer.writerow([*row, f"masks/{image_name(s, v)}"] if with_masks else row)

    truth = {
        "generator": "fatty-liver-edge phantom",
        "seed": seed,
        "n_subjects": n_subjects,
        "prevalence": prevalence,
        "subjects": [s.to_dict() for s in subjects],
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1))

    def load(subject: Subject, view: str) -> np.ndarray:
        bgr = cv2.imread(str(out / "images" / image_name(subject, view)), cv2.IMREAD_COLOR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    write_rgb_png(out / "contact_sheet.png", build_contact_sheet(subjects, load))
    return CohortSummary(out_dir=out, subjects=subjects, seconds=time.perf_counter() - start)
