"""The bedside's DICOM Storage SCP, on pynetdicom: the association policy lives here, what a stored object means in
``edge_runtime.sources.dicom.store`` (transport apart from logic, as the ZeroMQ source).

Policy a PACS administrator expects of a well-behaved node: only listed calling AE titles (when a list is given),
only the image storage SOP classes and Verification (C-ECHO), every transfer syntax scanners store in, a maximum
PDU, a byte budget per association (an association past it is aborted), a cap on associations at once, a network
timeout that closes an association that never ends, and TLS when a certificate is configured. A dataset that
cannot be used gets a failure status and a counter; nothing a peer sends can stop the box.
"""

from __future__ import annotations

import logging
import socketserver
import ssl
import threading
import time
from typing import Any

from edge_runtime.box.parts import LoopingPart
from edge_runtime.box.supervision import Kind
from edge_runtime.box.telemetry import Telemetry
from edge_runtime.config import DicomSettings
from edge_runtime.contracts import Count
from edge_runtime.errors import ConfigError
from edge_runtime.sources.dicom.sop import IMAGE_STORAGE, TRANSFER_SYNTAXES
from edge_runtime.sources.dicom.store import CANNOT_UNDERSTAND, SUCCESS, DicomStores

log = logging.getLogger("edge_runtime")
logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # one line per PDU at INFO: the box's log says enough


def tls_context(settings: DicomSettings) -> ssl.SSLContext | None:
    """The listener's TLS context (server side; client certificates required when a CA is given), or None."""
    if settings.tls_certificate is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_certificate, settings.tls_key)
        if settings.tls_ca is not None:
            context.load_verify_locations(settings.tls_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[runtime.dicom] TLS: {exc}") from None
    return context


def pulsed_server_class() -> type:
    """pynetdicom's threaded association server, beating its part's pulse each time its accept loop turns."""
    from pynetdicom.transport import ThreadedAssociationServer

    class PulsedServer(ThreadedAssociationServer):
        pulse = None

        def service_actions(self) -> None:
            super().service_actions()
            if self.pulse is not None:
                self.pulse.beat()

    return PulsedServer


class StorageListener(LoopingPart):
    """The DICOM source: one Storage SCP, its application entity, its event handlers and its accept thread."""

    name, kind = "dicom", Kind.SOURCE

    def __init__(self, settings: DicomSettings, stores: DicomStores, telemetry: Telemetry):
        super().__init__(telemetry)
        self.settings, self.stores = settings, stores
        self.stats, self.log = telemetry.stats, telemetry.log
        self._bytes: dict[int, int] = {}
        self._lock = threading.Lock()
        self.server: Any = None

    def _application_entity(self) -> Any:
        from pynetdicom import AE
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.settings.ae_title)
        for sop_class in IMAGE_STORAGE:
            ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
        ae.add_supported_context(Verification)
        ae.require_calling_aet = list(self.settings.allowed_calling)
        ae.maximum_pdu_size = self.settings.max_pdu_bytes
        ae.maximum_associations = self.settings.max_associations
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = self.settings.network_timeout_s
        return ae

    def _handlers(self) -> list:
        from pynetdicom import evt

        return [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, lambda event: SUCCESS),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, lambda event: self.stats.count(Count.DICOM_ASSOCIATIONS_REFUSED)),
            (evt.EVT_ABORTED, lambda event: self.stats.count(Count.DICOM_ASSOCIATIONS_ABORTED)),
            (evt.EVT_DATA_RECV, self._on_data),
            (evt.EVT_CONN_CLOSE, self._on_close),
        ]

    def open(self) -> None:
        """Bind the listening socket now; a ConfigError names an address that cannot be bound."""
        ae, tls = self._application_entity(), tls_context(self.settings)
        server_class, handlers = pulsed_server_class(), self._handlers()
        try:
            self.server = ae.make_server(self.settings.address, None, None, tls, handlers, server_class)
        except OSError as exc:
            raise ConfigError(f"[runtime.dicom] cannot listen on {self.settings.listen}: {exc}") from None
        self.server.pulse = self.pulse
        callers = ", ".join(self.settings.allowed_calling) or "any (no allowed_calling list)"
        said = "TLS" if self.settings.tls_certificate else "no TLS"
        where = (self.settings.ae_title, self.settings.listen, said, callers)
        log.info("DICOM storage as AE %s on %s (%s); calling AEs: %s", *where)

    def step(self) -> None:
        """Accept associations until stopped (each is served on a thread of its own)."""
        self.server.serve_forever(poll_interval=0.5)

    def wake(self) -> None:
        """Stop accepting: the accept loop ends within its poll interval (pynetdicom's own shutdown() also expects
        the AE's start_server, which this part does not use)."""
        if self.server is not None and self._thread is not None and self._thread.is_alive():
            socketserver.BaseServer.shutdown(self.server)

    def close(self) -> None:
        if self.server is not None:
            self.server.server_close()
            self.server = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1]) if self.server is not None else 0

    def _on_store(self, event: Any) -> int:
        try:
            return self.stores.store(event.encoded_dataset(), time.time())
        except Exception as exc:  # a bug must not answer nothing: the scanner gets a failure, the box keeps serving
            self.pulse.failed(exc, "a stored object: ")
            self.stats.count(Count.DICOM_OBJECTS_FAILED)
            return CANNOT_UNDERSTAND

    def _on_accepted(self, event: Any) -> None:
        self.stats.count(Count.DICOM_ASSOCIATIONS)
        with self._lock:
            self._bytes[id(event.assoc)] = 0

    def _on_data(self, event: Any) -> None:
        """Count what the association sent; past the budget, abort it (its partial object never reaches anyone)."""
        key = id(event.assoc)
        with self._lock:
            total = self._bytes.get(key, 0) + len(event.data)
            self._bytes[key] = total
        if total > self.settings.max_association_bytes:
            self.log.once("dicom-budget", f"an association sent over {self.settings.max_association_bytes} bytes")
            event.assoc.abort()

    def _on_close(self, event: Any) -> None:
        with self._lock:
            self._bytes.pop(id(event.assoc), None)
