"""A hospital's ultrasound archive and its MRI-PDFF results, with known truth: what `trainer site-cohort` pulls a
validation study from, and what `edge-runtime outcomes` reconciles.

Each patient is a person of the archive: a patient ID, a name, studies under their own accession numbers and dates
spread over eighteen months, each study one series of stills and cine loops of both views among frames of other
organs, as a sonographer stores them. The MRI comes within a few weeks of the ultrasound. Some patients are built to
be unusable, each in one way the cohort step must log by name (`edge_runtime.contracts.CohortOutcome`): no study
within the window of the MRI date, a study without a liver or without a kidney-liver view, or one imaged so unlike
training that the guard flags every frame. Some have a second study within the window (the nearer one is the
answer) or an old one outside it; distractor patients have studies and no MRI.

Written: ``archive/`` (DICOM, one folder per study), ``reference.csv`` and ``reference.fhir.json`` (the same
results as a list and as a FHIR Bundle of Observations), ``profiles.json`` and ``truth.json``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from edge_runtime.contracts import OTHER_VIEW, VIEWS
from edge_runtime.contracts.validation import CohortOutcome
from phantom.dicom import StudyIdentity, UltrasoundRegion, write_ultrasound_dicom
from phantom.formats import profile_entry, profile_name
from phantom.layouts import CLASSIC_LAYOUTS, assign_layouts, get_layout, layouts_by_vendor
from phantom.other_views import OTHER_KINDS
from phantom.render import render_other, render_view
from phantom.subject import Subject, draw_cohort

FIRST_DAY = dt.date(2025, 1, 6)
ARCHIVE_DAYS = 540  # studies spread over eighteen months
MRI_GAP_DAYS = 60  # the MRI within this many days of the ultrasound (the paper's mean gap was 45)
OUTSIDE_GAP_DAYS = (150, 260)  # a patient whose only ultrasound is this far from the MRI
SECOND_STUDY_GAP_DAYS = (66, 88)  # a second candidate study: within a 90-day window, further than the first
OLD_STUDY_DAYS = 400  # an old study of the same patient, outside any window
CINE_FIRST_FRAME = 1000  # cine loops use speckle realisations no still image of the study uses
TWO_STUDIES = "two_studies"  # a usable patient with a second candidate study


@dataclass(frozen=True)
class ArchivePlan:
    """How big the archive is and how its patients are imaged."""

    patients: int = 60
    seed: int = 0
    layouts: tuple[str, ...] = CLASSIC_LAYOUTS
    cine_frames: int = 4
    form: str = "jpeg-baseline"  # how the console compresses (phantom.dicom_forms), as most store ultrasound
    other_frames: int = 2
    distractors: int = 10
    prevalence: float = 0.45
    id_prefix: str = "AR"
    gain_shift_db: float = 0.0  # every console's gain this far off its preset (a drifted console)
    hard_cases: bool = True  # False: every patient usable, one study each (a box's everyday exams)

    def cases(self) -> list[str]:
        """Each reference patient's case, in a seeded order: mostly usable, a few of each unusable kind."""
        n = self.patients
        if not self.hard_cases:
            return [str(CohortOutcome.USED)] * n
        if n < 8:
            raise ValueError(f"an archive needs at least 8 patients (one of each case), got {n}")
        few, some = max(1, n // 30), max(1, n // 20)
        unusable = [CohortOutcome.NO_STUDY_IN_WINDOW] * some + [TWO_STUDIES] * some
        unusable += [CohortOutcome.NO_LIVER_FRAME, CohortOutcome.NO_KIDNEY_LIVER_FRAME, CohortOutcome.ALL_FLAGGED] * few
        cases = [str(c) for c in unusable] + [str(CohortOutcome.USED)] * (n - len(unusable))
        return [str(c) for c in np.random.default_rng([self.seed, 0xA2C]).permutation(cases)]


@dataclass(frozen=True)
class StudyPlan:
    """One study to write: whose, when, under which accession, with which shots ('liver', 'other:kind:k', ...)."""

    subject: Subject
    identity: StudyIdentity
    shots: tuple[str, ...]
    cine_frames: int
    appearance: str = "standard"


@dataclass(eq=False)
class ArchivePatient:
    """One person of the archive and the truth about them."""

    subject: Subject
    patient_id: str
    accession: str  # the ultrasound study the MRI is compared with
    us_date: dt.date
    mri_date: dt.date | None  # None: a distractor, no MRI
    case: str
    studies: list[str] = field(default_factory=list)  # StudyInstanceUIDs, the right one first
    instances: dict[str, str] = field(default_factory=dict)  # SOPInstanceUID -> shot, in the right study


def _day(days: int) -> dt.date:
    return FIRST_DAY + dt.timedelta(days=int(days))


def _uid(plan: ArchivePlan, *parts: object) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(plan.seed), plan.id_prefix, *map(str, parts)])


def _identity(plan: ArchivePlan, patient: ArchivePatient, accession: str, date: dt.date, k: int) -> StudyIdentity:
    name = f"ARCHIVE^{patient.subject.subject_id}"
    study, series = _uid(plan, patient.patient_id, k, "study"), _uid(plan, patient.patient_id, k, "series")
    return StudyIdentity(patient.patient_id, name, accession, study, series, date.strftime("%Y%m%d"), "101500")


def _shots(case: str, plan: ArchivePlan, subject: Subject) -> tuple[str, ...]:
    views = [v for v in VIEWS if not (case == CohortOutcome.NO_LIVER_FRAME and v == "liver")]
    views = [v for v in views if not (case == CohortOutcome.NO_KIDNEY_LIVER_FRAME and v == "kidney_liver")]
    kinds = [OTHER_KINDS[(subject.index + k) % len(OTHER_KINDS)] for k in range(plan.other_frames)]
    return (*views, *(f"cine:{v}" for v in views), *(f"{OTHER_VIEW}:{kind}:{k}" for k, kind in enumerate(kinds)))


def _patients(plan: ArchivePlan) -> list[ArchivePatient]:
    """The reference patients, then the distractors, with their dates, identifiers and cases."""
    total = plan.patients + plan.distractors
    vendors = tuple(layouts_by_vendor(plan.layouts))
    drawn = draw_cohort(total, plan.seed, plan.prevalence, plan.id_prefix, vendors=vendors)
    subjects = [replace(s, gain_db=s.gain_db + plan.gain_shift_db) for s in assign_layouts(drawn, plan.layouts)]
    rng = np.random.default_rng([plan.seed, 0xA2D])
    cases = plan.cases() + ["distractor"] * plan.distractors
    ids = rng.choice(9_000_000, size=total, replace=False) + 1_000_000
    out = []
    for k, (subject, case) in enumerate(zip(subjects, cases, strict=True)):
        us = _day(rng.integers(OLD_STUDY_DAYS // 4, ARCHIVE_DAYS))
        gap = int(rng.integers(-MRI_GAP_DAYS, MRI_GAP_DAYS + 1))
        if case == CohortOutcome.NO_STUDY_IN_WINDOW:
            gap = int(rng.choice([-1, 1]) * rng.integers(*OUTSIDE_GAP_DAYS))
        elif case == TWO_STUDIES:
            gap = int(rng.integers(-20, 21))
        mri = None if case == "distractor" else us + dt.timedelta(days=gap)
        accession = f"US{us.year}{k + 1:06d}"
        out.append(ArchivePatient(subject, f"{ids[k]}", accession, us, mri, case))
    return out


def _study_plans(plan: ArchivePlan, patient: ArchivePatient) -> list[StudyPlan]:
    """The patient's studies: the one to find, then a second candidate within the window, then an old one."""
    subject, case = patient.subject, patient.case
    appearance = "shifted" if case == CohortOutcome.ALL_FLAGGED else "standard"
    main = StudyPlan(
        subject, _identity(plan, patient, patient.accession, patient.us_date, 0), _shots(case, plan, subject),
        plan.cine_frames, appearance,
    )  # fmt: skip
    studies = [main]
    still_views = tuple(VIEWS)
    if case == TWO_STUDIES and patient.mri_date is not None:
        gap = int(np.random.default_rng([plan.seed, subject.index, 2]).integers(*SECOND_STUDY_GAP_DAYS))
        side = -1 if patient.us_date >= patient.mri_date else 1
        second = patient.mri_date + dt.timedelta(days=side * gap)
        studies.append(StudyPlan(subject, _identity(plan, patient, f"{patient.accession}B", second, 1), still_views, 0))
    if subject.index % 5 == 0 and plan.hard_cases:
        old = patient.us_date - dt.timedelta(days=OLD_STUDY_DAYS)
        studies.append(StudyPlan(subject, _identity(plan, patient, f"{patient.accession}O", old, 2), still_views, 0))
    return studies


def _render(subject: Subject, shot: str, seed: int, appearance: str, frames: int) -> np.ndarray:
    """One shot as screens: a still (H, W, 3) or a cine loop (N, H, W, 3)."""
    if shot.startswith(f"{OTHER_VIEW}:"):
        _, kind, k = shot.split(":")
        return render_other(subject, kind, seed, frame=int(k)).screen
    if shot.startswith("cine:"):
        view = shot.split(":")[1]
        return np.stack([render_view(subject, view, seed, CINE_FIRST_FRAME + j, appearance).screen
                         for j in range(frames)])  # fmt: skip
    return render_view(subject, shot, seed, appearance=appearance).screen


def write_study_plan(job: tuple[StudyPlan, int, str, str]) -> dict[str, str]:
    """Write one study (a worker's job): SOPInstanceUID -> shot of each file written."""
    import tempfile

    import pydicom

    from phantom.dicom_forms import transcode

    study, seed, folder, form = job
    out = Path(folder) / study.identity.study_uid
    out.mkdir(parents=True, exist_ok=True)
    layout = get_layout(study.subject.screen_layout)
    regions = [UltrasoundRegion.of_box(layout.profile.crop_box)]
    written = {}
    for number, shot in enumerate(study.shots, start=1):
        screens = _render(study.subject, shot, seed, study.appearance, study.cine_frames)
        with tempfile.TemporaryDirectory() as tmp:
            raw = write_ultrasound_dicom(
                Path(tmp) / "raw.dcm", screens, regions, layout.vendor, layout.name, study.identity, number
            )
            path = transcode(raw, out / f"{number:03d}.dcm", form)
        written[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = shot
    return written


def write_reference(patients: list[ArchivePatient], out: Path) -> None:
    """The MRI-PDFF results as a CSV list and as a FHIR Bundle; some rows name only the patient, some only the
    accession number, as hospital lists do."""
    rows = []
    for p in patients:
        if p.mri_date is None:
            continue
        by = p.subject.index % 9
        rows.append({
            "patient_id": "" if by == 4 else p.patient_id,
            "accession": "" if by == 7 else p.accession,
            "mri_date": p.mri_date.isoformat(),
            "pdff": f"{p.subject.pdff:.2f}",
        })  # fmt: skip
    with (out / "reference.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (out / "reference.fhir.json").write_text(fhir_bundle(rows))


def fhir_bundle(rows: list[dict[str, str]]) -> str:
    """Reference rows as a FHIR R5 Bundle of final PDFF Observations, built and checked by fhir.resources."""
    from fhir.resources.bundle import Bundle

    entries = []
    for k, row in enumerate(rows):
        observation = {
            "resourceType": "Observation", "id": f"pdff-{k + 1}", "status": "final",
            "code": {"text": "Liver MRI proton density fat fraction (PDFF)"},
            "effectiveDateTime": row["mri_date"],
            "valueQuantity": {"value": float(row["pdff"]), "unit": "%", "system": "http://unitsofmeasure.org",
                              "code": "%"},
        }  # fmt: skip
        if row["patient_id"]:
            observation["subject"] = {"identifier": {"value": row["patient_id"]}, "display": "patient"}
        if row["accession"]:
            kind = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]}
            observation["basedOn"] = [{"identifier": {"type": kind, "value": row["accession"]}}]
        entries.append({"fullUrl": f"urn:uuid:pdff-{k + 1}", "resource": observation})
    bundle = Bundle.model_validate({"resourceType": "Bundle", "type": "collection", "entry": entries})
    return bundle.model_dump_json(indent=1)


def _truth(plan: ArchivePlan, patients: list[ArchivePatient]) -> dict:
    return {
        "generator": "fatty-liver-edge phantom archive",
        "plan": asdict(plan),
        "patients": [
            {
                "patient_id": p.patient_id, "accession": p.accession, "subject": p.subject.to_dict(),
                "us_date": p.us_date.isoformat(), "mri_date": p.mri_date.isoformat() if p.mri_date else None,
                "case": p.case, "expected": str(CohortOutcome.USED) if p.case == TWO_STUDIES else p.case,
                "studies": p.studies, "instances": p.instances,
            }
            for p in patients
        ],
    }  # fmt: skip


def archive_studies(plan: ArchivePlan) -> list[tuple[ArchivePatient, StudyPlan]]:
    """Every study of the archive with its patient, before anything is rendered."""
    return [(p, s) for p in _patients(plan) for s in _study_plans(plan, p)]


def write_archive(
    out_dir: str | Path, plan: ArchivePlan = ArchivePlan(), workers: int | None = None,
    on_study: Callable[[], None] | None = None,
) -> list[ArchivePatient]:  # fmt: skip
    """Write the archive, its reference list and its truth.

    Args:
        out_dir: the folder.
        plan: how many patients, which consoles, how long the cine loops.
        workers: rendering processes (default: all cores).
        on_study: called after each study is written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    studies = archive_studies(plan)
    patients = list(dict.fromkeys(p for p, _ in studies))
    jobs = [(s, plan.seed, str(out / "archive"), plan.form) for _, s in studies]
    spawn = multiprocessing.get_context("spawn")  # a forked child of a process running TensorFlow can abort
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1, mp_context=spawn) as pool:
        for (patient, study), written in zip(studies, pool.map(write_study_plan, jobs), strict=True):
            patient.studies.append(study.identity.study_uid)
            if len(patient.studies) == 1:
                patient.instances = written
            if on_study:
                on_study()
    write_reference(patients, out)
    layouts = sorted({p.subject.screen_layout for p in patients})
    profiles = {profile_name(get_layout(n), "dicom"): profile_entry(get_layout(n), "dicom") for n in layouts}
    (out / "profiles.json").write_text(json.dumps(profiles, indent=1) + "\n")
    (out / "truth.json").write_text(json.dumps(_truth(plan, patients), indent=1))
    return patients
