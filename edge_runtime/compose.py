"""The whole bedside in one place: :func:`compose` declares its sources, the stages every frame goes through, the sinks
results and ended exams go to, and the services beside them; the server only starts, runs and stops what it returns.

```
sources:  ZeroMQ frames | DICOM stores (study attributes travel with the frames)
stages:   decode -> preprocess -> encode -> gate -> pair -> head -> exam      (the worker thread)
sinks:    PACS report queue | audit log | results | thumbnails
services: display feed (the results socket) | heartbeat and metrics | report sender
```
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import zmq

from edge_runtime import __version__
from edge_runtime.box.health import BoxStatus
from edge_runtime.box.parts import Part
from edge_runtime.box.telemetry import Telemetry
from edge_runtime.config import RuntimeConfig
from edge_runtime.followup.priors import PriorLookup
from edge_runtime.hospital.dicomweb import DicomWebArchive
from edge_runtime.hospital.jobs import ReportBuilder
from edge_runtime.hospital.peers import Peer
from edge_runtime.hospital.queue import ReportQueue
from edge_runtime.hospital.report import Equipment
from edge_runtime.hospital.retrieve import Archive, StudyArchive
from edge_runtime.hospital.sender import destinations_for
from edge_runtime.model.served import Served, ServedModel
from edge_runtime.pipeline.queue import FrameQueue
from edge_runtime.pipeline.runner import Pipeline, Sink
from edge_runtime.pipeline.sessions import SessionStore
from edge_runtime.pipeline.stages import (
    DecodeStage,
    EncodeStage,
    ExamStage,
    GateStage,
    HeadStage,
    MeasureStage,
    PairStage,
    PipelineStage,
    PreprocessStage,
)
from edge_runtime.pipeline.worker import Worker
from edge_runtime.services.feed import DisplayFeed, Outbox
from edge_runtime.services.heartbeat import Heartbeat
from edge_runtime.services.reports import ReportSender
from edge_runtime.sinks.audit import AuditLog, AuditResults
from edge_runtime.sinks.identity import ExamIdentities
from edge_runtime.sinks.reports import ReportToPacs
from edge_runtime.sinks.results import PublishResults, PublishThumbnails
from edge_runtime.sources.dicom.listener import StorageListener
from edge_runtime.sources.dicom.store import DicomStores
from edge_runtime.sources.frames import FrameAdmission, ZmqFrames
from edge_runtime.validation.drift import DriftMonitor, Expected
from edge_runtime.validation.watch import PublishedVerdict, SiteWatch


@dataclass(frozen=True)
class Bedside:
    """What compose() declares. The server starts the services, then the worker, then the sources (so nothing
    arrives before it can be served), and stops them in the reverse order."""

    sources: tuple[Part, ...]
    worker: Worker
    sinks: tuple[Sink, ...]
    services: tuple[Part, ...]
    status: BoxStatus
    admission: FrameAdmission
    audit: AuditLog
    reports: ReportQueue | None

    def part(self, name: str) -> Part:
        """A source, the worker or a service, by name."""
        return next(p for p in (*self.sources, self.worker, *self.services) if p.name == name)


def stages(model: ServedModel, config: RuntimeConfig, sessions: SessionStore) -> list[PipelineStage]:
    """Every frame's stages, in order, over one served model."""
    return [
        DecodeStage(),
        PreprocessStage(model.profiles, model.bundle.meta.input.harmonisation),
        EncodeStage(model.bundle),
        GateStage(model.gate, sessions, config.gate, keep_crops=config.thumbnails.enabled),
        MeasureStage(),
        PairStage(sessions),
        HeadStage(model.bundle),
        ExamStage(sessions, withhold_outside=config.gate.out_of_distribution == "withhold"),
    ]


def compose(config: RuntimeConfig, served: Served, telemetry: Telemetry, context: zmq.Context | None = None) -> Bedside:
    """The bedside: sources -> stages -> sinks, and the services beside them.

    Args:
        config: the runtime's configuration (edge.toml and flags).
        served: the one reference to the model being served (a model update swaps it).
        telemetry: the statistics, the throttled log and the supervisor every part reports to.
        context: the ZeroMQ context (default: the process's).
    """
    context = context or zmq.Context.instance()
    queue = FrameQueue(max_keys=2 * config.sessions.max_active)
    sessions = SessionStore.configured(config, lambda: served.current.exam, queue.stored_sessions)
    audit, outbox, worklist = AuditLog.configured(config.audit), Outbox(), bool(config.pacs.worklist)
    reports, sender = report_service(config, telemetry) if config.pacs.enabled else (None, None)
    sinks: list[Sink] = [ReportToPacs(reports, worklist, telemetry.stats, sender.wake)] if sender else []
    sinks += [AuditResults(audit, telemetry.stats, ExamIdentities.configured(config.audit)), PublishResults(outbox)]
    sinks += [PublishThumbnails(outbox, sessions, config.thumbnails)] if config.thumbnails.enabled else []
    expected = lambda: Expected.of(served.current.bundle.meta)  # noqa: E731 - a model update brings its own
    drift = DriftMonitor(config.drift, expected, telemetry.log) if config.drift.enabled else None
    sinks += [drift] if drift is not None else []
    build = lambda model: Pipeline(stages(model, config, sessions), sinks, model.bundle, sessions, telemetry)  # noqa: E731
    worker = Worker(served, build, queue, sessions, telemetry)
    worker.on_swap = served.updates.on_refused = audit.append_record
    if sender is not None:
        sender.on_followup = audit.append_record
    admission = FrameAdmission(served, config, queue, telemetry)
    sources: list[Part] = [ZmqFrames(config, admission, telemetry, context)]
    if config.dicom.listen is not None:
        sources.append(StorageListener(config.dicom, DicomStores(config, served, queue, telemetry), telemetry))
    watch = SiteWatch(PublishedVerdict.beside(config.audit.log), drift)
    status = BoxStatus(served, telemetry, queue, sessions, audit, reports, worklist, time.time(), watch)
    services = [DisplayFeed(config, outbox, telemetry, context), Heartbeat(config.metrics, status, outbox, telemetry)]
    services += [sender] if sender is not None else []
    return Bedside(tuple(sources), worker, tuple(sinks), tuple(services), status, admission, audit, reports)


def report_service(config: RuntimeConfig, telemetry: Telemetry) -> tuple[ReportQueue, ReportSender]:
    """``[runtime.pacs]``: the on-disk report queue, and the sender with its builder (this box as the report names it,
    the worklist) and its destinations."""
    settings = config.pacs
    calling = settings.ae_title or config.dicom.ae_title
    peers = [Peer.parse(p) for p in settings.destinations]
    destinations = destinations_for(peers, settings.stow_url, calling, settings.timeout_s)
    reports = ReportQueue(settings.queue, list(destinations), (settings.retry_s, settings.retry_max_s))
    equipment = Equipment(calling, __version__, socket.gethostname()[:64])
    worklist = Peer.parse(settings.worklist) if settings.worklist else None
    builder = ReportBuilder(equipment, worklist, calling, settings.timeout_s, prior_lookup(config, calling))
    return reports, ReportSender(reports, builder, destinations, telemetry, settings.timeout_s)


def prior_lookup(config: RuntimeConfig, calling: str) -> PriorLookup | None:
    """``[runtime.followup]``: the archive asked for the patient's previous reports. The one configured (a DICOMweb
    service, else a PACS), else where the reports go: the first PACS destination, else the STOW-RS service."""
    settings, pacs = config.followup, config.pacs
    if not settings.enabled:
        return None
    archive: StudyArchive
    peer = settings.peer or next(iter(pacs.destinations), None)
    if settings.dicomweb_url:
        archive = DicomWebArchive(settings.dicomweb_url, settings.timeout_s)
    elif peer is not None:
        archive = Archive(Peer.parse(peer), calling, settings.timeout_s)
    elif pacs.stow_url:
        archive = DicomWebArchive(pacs.stow_url, settings.timeout_s)
    else:
        return None
    return PriorLookup(archive, settings.window_days, settings.rule)
