"""How a report reaches a destination: C-STORE to a PACS (pynetdicom) or STOW-RS to a DICOMweb service
(dicomweb-client). An association refused, a failure status or an HTTP error is a :class:`SendError` naming the
destination and why (the report sender retries it with backoff)."""

from __future__ import annotations

import logging
from typing import Any

from pydicom.dataset import Dataset

from edge_runtime.hospital.dimse import associate, scu
from edge_runtime.hospital.peers import Peer

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

    ae = scu(calling, timeout)
    ae.add_requested_context(report.SOPClassUID, ExplicitVRLittleEndian)
    assoc = associate(ae, peer, SendError, "the PACS")
    try:
        status = assoc.send_c_store(report)
    finally:
        assoc.release()
    code = int(getattr(status, "Status", -1)) if status else -1
    if code not in STORE_OK:
        raise SendError(f"{peer} answered " + (f"status 0x{code:04X}" if code >= 0 else "nothing"))


def stow(report: Dataset, url: str, timeout: float) -> None:
    """The report to a DICOMweb service by STOW-RS; a SendError on any failure, a silent service included.

    Args:
        report: the SR document.
        url: the service's root.
        timeout: seconds before the service counts as not answering.
    """
    from dicomweb_client import DICOMwebClient

    try:
        client = DICOMwebClient(url=url, timeout=timeout)
        client.set_http_retry_params(retry=False)  # the report queue retries, with its own backoff
        client.store_instances([report])
    except Exception as exc:  # requests' and the client's own errors alike: the report stays queued
        raise SendError(f"STOW-RS to {url}: {type(exc).__name__}: {exc}") from None


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
        out[STOW] = lambda report: stow(report, stow_url, timeout)
    return out
