"""Each ended exam's report into the PACS queue (edge_runtime.hospital), first among the sinks, so the audit log's
final record names the report or why there is none. The job is on disk before the exam's record is written; the
report sender (edge_runtime.services.reports) builds and sends it."""

from __future__ import annotations

from collections.abc import Callable

from edge_runtime.box.stats import RuntimeStats
from edge_runtime.contracts import Count, ResultMessage
from edge_runtime.hospital.jobs import accession_job, new_job, study_job
from edge_runtime.hospital.queue import ReportQueue
from edge_runtime.hospital.worklist import accession_of
from edge_runtime.pipeline.runner import EndedExam

NOT_LINKED = "none: linked to no study (no worklist accession, no DICOM study)"


def linked(session: str, stored_study: bool, worklist: bool) -> bool:
    """Whether an exam will have a report: a DICOM study, or an accession the worklist can resolve."""
    return stored_study or (accession_of(session) is not None and worklist)


class ReportToPacs:
    """The sink that queues each ended exam's report."""

    name = "pacs-report"

    def __init__(self, queue: ReportQueue, worklist: bool, stats: RuntimeStats, wake: Callable[[], None]):
        """Args:
        queue: the store-and-forward queue.
        worklist: whether a worklist is configured (a screen-grab exam's accession can be resolved).
        stats: the runtime's counters.
        wake: tells the report sender a report is waiting.
        """
        self.queue, self.worklist, self.stats, self.wake = queue, worklist, stats, wake

    def on_result(self, result: ResultMessage, frame: object) -> None:
        """Reports are per exam, not per result."""

    def on_exam_final(self, ended: EndedExam) -> None:
        record, accession = ended.record, accession_of(ended.record.session)
        if ended.study is not None:
            study = study_job(ended.study)
        elif accession is not None and self.worklist:
            study = accession_job(accession)
        else:
            self.stats.count(Count.REPORTS_NOT_LINKED)
            self.queue.state.not_linked += 1
            record.report = NOT_LINKED
            return
        job = new_job(record, study)
        self.queue.put(job)
        self.stats.count(Count.REPORTS_QUEUED)
        record.report = job.sop_instance_uid
        self.wake()
