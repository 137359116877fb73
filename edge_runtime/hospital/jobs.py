"""A report job: the exam's final record, the study it reports into and the report's own UIDs, as the queue holds it,
and the one way a job becomes its SR document.

A job for a stored study carries the study's attributes (DICOM JSON, UTF-8) and the images that contributed; a
screen-grab exam linked by the worklist carries its accession number, and the worklist is asked for the study when
the report is built. Building fails in two ways: the worklist cannot be reached now (:class:`SendError`, retried
later), or the job itself cannot make a valid report (:class:`ReportUnbuildable`, quarantined with its reason).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from edge_runtime.contracts import ExamRecord, FollowUp
from edge_runtime.errors import FattyLiverError
from edge_runtime.followup.priors import PriorLookup
from edge_runtime.hospital.peers import Peer
from edge_runtime.hospital.queue import Job
from edge_runtime.hospital.report import Equipment, StudyContext, build_report
from edge_runtime.hospital.sender import SendError
from edge_runtime.hospital.worklist import WorklistError, choose, find_scheduled
from edge_runtime.pipeline.studies import Evidence, HriEvidence, StudyEvidence


class ReportUnbuildable(FattyLiverError):
    """A job that cannot make a valid report (its attributes, its record): set aside, never retried by itself."""


def new_job(record: ExamRecord, study: dict[str, Any]) -> Job:
    """A job for an ended exam, its report's UIDs fixed now (every resend is the same instance)."""
    return Job(generate_uid(), generate_uid(), record.model_dump(mode="json"), study, [], time.time())


def study_job(evidence: StudyEvidence) -> dict[str, Any]:
    """A stored study as a job holds it: its attributes and the images that contributed."""
    job = {"attributes": dict(evidence.attributes), "evidence": [e.__dict__ for e in evidence.evidence]}
    return job | ({"hri": evidence.hri.to_json()} if evidence.hri is not None else {})


def accession_job(accession: str) -> dict[str, Any]:
    return {"accession": accession}


PATIENT_SEXES = ("M", "F", "O", "")


def unreadable_attribute(attributes: Dataset) -> str | None:
    """The first patient or study attribute a report cannot carry, in words a person can act on (None: all can)."""
    from pydicom.valuerep import DA, TM

    for keyword, kind in (("StudyDate", DA), ("PatientBirthDate", DA), ("StudyTime", TM)):
        value = str(attributes.get(keyword, "") or "")
        if not value:
            continue
        try:
            with warnings.catch_warnings():  # the failure is said here, once, in the quarantine's reason
                warnings.simplefilter("ignore")
                kind(value)
        except ValueError as exc:
            return f"the study's {keyword} {value!r} is not a valid {kind.__name__} ({exc})"
    sex = str(attributes.get("PatientSex", "") or "")
    if sex not in PATIENT_SEXES:
        return f"the study's PatientSex {sex!r} is none of M, F, O"
    return None


class ReportBuilder:
    """Jobs into SR documents, asking the worklist for a screen-grab exam's study."""

    def __init__(
        self, equipment: Equipment, worklist: Peer | None, calling: str, timeout: float, priors: PriorLookup | None
    ):
        """Args:
        equipment: this box as the report names it.
        worklist: the Modality Worklist (None: none configured).
        calling: this box's AE title.
        timeout: seconds before the worklist counts as not answering.
        priors: where the patient's previous reports are looked up (None: follow-up is off).
        """
        self.equipment, self.worklist, self.calling, self.timeout = equipment, worklist, calling, timeout
        self.priors = priors

    def build(self, job: Job) -> Dataset:
        """The job's report; SendError while the worklist cannot answer, ReportUnbuildable when it never will."""
        context = self._study(job)
        try:
            record = ExamRecord.model_validate(job.record)
            followup = self._followup(job, record, context)
            uids = (job.sop_instance_uid, job.series_uid)
            return build_report(record, context, self.equipment, uids, followup)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            said = unreadable_attribute(context.attributes) or f"{type(exc).__name__}: {exc}"
            raise ReportUnbuildable(f"the report cannot be built: {said}") from None

    def _followup(self, job: Job, record: ExamRecord, context: StudyContext) -> FollowUp | None:
        """The comparison with the prior, looked up once and kept in the job: every resend states the same."""
        if self.priors is None:
            return None
        if "followup" not in job.study:
            job.study["followup"] = self.priors.followup(record, context).model_dump(mode="json")
        return FollowUp.model_validate(job.study["followup"])

    def _study(self, job: Job) -> StudyContext:
        if "accession" not in job.study:
            try:
                evidence = tuple(Evidence(**e) for e in job.study.get("evidence", []))
                hri = HriEvidence.from_json(job.study["hri"]) if job.study.get("hri") else None
                return StudyContext.from_json(job.study["attributes"], evidence, hri)
            except (ValueError, TypeError, KeyError) as exc:
                raise ReportUnbuildable(f"the study's attributes cannot be read: {exc}") from None
        if self.worklist is None:
            raise ReportUnbuildable("an accession number to resolve, but no worklist is configured")
        try:
            found = find_scheduled(self.worklist, self.calling, accession=job.study["accession"], timeout=self.timeout)
            return choose(found, job.study["accession"]).study()
        except WorklistError as exc:
            raise SendError(str(exc)) from None
