"""Asking the PACS for studies and fetching them: Study Root C-FIND, then C-GET (the PACS sends on the same
association) or, where the PACS offers only C-MOVE, a move to this tool's own storage SCP. pynetdicom speaks DICOM;
this module says what to ask and where the answers go.

Retrieved objects are written as they arrive, each to a temporary name renamed when complete, so a crash leaves no
half file and a second run finds what the first fetched.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydicom.dataset import Dataset

from edge_runtime.errors import FattyLiverError
from edge_runtime.hospital.dimse import PENDING, SUCCESS, associate, find_all, scu
from edge_runtime.hospital.peers import Peer

Retrieval = Literal["get", "move"]
WARNING = 0xB000  # some sub-operations failed (e.g. an object of a class we did not ask for)


class RetrieveError(FattyLiverError):
    """The PACS could not be asked or did not send what was asked (the message names the PACS and the status)."""


@dataclass(frozen=True)
class FoundStudy:
    """One study as C-FIND describes it (no patient field beyond the identifiers asked by)."""

    study_uid: str
    date: dt.date | None
    accession: str
    modalities: tuple[str, ...]
    instances: int | None


@dataclass(frozen=True)
class FoundSeries:
    """One series as C-FIND describes it."""

    series_uid: str
    number: str
    description: str


@dataclass(frozen=True)
class Retrieved:
    """What one retrieval brought: the files written, and the sub-operations the PACS says failed."""

    files: list[Path]
    failed: int


def _storage_classes() -> list[str]:
    """The objects a retrieval accepts: ultrasound images, secondary captures and structured reports (SRs are
    accepted so a study holding one does not fail, and read only by who asks for them)."""
    from pynetdicom import sop_class as sop

    return [
        sop.UltrasoundImageStorage, sop.UltrasoundMultiFrameImageStorage, sop.SecondaryCaptureImageStorage,
        sop.MultiFrameTrueColorSecondaryCaptureImageStorage, sop.ComprehensiveSRStorage, sop.EnhancedSRStorage,
        sop.BasicTextSRStorage, sop.Comprehensive3DSRStorage,
    ]  # fmt: skip


def dicom_date(text: Any) -> dt.date | None:
    """A DICOM DA value (YYYYMMDD) as a date; None when empty or not a date."""
    try:
        return dt.datetime.strptime(str(text or "")[:8], "%Y%m%d").date()
    except ValueError:
        return None


def found_study(item: Dataset) -> FoundStudy:
    """A study-level match (C-FIND or QIDO-RS) as the archive's callers read it."""
    modalities = item.get("ModalitiesInStudy", "") or []
    modalities = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    count = item.get("NumberOfStudyRelatedInstances", None)
    return FoundStudy(
        str(item.get("StudyInstanceUID", "")), dicom_date(item.get("StudyDate")), str(item.get("AccessionNumber", "")),
        tuple(str(m) for m in modalities if m), int(count) if str(count or "").strip().isdigit() else None,
    )  # fmt: skip


def found_series(item: Dataset) -> FoundSeries:
    """A series-level match (C-FIND or QIDO-RS)."""
    return FoundSeries(str(item.get("SeriesInstanceUID", "")), str(item.get("SeriesNumber", "") or ""),
                       str(item.get("SeriesDescription", "") or ""))  # fmt: skip


class StudyArchive(Protocol):
    """What the prior lookup and the site cohort ask of an archive, over DIMSE (Archive) or DICOMweb
    (edge_runtime.hospital.dicomweb.DicomWebArchive)."""

    def held(self) -> AbstractContextManager[None]:
        """One connection for a run of questions (an association, or an HTTP session)."""
        ...

    def find_studies(self, patient_id: str = "", accession: str = "") -> list[FoundStudy]: ...

    def find_series(self, study_uid: str, modality: str) -> list[FoundSeries]: ...

    def retrieve(self, study_uid: str, into: Path, how: Retrieval = "get", series_uid: str = "") -> Retrieved:
        """Every object of a study (or of one series) written into ``into`` as ``<SOPInstanceUID>.dcm``.

        Args:
            study_uid: the study.
            into: the folder.
            how: over DIMSE, 'get' or 'move'; DICOMweb has one way (WADO-RS).
            series_uid: only this series of the study (empty: the whole study).
        """
        ...


class Archive:
    """One PACS as a query/retrieve peer. Not shared between threads: a held association and the retrieval in progress
    belong to the caller's thread."""

    def __init__(self, peer: Peer, calling: str, timeout: float = 30.0, move_port: int | None = None):
        """Args:
        peer: the PACS (AE@HOST:PORT).
        calling: this tool's AE title (also the move destination the PACS must know).
        timeout: seconds before the PACS counts as not answering.
        move_port: where this tool's storage SCP listens for C-MOVE (None: C-MOVE is not offered).
        """
        self.peer, self.calling, self.timeout, self.move_port = peer, calling, timeout, move_port
        self._held: Any = None  # the association a run of questions shares (held())
        self._keeper: _Keeper | None = None  # where the C-GET in progress writes its objects

    def _ae(self) -> Any:
        ae = scu(self.calling, self.timeout)
        ae.maximum_pdu_size = 0
        return ae

    def _associate(self, ae: Any, **kwargs: Any) -> Any:
        return associate(ae, self.peer, RetrieveError, "the PACS", **kwargs)

    def _find_and_get(self) -> tuple[Any, dict[str, Any]]:
        """An AE asking for C-FIND and C-GET, and the association's arguments: this tool takes the storage SCP role
        for every class a C-GET may send, and each object goes to the retrieval in progress."""
        from pynetdicom import ALL_TRANSFER_SYNTAXES, build_role, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FindModel
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GetModel

        ae = self._ae()
        ae.add_requested_context(FindModel)
        ae.add_requested_context(GetModel)
        for uid in _storage_classes():
            ae.add_requested_context(uid, ALL_TRANSFER_SYNTAXES)
        roles = [build_role(uid, scp_role=True) for uid in _storage_classes()]
        return ae, {"ext_neg": roles, "evt_handlers": [(evt.EVT_C_STORE, self._store)]}

    def _store(self, event: Any) -> int:
        return self._keeper.handle(event) if self._keeper is not None else 0xA700

    @contextmanager
    def held(self) -> Iterator[None]:
        """One association for a run of C-FINDs and C-GETs (a follow-up's lookup asks 2 + 2 per prior study); without
        it each question opens and releases its own."""
        ae, arguments = self._find_and_get()
        self._held = self._associate(ae, **arguments)
        try:
            yield
        finally:
            held, self._held = self._held, None
            held.release()

    @contextmanager
    def _association(self) -> Iterator[Any]:
        """The held association, else one of its own for this question."""
        if self._held is not None:
            if not self._held.is_established:
                raise RetrieveError(f"the PACS {self.peer} closed the association")
            yield self._held
            return
        ae, arguments = self._find_and_get()
        assoc = self._associate(ae, **arguments)
        try:
            yield assoc
        finally:
            assoc.release()

    @contextmanager
    def _offered(self, what: str) -> Iterator[None]:
        """One request; RetrieveError when the PACS took the association but not this service (a store-only PACS
        accepts the storage contexts a C-GET asks for, and no query)."""
        try:
            yield
        except ValueError as exc:  # pynetdicom: no accepted presentation context for the model
            raise RetrieveError(f"the PACS {self.peer} does not offer Study Root {what}: {exc}") from None

    def find_studies(self, patient_id: str = "", accession: str = "") -> list[FoundStudy]:
        """Every study of a patient (by patient ID when given, else of one accession number), by Study Root C-FIND."""
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.PatientID, query.AccessionNumber = patient_id, "" if patient_id else accession
        query.StudyInstanceUID, query.StudyDate, query.ModalitiesInStudy = "", "", ""
        query.NumberOfStudyRelatedInstances = ""
        return [found_study(item) for item in self._find(query)]

    def find_series(self, study_uid: str, modality: str) -> list[FoundSeries]:
        """The series of one study holding ``modality`` objects, by Study Root C-FIND at the series level."""
        query = Dataset()
        query.QueryRetrieveLevel, query.StudyInstanceUID, query.Modality = "SERIES", study_uid, modality
        query.SeriesInstanceUID, query.SeriesNumber, query.SeriesDescription = "", "", ""
        return [found_series(item) for item in self._find(query)]

    def _find(self, query: Dataset) -> list[Dataset]:
        """Every match of a Study Root C-FIND; RetrieveError when the PACS cannot be asked or answers a failure."""
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FindModel

        with self._association() as assoc, self._offered("C-FIND"):
            found, failure = find_all(assoc, query, FindModel)
        if failure:
            raise RetrieveError(f"the PACS {self.peer} answered {failure}")
        return found

    def retrieve(self, study_uid: str, into: Path, how: Retrieval = "get", series_uid: str = "") -> Retrieved:
        """Every object of a study (or of one of its series) written into ``into``, by C-GET or C-MOVE.

        Args:
            study_uid: the study.
            into: the folder (``<SOPInstanceUID>.dcm`` each).
            how: 'get' (on the same association) or 'move' (to this tool's own storage SCP).
            series_uid: only this series of the study (empty: the whole study).
        """
        into.mkdir(parents=True, exist_ok=True)
        keeper = _Keeper(into)
        query = Dataset()
        query.QueryRetrieveLevel, query.StudyInstanceUID = "SERIES" if series_uid else "STUDY", study_uid
        if series_uid:
            query.SeriesInstanceUID = series_uid
        failed = self._get(query, keeper) if how == "get" else self._move(query, keeper)
        return Retrieved(keeper.files, failed)

    def _get(self, query: Dataset, keeper: _Keeper) -> int:
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GetModel

        with self._association() as assoc:
            self._keeper = keeper
            try:
                with self._offered("C-GET"):
                    return _outcome(self.peer, "C-GET", assoc.send_c_get(query, GetModel))
            finally:
                self._keeper = None

    def _move(self, query: Dataset, keeper: _Keeper) -> int:
        from pynetdicom import ALL_TRANSFER_SYNTAXES, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MoveModel

        if self.move_port is None:
            raise RetrieveError("C-MOVE needs a port for this tool's storage SCP (--move-port)")
        scp = self._ae()
        for uid in _storage_classes():
            scp.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
        server = scp.start_server(("", self.move_port), block=False, evt_handlers=[(evt.EVT_C_STORE, keeper.handle)])
        try:
            ae = self._ae()
            ae.add_requested_context(MoveModel)
            assoc = self._associate(ae)
            try:
                return _outcome(self.peer, "C-MOVE", assoc.send_c_move(query, self.calling, MoveModel))
            finally:
                assoc.release()
        finally:
            server.shutdown()


def _outcome(peer: Peer, what: str, responses: Iterable[tuple[Any, Any]]) -> int:
    """The failed sub-operations of a retrieval; RetrieveError when the PACS refused it outright."""
    failed, final = 0, None
    for status, _ in responses:
        if not status:
            raise RetrieveError(f"the PACS {peer} did not answer the {what} in time")
        final = int(status.Status)
        failed = int(status.get("NumberOfFailedSuboperations", failed) or 0)
    if final is None or (final not in (SUCCESS, WARNING, *PENDING) and not 0xB000 <= final <= 0xBFFF):
        raise RetrieveError(f"the PACS {peer} answered {what} with status 0x{(final or 0):04X}")
    return failed


def written_whole(into: Path, sop_instance_uid: str, write: Callable[[Path], Any]) -> Path:
    """One retrieved object as ``<SOPInstanceUID>.dcm`` in ``into``, written by ``write`` under a temporary name and
    renamed when complete, so a crash leaves no half file."""
    path = into / f"{sop_instance_uid}.dcm"
    partial = path.with_suffix(".part")
    write(partial)
    partial.replace(path)
    return path


class _Keeper:
    """Writes each object received during a retrieval; thread-safe (a move's objects arrive on the SCP's thread)."""

    def __init__(self, into: Path):
        self.into, self.files, self._lock = into, [], threading.Lock()

    def handle(self, event: Any) -> int:
        try:
            instance = str(event.request.AffectedSOPInstanceUID)
            path = written_whole(self.into, instance, lambda partial: partial.write_bytes(event.encoded_dataset()))
        except (OSError, ValueError, AttributeError):
            return 0xA700  # out of resources: the PACS counts this object as failed
        with self._lock:
            self.files.append(path)
        return SUCCESS
