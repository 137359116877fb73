"""Asking a DICOMweb service for studies and fetching them: QIDO-RS for the studies and series, WADO-RS for the
objects. The same three questions as the DIMSE :class:`~edge_runtime.hospital.retrieve.Archive` (it is a
:class:`~edge_runtime.hospital.retrieve.StudyArchive`), for a PACS or a vendor-neutral archive that offers DICOMweb
rather than, or beside, C-FIND and C-GET. dicomweb-client speaks HTTP; this module says what to ask and where the
answers go. Any failure is a :class:`~edge_runtime.hospital.retrieve.RetrieveError` naming the service.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from edge_runtime.hospital.peers import checked_url
from edge_runtime.hospital.retrieve import (
    FoundSeries,
    FoundStudy,
    Retrieval,
    Retrieved,
    RetrieveError,
    found_series,
    found_study,
    written_whole,
)

STUDY_FIELDS = ("StudyDate", "AccessionNumber", "ModalitiesInStudy", "NumberOfStudyRelatedInstances")
SERIES_FIELDS = ("SeriesNumber", "SeriesDescription", "Modality")


class DicomWebArchive:
    """One DICOMweb service as a query/retrieve peer."""

    def __init__(self, url: str, timeout: float = 30.0):
        """Args:
        url: the service's root (QIDO-RS, WADO-RS and STOW-RS under it).
        timeout: seconds before the service counts as not answering (each request).
        """
        self.url, self.timeout = checked_url(url), timeout
        self._held: Any = None  # the client a run of questions shares (held())

    def _client(self) -> Any:
        if self._held is not None:
            return self._held
        from dicomweb_client import DICOMwebClient

        client = DICOMwebClient(url=self.url, timeout=self.timeout)
        client.set_http_retry_params(retry=False)  # one attempt: a slow or down service costs the timeout, once
        return client

    @contextmanager
    def held(self) -> Iterator[None]:
        """One client, and so one kept-alive HTTP session, for a run of questions."""
        self._held = self._client()
        try:
            yield
        finally:
            self._held = None

    def _ask(self, what: str, call: Any) -> Any:
        """One request; every failure (refused, timed out, an HTTP error, an unreadable answer) a RetrieveError."""
        try:
            return call(self._client())
        except Exception as exc:  # requests', the client's and pydicom's errors alike
            raise RetrieveError(
                f"the DICOMweb service {self.url} failed the {what}: {type(exc).__name__}: {exc}"
            ) from None

    def find_studies(self, patient_id: str = "", accession: str = "") -> list[FoundStudy]:
        """Every study of a patient (by patient ID when given, else of one accession number), by QIDO-RS."""
        filters = {"PatientID": patient_id} if patient_id else {"AccessionNumber": accession}
        found = self._ask("study search (QIDO-RS)", lambda c: c.search_for_studies(
            search_filters=filters, fields=list(STUDY_FIELDS)))  # fmt: skip
        return [found_study(Dataset.from_json(item)) for item in found]

    def find_series(self, study_uid: str, modality: str) -> list[FoundSeries]:
        """The series of one study holding ``modality`` objects, by QIDO-RS."""
        query = {"study_instance_uid": study_uid, "search_filters": {"Modality": modality}}
        found = self._ask("series search (QIDO-RS)", lambda c: c.search_for_series(**query, fields=list(SERIES_FIELDS)))
        series = [Dataset.from_json(item) for item in found]
        return [found_series(s) for s in series if str(s.get("Modality", "") or modality) == modality]

    def retrieve(self, study_uid: str, into: Path, how: Retrieval = "get", series_uid: str = "") -> Retrieved:
        """Every object of a study (or of one of its series) written into ``into`` by WADO-RS (``how`` is for the
        DIMSE archive: DICOMweb has one way).

        Args:
            study_uid: the study.
            into: the folder (``<SOPInstanceUID>.dcm`` each).
            how: not used.
            series_uid: only this series of the study (empty: the whole study).
        """
        into.mkdir(parents=True, exist_ok=True)
        if series_uid:
            objects = self._ask("series retrieval (WADO-RS)", lambda c: c.retrieve_series(study_uid, series_uid))
        else:
            objects = self._ask("study retrieval (WADO-RS)", lambda c: c.retrieve_study(study_uid))
        written = [
            written_whole(into, str(o.SOPInstanceUID), partial(o.save_as, enforce_file_format=True)) for o in objects
        ]
        return Retrieved(written, 0)
