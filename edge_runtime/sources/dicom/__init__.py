"""DICOM at the bedside: the images scanners store, as frames the pipeline reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_runtime.box.stats import RuntimeStats, ThrottledLog
    from edge_runtime.config import RuntimeConfig
    from edge_runtime.hospital.link import StudyRegistry
    from edge_runtime.pipeline.sessions import LatestFrames
    from edge_runtime.sources.dicom.listener import StorageListener


def open_listener(
    config: RuntimeConfig,
    served: object,
    queue: LatestFrames,
    reporting: tuple[RuntimeStats, ThrottledLog],
    studies: StudyRegistry | None = None,
) -> StorageListener | None:
    """The Storage SCP feeding the worker's stored lane, or None when ``[runtime.dicom] listen`` is unset.

    Args:
        config: the runtime's configuration.
        served: what holds the served model and its profiles (``.bundle``, ``.profiles``), updated on a swap.
        queue: the worker's queue.
        reporting: the statistics and the throttled log.
        studies: where each stored study waits for its report (None: no PACS).
    """
    if config.dicom.listen is None:
        return None
    from edge_runtime.sources.dicom.listener import StorageListener
    from edge_runtime.sources.dicom.store import DicomSource

    return StorageListener(config.dicom, DicomSource(config, served, queue, reporting, studies), reporting)
