"""MRI-PDFF results matched to the exams the box answered: each result to one exam of the same patient (or accession
number) within the window of its MRI date, by the keyed pseudonyms the audit log keeps (edge_runtime.sinks.identity).
The result's own accession number wins, then the nearest date; an exam answers one result at most. A result that
matches no exam is reported by name with why, never dropped."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.contracts import ExamRecord
from edge_runtime.contracts.validation import WINDOW_DAYS, ReconcileOutcome
from edge_runtime.hospital.pseudonyms import pseudonym
from edge_runtime.hospital.reference import ReferenceList, ReferenceResult


@dataclass(frozen=True)
class MatchedExam:
    """One MRI-PDFF result and the exam that answered for the patient."""

    result: ReferenceResult
    exam: ExamRecord
    gap_days: int


@dataclass
class Reconciliation:
    """Every result's fate: matched to an exam, or not with why; and the rows the reference file refused."""

    matched: list[MatchedExam] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # "<where>: <why>"
    refused: list[str] = field(default_factory=list)  # the reference file's own refusals
    exams: int = 0  # exams in the audit log
    unnamed_exams: int = 0  # exams that name nobody (no identity): never reconcilable


def exam_day(record: ExamRecord) -> dt.date:
    """The exam's study date, else the day it ended."""
    if record.identity is not None and record.identity.date:
        return dt.date.fromisoformat(record.identity.date)
    return dt.datetime.fromtimestamp(record.ended, dt.UTC).date()


def _candidates(result: ReferenceResult, exams: list[ExamRecord], key: bytes, window_days: int) -> list[tuple]:
    """(accession matched, gap, -pairs, index) for each exam of this patient or accession inside the window."""
    patient = pseudonym(key, "patient", result.patient_id)
    accession = pseudonym(key, "accession", result.accession)
    found = []
    for index, exam in enumerate(exams):
        who = exam.identity
        if who is None or not ((patient and who.patient == patient) or (accession and who.accession == accession)):
            continue
        gap = (exam_day(exam) - result.mri_date).days
        if abs(gap) <= window_days:
            found.append((not (accession and who.accession == accession), abs(gap), -exam.exam.n_pairs, index, gap))
    return sorted(found)


def reconcile(
    reference: ReferenceList, records: list[dict[str, Any]], key: bytes, window_days: int = WINDOW_DAYS
) -> Reconciliation:
    """Match every usable result of ``reference`` to the exam_final records of the audit log.

    Args:
        reference: the MRI-PDFF results (edge_runtime.hospital.reference.read_reference).
        records: the audit log's exam_final records (edge_runtime.sinks.audit.read_final_exams).
        key: the site's pseudonym key, the one the box keeps its identities under.
        window_days: the longest gap between exam and MRI.
    """
    exams = [ExamRecord.model_validate(r) for r in records]
    out = Reconciliation(refused=list(reference.refused), exams=len(exams))
    out.unnamed_exams = sum(e.identity is None for e in exams)
    taken: dict[int, str] = {}
    for result in reference.results:
        candidates = _candidates(result, exams, key, window_days)
        free = [c for c in candidates if c[3] not in taken]
        if free:
            index, gap = free[0][3], free[0][4]
            taken[index] = result.where
            out.matched.append(MatchedExam(result, exams[index], gap))
        elif candidates:
            out.unmatched.append(f"{result.where}: {ReconcileOutcome.NO_EXAM}: its exam already answers "
                                 f"{taken[candidates[0][3]]}")  # fmt: skip
        else:
            said = f"no exam of this patient or accession within {window_days} days of the MRI"
            out.unmatched.append(f"{result.where}: {ReconcileOutcome.NO_EXAM}: {said}")
    return out
