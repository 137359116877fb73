"""Who and when an ended exam was, as the audit log keeps it: keyed pseudonyms of the Patient ID and accession
number (edge_runtime.hospital.pseudonyms) and the study date. A DICOM study gives all three; a screen-grab exam
linked to the worklist gives its accession number (its session name); any other exam names nobody."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

from edge_runtime.config import AuditSettings
from edge_runtime.contracts import ExamIdentity
from edge_runtime.hospital.pseudonyms import identity_key, pseudonym
from edge_runtime.hospital.worklist import accession_of

if TYPE_CHECKING:
    from edge_runtime.pipeline.runner import EndedExam


class ExamIdentities:
    """Pseudonymises ended exams under the site's key."""

    def __init__(self, key: bytes):
        self.key = key

    @classmethod
    def configured(cls, settings: AuditSettings) -> ExamIdentities | None:
        """From [runtime.audit]: the key beside the log (created on first start), or None when there is no place
        for one; ConfigError naming the file when it is not a key."""
        path = settings.identity_key_path()
        return cls(identity_key(path)) if path is not None else None

    def of(self, ended: EndedExam) -> ExamIdentity | None:
        """The exam's identity, or None when it names nobody."""
        ended_day = dt.datetime.fromtimestamp(ended.record.ended, dt.UTC).date().isoformat()
        if ended.study is not None:
            attributes = Dataset.from_json(dict(ended.study.attributes))
            patient = pseudonym(self.key, "patient", str(attributes.get("PatientID", "") or ""))
            accession = pseudonym(self.key, "accession", str(attributes.get("AccessionNumber", "") or ""))
            date = _iso(attributes.get("StudyDate")) or ended_day
            return ExamIdentity(patient=patient, accession=accession, date=date)
        linked = accession_of(ended.record.session)
        if linked is None:
            return None
        return ExamIdentity(accession=pseudonym(self.key, "accession", linked), date=ended_day)


def _iso(value: object) -> str | None:
    try:
        return dt.datetime.strptime(str(value or "")[:8], "%Y%m%d").date().isoformat()
    except ValueError:
        return None
