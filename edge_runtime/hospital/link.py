"""The box's place in the hospital's systems: which study each exam belongs to, and its report on the way to the PACS.

- A study stored over DICOM: the stored images' patient and study attributes and the instances that contributed
  (kept in memory while the exam runs, :class:`StudyRegistry`).
- A screen-grab exam linked by ``grab --worklist``: its session names the accession number; the worklist is asked
  again when the report is built.
- Anything else ends with no report, counted and said on the page: a result with no study cannot be filed.

When an exam ends, its job goes into the on-disk queue at once (its report's UIDs fixed then); the sender thread
builds and sends it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from edge_runtime.box.stats import RuntimeStats
from edge_runtime.config import RuntimeConfig
from edge_runtime.contracts import Count, ExamRecord, PacsStatus
from edge_runtime.hospital.peers import Peer
from edge_runtime.hospital.queue import Job, ReportQueue
from edge_runtime.hospital.report import Equipment, Evidence, StudyContext, build_report
from edge_runtime.hospital.sender import ReportSender, SendError, destinations_for
from edge_runtime.hospital.worklist import WorklistError, accession_of, choose, find_scheduled

MAX_STUDIES = 1024  # studies whose attributes are held at once; the least recently stored goes first


class StudyRegistry:
    """The patient and study attributes of every study being stored, and its instances, until its exam ends."""

    def __init__(self, capacity: int = MAX_STUDIES):
        self._studies: OrderedDict[str, StudyContext] = OrderedDict()
        self._lock, self.capacity = threading.Lock(), capacity

    def saw(self, ds: Any, study: str, evidence: Evidence) -> None:
        """A stored image of ``study`` (called from the DICOM source's threads)."""
        with self._lock:
            known = self._studies.pop(study, None) or StudyContext.of(ds)
            self._studies[study] = StudyContext(known.attributes, (*known.evidence, evidence))
            while len(self._studies) > self.capacity:
                self._studies.popitem(last=False)

    def take(self, study: str) -> StudyContext | None:
        with self._lock:
            return self._studies.pop(study, None)


def study_job(context: StudyContext, contributed: list[str]) -> dict[str, Any]:
    """A stored study as a job holds it: its attributes (DICOM JSON) and the images that contributed."""
    evidence = [e.__dict__ for e in context.evidence if e.sop_instance in set(contributed)]
    return {"attributes": context.attributes.to_json_dict(), "evidence": evidence}


def study_of(job: Job) -> StudyContext:
    attributes = Dataset.from_json(job.study["attributes"])
    return StudyContext(attributes, tuple(Evidence(**e) for e in job.study.get("evidence", [])))


class HospitalLink:
    """Studies, the worklist, the report queue and its sender, as ``[runtime.pacs]`` configures them."""

    def __init__(self, config: RuntimeConfig, stats: RuntimeStats, equipment: Equipment):
        settings = config.pacs
        self.calling, self.timeout, self.stats = settings.ae_title or config.dicom.ae_title, settings.timeout_s, stats
        self.equipment, self.studies = equipment, StudyRegistry()
        self.worklist = Peer.parse(settings.worklist) if settings.worklist else None
        pacs = [Peer.parse(p) for p in settings.destinations]
        destinations = destinations_for(pacs, settings.stow_url, self.calling, settings.timeout_s)
        self.queue = ReportQueue(settings.queue, list(destinations), (settings.retry_s, settings.retry_max_s))
        self.sender = ReportSender(self.queue, self.build, destinations, stats)
        self._stop, self._thread = threading.Event(), None

    def exam_ended(self, record: ExamRecord) -> str | None:
        """Queue the exam's report (on disk before this returns); its SOP Instance UID, or None when it is linked to
        no study."""
        if record.study is not None:
            context = self.studies.take(record.study.study_instance_uid)
            study = study_job(context, record.study.sop_instance_uids) if context is not None else None
        elif accession_of(record.session) and self.worklist is not None:
            study = {"accession": accession_of(record.session)}
        else:
            study = None
        if study is None:
            self.stats.count(Count.REPORTS_NOT_LINKED)
            self.queue.state.not_linked += 1
            return None
        job = Job(generate_uid(), generate_uid(), record.model_dump(mode="json"), study, [], time.time())
        self.queue.put(job)
        self.stats.count(Count.REPORTS_QUEUED)
        self.sender.wake()
        return job.sop_instance_uid

    def build(self, job: Job) -> Dataset:
        """A job's report; a worklist job asks the worklist for its study first (a SendError while it cannot)."""
        if "accession" in job.study:
            try:
                scheduled = find_scheduled(self.worklist, self.calling, accession=job.study["accession"],
                                           timeout=self.timeout)  # fmt: skip
                context = choose(scheduled, job.study["accession"]).study()
            except WorklistError as exc:
                raise SendError(str(exc)) from None
        else:
            context = study_of(job)
        record = ExamRecord.model_validate(job.record)
        return build_report(record, context, self.equipment, (job.sop_instance_uid, job.series_uid))

    def linked(self, session: str, study: object | None) -> bool:
        """Whether an exam will have a report: a DICOM study, or an accession the worklist can resolve."""
        return study is not None or (accession_of(session) is not None and self.worklist is not None)

    def status(self, active: list[tuple[str, Any]] = ()) -> PacsStatus:
        """The queue's state, and which active sessions (name, Session) are linked to no study."""
        state = self.queue.snapshot()
        unlinked = [name for name, session in active if not self.linked(name, session.study)]
        return PacsStatus(**state.__dict__, unlinked=unlinked)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.sender.run, args=(self._stop,), name="reports", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.sender.wake()
        if self._thread is not None:
            self._thread.join(10)
