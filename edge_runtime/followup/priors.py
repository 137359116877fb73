"""The patient's previous reports by this product, read back from the PACS: a search for the patient's studies within
the window, then for this product's report series in each, retrieval of that series, and the reports read with
highdicom (edge_runtime.hospital.report.read_report), as any registry would read them. The archive speaks DIMSE
(C-FIND, C-GET) or DICOMweb (QIDO-RS, WADO-RS): both are a StudyArchive.

It runs on the report sender's thread when a report is first built, never on the result path. A PACS that is down or
slow costs at most the query's timeout, and the comparison says "prior not available" with the reason.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.contracts import ExamRecord, FollowUp, NoCall, PriorReport
from edge_runtime.followup.change import ChangeRule, ThisExam, compare, lineage_of, no_prior
from edge_runtime.hospital.codes import why_of
from edge_runtime.hospital.report import REPORT_SERIES_DESCRIPTION, ReportedValues, StudyContext, read_report
from edge_runtime.hospital.retrieve import RetrieveError, StudyArchive, dicom_date

log = logging.getLogger("edge_runtime")


@dataclass(frozen=True)
class PriorLookup:
    """Where the previous reports are asked for, how far back, and the change rule that judges them."""

    archive: StudyArchive
    window_days: int
    rule: ChangeRule

    def followup(self, record: ExamRecord, study: StudyContext) -> FollowUp:
        """This exam against the patient's most recent earlier report in the window (or why there is none), dated
        with this exam's study date."""
        today = dicom_date(study.attributes.get("StudyDate")) or dt.datetime.fromtimestamp(record.ended, dt.UTC).date()
        return self._against_prior(record, study, today).model_copy(update={"date": today.isoformat()})

    def _against_prior(self, record: ExamRecord, study: StudyContext, today: dt.date) -> FollowUp:
        patient = str(study.attributes.get("PatientID", "") or "")
        if not patient:
            return no_prior("the study names no patient ID to look the prior up by")
        try:
            history = self.earlier_reports(patient, study.study_uid, today)
        except RetrieveError as exc:
            return no_prior(str(exc))
        except Exception as exc:  # an archive's unforeseen answer costs the comparison, never the report
            log.exception("the prior lookup failed")
            return no_prior(f"the lookup failed ({type(exc).__name__}: {exc})")
        if not history:
            return no_prior(f"no earlier report by this product for this patient within {self.window_days} days")
        prior = history[-1]
        this = ThisExam(record.exam, lineage_of(record.model), record.scanner)
        days = (today - dt.date.fromisoformat(prior.date)).days
        return compare(prior, this, days, self.rule).model_copy(update={"history": history})

    def earlier_reports(self, patient: str, this_study: str, today: dt.date) -> list[PriorReport]:
        """Every earlier report of the patient in the window, oldest first."""
        since = today - dt.timedelta(days=self.window_days)
        found = []
        with self.archive.held(), tempfile.TemporaryDirectory(prefix="priors-") as tmp:  # one association for all
            studies = [
                s for s in self.archive.find_studies(patient_id=patient)
                if s.study_uid != this_study and s.date is not None and since <= s.date <= today
            ]  # fmt: skip
            for study in studies:
                for series in self.archive.find_series(study.study_uid, "SR"):
                    if series.description != REPORT_SERIES_DESCRIPTION:
                        continue
                    into = Path(tmp) / series.series_uid
                    self.archive.retrieve(study.study_uid, into, series_uid=series.series_uid)
                    found += [_prior(read, study.date) for read in _readable(into)]
        return sorted(found, key=lambda p: p.date)


def _readable(folder: Path) -> list[ReportedValues]:
    """The reports of a retrieved series this product can read (another product's SR in it is passed over)."""
    out = []
    for path in sorted(folder.glob("*.dcm")):
        try:
            out.append(read_report(path))
        except (ValueError, KeyError, AttributeError, IndexError):
            continue
    return out


def _prior(read: ReportedValues, date: dt.date) -> PriorReport:
    why = why_of(read.why_code) if read.call == "indeterminate" else None
    return PriorReport(
        sop_instance_uid=read.sop_instance_uid,
        study_instance_uid=read.study_uid,
        series_instance_uid=read.series_uid,
        date=date.isoformat(),
        call=read.call,
        why=why if isinstance(why, NoCall) else None,
        pdff=read.pdff,
        pdff_interval=read.pdff_interval,
        pdff_se=read.pdff_se,
        n_pairs=read.n_pairs,
        model=read.model,
        lineage=read.lineage,
        scanner=read.scanner,
    )
