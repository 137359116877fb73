"""The hospital's record: an exam's answer as a DICOM Structured Report in the patient's study, sent to the PACS
through a store-and-forward queue that survives restarts, and the Modality Worklist that links a screen-grab exam to
its scheduled study."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_runtime.box.stats import RuntimeStats
    from edge_runtime.config import RuntimeConfig
    from edge_runtime.hospital.link import HospitalLink


def open_hospital(config: RuntimeConfig, stats: RuntimeStats) -> HospitalLink | None:
    """The PACS report queue and its sender when ``[runtime.pacs]`` names a destination, else None."""
    if not config.pacs.enabled:
        return None
    import socket

    from edge_runtime import __version__
    from edge_runtime.hospital.link import HospitalLink
    from edge_runtime.hospital.report import Equipment

    equipment = Equipment(config.pacs.ae_title or config.dicom.ae_title, __version__, socket.gethostname()[:64])
    return HospitalLink(config, stats, equipment)
