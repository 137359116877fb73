"""The report sender: every due report in the queue, built and sent to each destination it still lacks, on a thread of
its own, so a slow or down PACS never holds the pipeline.

A report is built from its job on every attempt (the same UIDs each time). A destination that refuses, fails or does
not answer leaves the report queued, counted and retried with backoff. A job that can never make a valid report is
quarantined with its reason, counted and named on the page, and the reports behind it go on; one bad study never
stops the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pydicom.dataset import Dataset

from edge_runtime.box.parts import LoopingPart
from edge_runtime.box.supervision import Kind
from edge_runtime.box.telemetry import Telemetry
from edge_runtime.contracts import Count, ExamFollowUp, FollowUp
from edge_runtime.hospital.jobs import ReportBuilder, ReportUnbuildable
from edge_runtime.hospital.queue import Job, ReportQueue
from edge_runtime.hospital.sender import SendError

log = logging.getLogger("edge_runtime")
POLL_S = 1.0
BUILD_ATTEMPTS = 3  # an unexpected failure to build a report is retried this often before it is set aside


class ReportSender(LoopingPart):
    """The queue's sending loop: each due job to every destination it still lacks."""

    name, kind = "reports", Kind.SERVICE

    def __init__(
        self,
        queue: ReportQueue,
        builder: ReportBuilder,
        destinations: dict[str, Callable[[Dataset], None]],
        telemetry: Telemetry,
        timeout_s: float,
    ):
        """Args:
        queue: the store-and-forward queue.
        builder: jobs into SR documents.
        destinations: name -> how to send a report there.
        telemetry: the statistics, the log and the supervisor.
        timeout_s: how long one destination may take to answer (the thread's patience).
        """
        super().__init__(telemetry, patience_s=2 * timeout_s * max(1, len(destinations)))
        self.queue, self.builder, self.destinations = queue, builder, destinations
        self.stats = telemetry.stats
        self._wake = threading.Event()
        self.on_followup: Callable[[ExamFollowUp], object] = lambda record: None  # compose() audits each

    def wake(self) -> None:
        """A report was queued (or the box is stopping): try now rather than at the next poll."""
        self._wake.set()

    def step(self) -> None:
        for job in self.queue.due():
            if self.stopping:
                return
            self.attempt(job)
        self._wake.wait(POLL_S)
        self._wake.clear()

    def attempt(self, job: Job) -> bool:
        """One try at every destination the job still lacks; True when it is sent everywhere."""
        try:
            report = self.builder.build(job)
        except ReportUnbuildable as exc:
            self._quarantine(job, str(exc))
            return False
        except SendError as exc:
            self._failed(job, str(exc))
            return False
        except Exception as exc:  # an unexpected failure: counted and named; retried, then set aside if it persists
            self.pulse.failed(exc, f"building report {job.sop_instance_uid}: ")
            said = f"the report cannot be built: {type(exc).__name__}: {exc}"
            if job.attempts + 1 >= BUILD_ATTEMPTS:
                self._quarantine(job, said)
            else:
                self._failed(job, said)
            return False
        job.study_uid = str(report.StudyInstanceUID)
        self._said_followup(job)
        for name in list(job.remaining):
            if not self._send(job, name, report):
                return False
            self.queue.acknowledged(job, name)
        self.stats.count(Count.REPORTS_SENT)
        log.info("report %s of session %s sent", job.sop_instance_uid, job.record.get("session"))
        return True

    def _said_followup(self, job: Job) -> None:
        """The comparison with the prior, once per report: to the audit log and the heartbeat."""
        if "followup" not in job.study or job.study.get("followup_said"):
            return
        exam = job.record.get("exam") or {}
        record = ExamFollowUp(
            session=job.record.get("session", ""),
            report=job.sop_instance_uid,
            at=time.time(),
            ended=float(job.record.get("ended", 0.0)),
            pdff=exam.get("pdff"),
            pdff_interval=exam.get("pdff_interval"),
            followup=FollowUp.model_validate(job.study["followup"]),
        )
        self.queue.followed(record.model_dump(mode="json"))
        self.on_followup(record)
        job.study["followup_said"] = True

    def _send(self, job: Job, name: str, report: Dataset) -> bool:
        send = self.destinations.get(name)
        try:
            if send is None:
                raise SendError(f"destination {name} is no longer configured")
            send(report)
        except SendError as exc:
            self._failed(job, str(exc))
            return False
        except Exception as exc:  # the destination's or its client library's fault, not the report's: retried
            self.pulse.failed(exc, f"sending to {name}: ")
            self._failed(job, f"{name}: {type(exc).__name__}: {exc}")
            return False
        return True

    def _failed(self, job: Job, error: str) -> None:
        self.queue.failed(job, error, time.time())
        self.stats.count(Count.REPORT_SEND_FAILURES)
        log.warning("report %s not sent (attempt %d): %s", job.sop_instance_uid, job.attempts, error)

    def _quarantine(self, job: Job, reason: str) -> None:
        self.queue.quarantine(job, reason)
        self.stats.count(Count.REPORTS_QUARANTINED)
        log.error("report %s of session %s QUARANTINED: %s", job.sop_instance_uid, job.record.get("session"), reason)
