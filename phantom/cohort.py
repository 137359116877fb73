"""Write a phantom cohort to disk: images (screen PNGs, DICOM files or cropped PNGs), truth masks,
manifest.csv, profiles.json, truth.json and a contact sheet.

The manifest has the same columns users give for real data (see trainer.manifest), and profiles.json holds
every scanner profile the manifest names, so every downstream path (validate, train, export, serve) runs on
the phantom exactly as on hospital images: ``trainer train --manifest M --profiles profiles.json``.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.contracts import OTHER_VIEW, VIEWS
from phantom.contact_sheet import build_contact_sheet
from phantom.formats import FORMATS, ViewFiles, profile_entry, profile_name, write_rgb_png, write_view
from phantom.layouts import CLASSIC_LAYOUTS, assign_layouts, get_layout, layouts_by_vendor
from phantom.other_views import OTHER_KINDS
from phantom.render import APPEARANCES, render_other, render_view
from phantom.subject import PDFF_DISTRIBUTIONS, Subject, draw_cohort

MANIFEST_COLUMNS = ("subject_id", "view", "scanner", "path", "pdff")


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


def image_stem(subject: Subject, view: str) -> str:
    return f"{subject.subject_id}_{view}"


@dataclass(frozen=True)
class CohortForm:
    """How the cohort is written: which screen layouts, which file forms, how many cine frames per DICOM."""

    layouts: tuple[str, ...] = CLASSIC_LAYOUTS
    formats: tuple[str, ...] = ("screen",)
    cine_frames: int = 1
    other_frames: int = 0  # rows per subject showing neither view (phantom.other_views), view = "other"; the
    # command line writes 4 by default (so a default export has a view gate), the API none (tests opt in)
    appearance: str = "standard"  # or "shifted": imaged unlike anything in training (phantom.render.shifted)
    pdff_distribution: str = "paper"  # or "severity-rich" (phantom.subject.PDFF_DISTRIBUTIONS)
    id_prefix: str = "PH"  # subject ids are PREFIX0001...; another site's patients get their own prefix

    def shots(self, subject: Subject) -> list[str]:
        """What to render for a subject: its two views, then ``other:KIND:K`` for each other frame."""
        first = subject.index * self.other_frames  # kinds rotate over the cohort, so every kind appears
        kinds = [OTHER_KINDS[(first + k) % len(OTHER_KINDS)] for k in range(self.other_frames)]
        return [*VIEWS, *(f"{OTHER_VIEW}:{kind}:{k}" for k, kind in enumerate(kinds))]

    def plan_formats(self, subjects: Sequence[Subject]) -> dict[int, str]:
        """Subject index -> file form; each layout's subjects take the forms in turn, so every layout
        appears in every form once it has as many subjects as there are forms."""
        turns: Counter[str] = Counter()
        plan = {}
        for s in subjects:
            plan[s.index] = self.formats[turns[s.screen_layout] % len(self.formats)]
            turns[s.screen_layout] += 1
        return plan

    def frame_of(self, subject: Subject) -> int | None:
        """The cine frame the manifest picks (None: single-frame files, no frame column)."""
        return subject.index % self.cine_frames if self.cine_frames > 1 else None

    def check(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise ValueError(f"unknown format(s) {unknown}; expected some of {', '.join(FORMATS)}")
        if self.cine_frames < 1:
            raise ValueError("cine_frames must be at least 1")
        layouts_by_vendor(self.layouts)  # names every unknown layout
        if self.appearance not in APPEARANCES:
            raise ValueError(f"unknown appearance {self.appearance!r}; expected one of {', '.join(APPEARANCES)}")
        if self.pdff_distribution not in PDFF_DISTRIBUTIONS:
            raise ValueError(f"unknown PDFF distribution {self.pdff_distribution!r}")
        if not self.id_prefix.isalnum():
            raise ValueError(f"id prefix {self.id_prefix!r}: letters and digits only (it starts every subject id)")


Job = tuple[Subject, str, int, str, bool, str, int, str]


def _render_and_write(job: Job) -> ViewFiles:
    subject, shot, seed, out_dir, with_masks, fmt, cine_frames, appearance = job
    if shot in VIEWS:
        frames = cine_frames if fmt == "dicom" else 1
        rendered = [render_view(subject, shot, seed, frame=k, appearance=appearance) for k in range(frames)]
        stem = image_stem(subject, shot)
    else:
        _, kind, k = shot.split(":")
        rendered = [render_other(subject, kind, seed, frame=int(k))]
        stem = f"{subject.subject_id}_{OTHER_VIEW}{k}_{kind}"
    mask = rendered[0].mask if with_masks else None
    layout = get_layout(subject.screen_layout)
    return write_view(Path(out_dir), stem, layout, fmt, [r.screen for r in rendered], mask)


def _run_jobs(jobs: list[Job], workers: int) -> Iterator[ViewFiles]:
    if workers <= 1:
        yield from map(_render_and_write, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_render_and_write, jobs, chunksize=2)


def _write_manifest(
    out: Path, subjects: Sequence[Subject], files: dict, formats: dict[int, str], form: CohortForm, masks: bool
) -> None:
    columns = [*MANIFEST_COLUMNS, *(["frame"] if form.cine_frames > 1 else []), *(["mask_path"] if masks else [])]
    with open(out / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for s in subjects:
            fmt = formats[s.index]
            for shot in form.shots(s):
                view = shot if shot in VIEWS else OTHER_VIEW
                row = {"subject_id": s.subject_id, "view": view, "path": files[(s.index, shot)].image}
                row |= {"scanner": profile_name(get_layout(s.screen_layout), fmt), "pdff": f"{s.pdff:.2f}"}
                if "frame" in columns:
                    row["frame"] = form.frame_of(s) if fmt == "dicom" and view in VIEWS else 0
                if masks:
                    row["mask_path"] = files[(s.index, shot)].mask
                writer.writerow(row)


def _write_profiles(out: Path, subjects: Sequence[Subject], formats: dict[int, str]) -> None:
    """Every profile the manifest names, in the profiles-file form trainer and serve read."""
    entries = {}
    for s in subjects:
        layout = get_layout(s.screen_layout)
        entries[profile_name(layout, formats[s.index])] = profile_entry(layout, formats[s.index])
    (out / "profiles.json").write_text(json.dumps(dict(sorted(entries.items())), indent=1) + "\n")


def generate_cohort(
    out_dir: str | Path,
    n_subjects: int,
    seed: int,
    prevalence: float = 39 / 90,
    with_masks: bool = True,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    form: CohortForm = CohortForm(),
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
        form: screen layouts, file forms and cine length (default: the two classic screens as PNG).
    """
    start = time.perf_counter()
    form.check()
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    if with_masks:
        (out / "masks").mkdir(exist_ok=True)
    vendors = tuple(layouts_by_vendor(form.layouts))
    drawn = draw_cohort(
        n_subjects, seed, prevalence, form.id_prefix, vendors=vendors, pdff_distribution=form.pdff_distribution
    )
    subjects = assign_layouts(drawn, form.layouts)
    formats = form.plan_formats(subjects)
    jobs = [
        (s, shot, seed, str(out), with_masks, formats[s.index], form.cine_frames, form.appearance)
        for s in subjects
        for shot in form.shots(s)
    ]
    files = {}
    for (subject, shot, *_), written in zip(jobs, _run_jobs(jobs, workers or os.cpu_count() or 1), strict=True):
        files[(subject.index, shot)] = written
        if on_progress:
            on_progress(1)
    _write_manifest(out, subjects, files, formats, form, with_masks)
    _write_profiles(out, subjects, formats)
    truth = {
        "generator": "fatty-liver-edge phantom",
        "seed": seed,
        "n_subjects": n_subjects,
        "prevalence": prevalence,
        "layouts": list(form.layouts),
        "formats": list(form.formats),
        "appearance": form.appearance,
        "pdff_distribution": form.pdff_distribution,
        "subjects": [s.to_dict() for s in subjects],
    }
    if form.other_frames:
        truth["other_frames"] = {
            files[(s.index, shot)].image: shot.split(":")[1] for s in subjects for shot in form.shots(s)[len(VIEWS) :]
        }
    (out / "truth.json").write_text(json.dumps(truth, indent=1))

    def load_bmode(subject: Subject, view: str) -> np.ndarray:
        x, y, w, h = get_layout(subject.screen_layout).profile.crop_box
        return render_view(subject, view, seed).screen[y : y + h, x : x + w]

    write_rgb_png(out / "contact_sheet.png", build_contact_sheet(subjects, load_bmode))
    return CohortSummary(out_dir=out, subjects=subjects, seconds=time.perf_counter() - start)
