"""The Modality Worklist: what is scheduled, so an exam grabbed from a scanner's screen (which carries no patient)
lands in the right patient's study. ``grab --worklist`` picks the procedure and names its session by the accession
number; at the exam's end ``serve`` asks the worklist for that accession again and reports into its study. Patient
data stay on the hospital's network and in the report queue: the session name, the page and the logs carry the
accession number only."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.dataset import Dataset

from edge_runtime.errors import FattyLiverError
from edge_runtime.hospital.dimse import associate, find_all, scu
from edge_runtime.hospital.peers import Peer
from edge_runtime.hospital.report import StudyContext

SESSION_PREFIX = "acc-"  # a screen-grab session linked to a scheduled study: acc-<accession number>
ACCESSION = re.compile(r"^[A-Za-z0-9_.:-]{1,16}$")  # what fits a session name (PS3.5 SH: at most 16)


class WorklistError(FattyLiverError):
    """The worklist could not be asked, or did not answer as asked (the message says which and why)."""


@dataclass(frozen=True)
class Scheduled:
    """One scheduled procedure step as the worklist gives it."""

    accession: str
    study_uid: str
    description: str
    start: str  # scheduled date and time, as the worklist says it
    item: Dataset  # the whole answer (patient and study attributes), kept only in memory

    def study(self) -> StudyContext:
        return StudyContext.of(self.item)


def session_for(accession: str) -> str:
    """The session name that links an exam to its scheduled study; refuses what cannot be one."""
    if not ACCESSION.match(accession):
        raise WorklistError(f"accession number {accession!r} cannot name a session ([A-Za-z0-9_.:-], 16 at most)")
    return SESSION_PREFIX + accession


def accession_of(session: str) -> str | None:
    return session[len(SESSION_PREFIX) :] if session.startswith(SESSION_PREFIX) else None


def _query(modality: str, station: str | None, accession: str | None) -> Dataset:
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "*", "", "", ""
    ds.StudyInstanceUID, ds.AccessionNumber = "", accession or ""
    ds.RequestedProcedureDescription, ds.ReferringPhysicianName = "", ""
    step = Dataset()
    step.Modality, step.ScheduledStationAETitle = modality, station or ""
    step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime = "", ""
    step.ScheduledProcedureStepDescription = ""
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def find_scheduled(
    peer: Peer, calling: str, station: str | None = None, accession: str | None = None, timeout: float = 10.0
) -> list[Scheduled]:
    """Scheduled ultrasound procedure steps (for this station, or one accession), by C-FIND.

    Args:
        peer: the worklist SCP.
        calling: this box's AE title.
        station: only steps scheduled on this AE title (None: any).
        accession: only this accession number (None: any).
        timeout: seconds before the worklist counts as unreachable.
    """
    from pynetdicom.sop_class import ModalityWorklistInformationFind

    ae = scu(calling, timeout)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = associate(ae, peer, WorklistError, "the worklist")
    try:
        found, failure = find_all(assoc, _query("US", station, accession), ModalityWorklistInformationFind)
    finally:
        assoc.release()
    if failure:
        raise WorklistError(f"the worklist {peer} answered {failure}")
    return [_scheduled(item) for item in found]


def _scheduled(item: Dataset) -> Scheduled:
    steps = item.get("ScheduledProcedureStepSequence") or [Dataset()]
    step = steps[0]
    start = f"{step.get('ScheduledProcedureStepStartDate', '')} {step.get('ScheduledProcedureStepStartTime', '')}"
    said = step.get("ScheduledProcedureStepDescription", "") or item.get("RequestedProcedureDescription", "")
    description = str(said or "")
    return Scheduled(
        str(item.get("AccessionNumber", "")), str(item.get("StudyInstanceUID", "")), description, start.strip(), item
    )


def choose(scheduled: list[Scheduled], accession: str | None) -> Scheduled:
    """The procedure the operator named by accession number, or the only one; a WorklistError listing the choices."""
    if accession is not None:
        chosen = [s for s in scheduled if s.accession == accession]
        if not chosen:
            raise WorklistError(f"accession {accession!r} is not scheduled here; scheduled: {_listing(scheduled)}")
        return chosen[0]
    if len(scheduled) != 1:
        raise WorklistError(f"{len(scheduled)} procedures scheduled; pick one with --accession: {_listing(scheduled)}")
    return scheduled[0]


def _listing(scheduled: list[Scheduled]) -> str:
    return "; ".join(f"{s.accession} ({s.description or 'no description'}, {s.start})" for s in scheduled) or "none"
