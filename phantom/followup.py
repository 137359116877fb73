"""The phantom follows patients: the same subject scanned again months later, at a new PDFF or at the same one.

What stays is what belongs to the patient and the site: the anatomy's statistics, the scanner and layout, the
operator's habits (preset, time-gain compensation, dynamic range) and the tissue's own echo offsets. What a new day
changes is what a sonographer changes without meaning to: the gain knob and the probe angle, a little. The body
wall follows the liver fat (the cohort draws subcutaneous fat with a 0.03 cm per PDFF point slope). Every visit has
its own speckle realisations, so no frame of one visit repeats in another. Change and no change both have known
truth: docs/PHANTOM.md, "Follow-up visits".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from phantom.dicom import StudyIdentity
from phantom.stream import StreamSession, render_shot
from phantom.study import StoredStudy, write_study
from phantom.subject import Subject

VISIT_FRAMES = 100_000  # speckle realisations per visit: visit k renders frames from k * VISIT_FRAMES
GAIN_JITTER_DB = 1.5  # sd of a sonographer's gain from one visit to the next
ANGLE_JITTER_DEG = 2.0  # sd of the probe angle from one visit to the next
SUBCUTANEOUS_PER_PDFF_CM = 0.03  # as phantom.subject.draw_cohort ties body wall to liver fat


@dataclass(frozen=True)
class Visit:
    """One visit of a followed subject: who, at which PDFF, which visit number and how many days after the first."""

    subject: Subject
    visit: int
    day: int


def revisit(subject: Subject, pdff: float, visit: int, day: int, seed: int) -> Visit:
    """``subject`` scanned again at ``pdff`` on visit ``visit`` (>= 1), ``day`` days after the first.

    Args:
        subject: the subject as first scanned (visit 0).
        pdff: the liver's PDFF at this visit, %.
        visit: the visit number (1, 2, ...); it seeds the day's jitter and the speckle.
        day: days since the first visit (the study date of a written series).
        seed: the cohort seed.
    """
    if visit < 1:
        raise ValueError(f"a revisit is visit 1 or later, got {visit}")
    if not 0.0 <= pdff <= 60.0:
        raise ValueError(f"PDFF must lie in [0, 60] %, got {pdff}")
    rng = np.random.default_rng([seed, subject.index, visit, 0xF011])
    again = replace(
        subject,
        pdff=round(float(pdff), 2),
        gain_db=subject.gain_db + float(rng.normal(0.0, GAIN_JITTER_DB)),
        probe_angle_deg=float(np.clip(subject.probe_angle_deg + rng.normal(0.0, ANGLE_JITTER_DEG), -12.0, 12.0)),
        subcutaneous_cm=max(0.5, subject.subcutaneous_cm + SUBCUTANEOUS_PER_PDFF_CM * (pdff - subject.pdff)),
    )
    return Visit(again, visit, day)


def first_visit(subject: Subject) -> Visit:
    return Visit(subject, 0, 0)


def visit_session(visit: Visit, seed: int, name: str, shots: tuple[str, ...], realisations: int = 3) -> StreamSession:
    """A live exam of one visit, pre-rendered like phantom.stream.prepare_sessions, with the visit's own speckle.

    Args:
        visit: the visit.
        seed: the cohort seed.
        name: the session name.
        shots: the views and other-frame kinds the exam script shows.
        realisations: speckle realisations per shot.
    """
    first = visit.visit * VISIT_FRAMES
    screens = {shot: [render_shot(visit.subject, shot, seed, first + k) for k in range(realisations)] for shot in shots}
    return StreamSession(name, visit.subject, screens)


FIRST_STUDY_DATE = dt.date(2026, 1, 5)


def parse_visits(text: str) -> list[tuple[int, float | None]]:
    """``DAY:PDFF,...`` (e.g. ``0:22,120:15,240:``): each visit's day and PDFF (empty: the subject's own)."""
    visits = []
    for part in text.split(","):
        day, _, pdff = part.strip().partition(":")
        try:
            visits.append((int(day), float(pdff) if pdff.strip() else None))
        except ValueError:
            raise ValueError(f"a visit is DAY:PDFF (e.g. 120:15.5), got {part.strip()!r}") from None
    days = [day for day, _ in visits]
    if days != sorted(set(days)) or days[0] < 0:
        raise ValueError(f"visit days must rise from 0 or later, got {days}")
    return visits


def write_series(
    out: str | Path, subject: Subject, visits: Sequence[tuple[int, float | None]], seed: int, **study: object
) -> list[StoredStudy]:
    """A patient's series of studies over months: one study per visit, each dated, all of one patient.

    Args:
        out: the folder; each visit writes ``visit_<day>/``.
        subject: the subject as first scanned.
        visits: (day, PDFF) per visit, PDFF None for the subject's own; the first is the first visit.
        seed: the cohort seed.
        study: passed to phantom.study.write_study (forms, cine_frames).
    """
    studies = []
    for number, (day, pdff) in enumerate(visits):
        visit = first_visit(subject) if number == 0 else revisit(subject, subject.pdff if pdff is None else pdff,
                                                                 number, day, seed)  # fmt: skip
        if number == 0 and pdff is not None:
            visit = Visit(replace(subject, pdff=round(pdff, 2)), 0, day)
        date = (FIRST_STUDY_DATE + dt.timedelta(days=day)).strftime("%Y%m%d")
        identity = replace(
            StudyIdentity.new(subject.subject_id, f"ACC{subject.subject_id}-{day}"[:16]), study_date=date
        )
        folder = Path(out) / f"visit_{day:04d}"
        studies.append(write_study(folder, visit.subject, seed, identity=identity,
                                   first_frame=number * VISIT_FRAMES, **study))  # fmt: skip
    return studies
