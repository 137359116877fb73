"""The phantom follows patients: the same subject scanned again months later, at a new PDFF or at the same one.

What stays is what belongs to the patient and the site: the anatomy's statistics, the scanner and layout, the
operator's habits (preset, time-gain compensation, dynamic range) and the tissue's own echo offsets. What a new day
changes is what a sonographer changes without meaning to: the gain knob and the probe angle, a little. The body
wall follows the liver fat (the cohort draws subcutaneous fat with a 0.03 cm per PDFF point slope). Every visit has
its own speckle realisations, so no frame of one visit repeats in another. Change and no change both have known
truth: docs/PHANTOM.md, "Follow-up visits".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from phantom.stream import StreamSession, render_shot
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
