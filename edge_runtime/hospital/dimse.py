"""Opening a DICOM association and asking a C-FIND, once for every SCU the box and its tools run: the report
sender's C-STORE, the Modality Worklist and the archive's query/retrieve. pynetdicom speaks DICOM; a refusal or a
failure status becomes the caller's own named error, which says who was asked."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from edge_runtime.hospital.peers import Peer

PENDING = (0xFF00, 0xFF01)
SUCCESS = 0x0000


def scu(calling: str, timeout: float) -> Any:
    """An application entity calling as ``calling``, every wait bounded by ``timeout`` seconds."""
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    return ae


def associate(ae: Any, peer: Peer, refused: type[Exception], who: str, **kwargs: Any) -> Any:
    """The established association with ``peer``; ``refused`` naming ``who`` (e.g. "the PACS") when there is none.

    Args:
        ae: the calling entity with its requested contexts.
        peer: where to.
        refused: the caller's error type.
        who: how the message names the peer's role.
        kwargs: passed to pynetdicom (extended negotiation, event handlers).
    """
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, **kwargs)
    if not assoc.is_established:
        raise refused(f"{who} {peer} refused or did not answer the association")
    return assoc


def find_all(assoc: Any, query: Dataset, model: Any) -> tuple[list[Dataset], str | None]:
    """Every match of one C-FIND on an open association, and the failure status in words (None: success)."""
    found, failure = [], None
    for status, item in assoc.send_c_find(query, model):
        code = int(getattr(status, "Status", 0xFFFF)) if status else 0xFFFF
        if code in PENDING and item is not None:
            found.append(item)
        elif code != SUCCESS:
            failure = f"C-FIND status 0x{code:04X}"
    return found, failure
