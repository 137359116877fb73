"""Sending the queued reports: C-STORE to each PACS (pynetdicom) and, optionally, STOW-RS (dicomweb-client), from a
thread of its own so a slow or down PACS never holds the pipeline. A report is built from its job on every attempt
(the same UIDs each time); an association refused, a failure status or an HTTP error leaves it queued, counted and
retried with backoff."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset

from edge_runtime.box.stats import RuntimeStats
from edge_runtime.contracts import Count
from edge_runtime.hospital.peers import Peer
from edge_runtime.hospital.queue import Job, ReportQueue

log = logging.getLogger("edge_runtime")
logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # a down PACS: one line of ours per attempt, not three
STORE_OK = {0x0000, 0xB000, 0xB006, 0xB007}  # success, and the warnings that still store the instance
STOW = "stow"


class SendError(Exception):
    """One destination did not take the report (the message says which and why)."""


def c_store(report: Dataset, peer: Peer, calling: str, timeout: float) -> None:
    """The report to one PACS by C-STORE; a SendError unless it answered success (or a storing warning).

    Args:
        report: the SR document.
        peer: the PACS.
        calling: this box's AE title.
        timeout: seconds before the PACS counts as not answering.
    """
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    ae.add_requested_context(report.SOPClassUID, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        raise SendError(f"{peer} refused the association or did not answer")
    try:
        status = assoc.send_c_store(report)
    finally:
        assoc.release()
    code = int(getattr(status, "Status", -1)) if status else -1
    if code not in STORE_OK:
        raise SendError(f"{peer} answered " + (f"status 0x{code:04X}" if code >= 0 else "nothing"))


def stow(report: Dataset, url: str) -> None:
    """The report to a DICOMweb service by STOW-RS; a SendError on any failure."""
    from dicomweb_client import DICOMwebClient

    try:
        DICOMwebClient(url=url).store_instances([report])
    except Exception as exc:  # requests' and the client's own errors alike: the report stays queued
        raise SendError(f"STOW-RS to {url}: {type(exc).__name__}: {exc}") from None


class ReportSender:
    """The queue's sending loop: every due job to every destination it still lacks."""

    def __init__(
        self,
        queue: ReportQueue,
        build: Callable[[Job], Dataset],
        destinations: dict[str, Callable[[Dataset], None]],
        stats: RuntimeStats,
    ):
        """Args:
        queue: the store-and-forward queue.
        build: a job -> its report (the same UIDs every attempt); raises SendError when it cannot be built yet.
        destinations: name -> how to send a report there.
        stats: the runtime's counters.
        """
        self.queue, self.build, self.destinations, self.stats = queue, build, destinations, stats
        self._wake = threading.Event()

    def wake(self) -> None:
        """A report was queued: try now rather than at the next poll."""
        self._wake.set()

    def run(self, stop: threading.Event, tick: Callable[[], None] = lambda: None, poll_s: float = 1.0) -> None:
        while not stop.is_set():
            tick()
            for job in self.queue.due():
                if stop.is_set():
                    return
                self.attempt(job)
            self._wake.wait(poll_s)
            self._wake.clear()

    def attempt(self, job: Job) -> bool:
        """One try at every destination the job still lacks; True when it is sent everywhere."""
        try:
            report = self.build(job)
        except SendError as exc:
            self._failed(job, str(exc))
            return False
        job.study_uid = str(report.StudyInstanceUID)
        for name in list(job.remaining):
            send = self.destinations.get(name)
            try:
                if send is None:
                    raise SendError(f"destination {name} is no longer configured")
                send(report)
            except SendError as exc:
                self._failed(job, str(exc))
                return False
            self.queue.acknowledged(job, name)
        self.stats.count(Count.REPORTS_SENT)
        log.info("report %s of session %s sent", job.sop_instance_uid, job.record.get("session"))
        return True

    def _failed(self, job: Job, error: str) -> None:
        self.queue.failed(job, error, time.time())
        self.stats.count(Count.REPORT_SEND_FAILURES)
        log.warning("report %s not sent (attempt %d): %s", job.sop_instance_uid, job.attempts, error)


def destinations_for(pacs: list[Peer], stow_url: str | None, calling: str, timeout: float) -> dict[str, Any]:
    """Name -> sender for each configured PACS, and STOW-RS when a URL is given.

    Args:
        pacs: the PACS to C-STORE into.
        stow_url: a DICOMweb service (None: none).
        calling: this box's AE title.
        timeout: seconds before a destination counts as not answering.
    """
    out: dict[str, Any] = {str(p): (lambda report, p=p: c_store(report, p, calling, timeout)) for p in pacs}
    if stow_url:
        out[STOW] = lambda report: stow(report, stow_url)
    return out
