"""The bedside as a declared pipeline: sources, stages in order, sinks. The whole data flow is :func:`compose`.

```
sources: ZeroMQ frames, DICOM stores
  -> decode -> preprocess -> encode -> gate -> pair -> head -> exam   (each stage returns the frame's context, or a
                                                                       Drop with its reason)
  -> sinks: the PACS report queue (ended exams), the audit log, the results socket, thumbnails
```
"""

from __future__ import annotations

import zmq

from edge_runtime.box.stats import RuntimeStats, ThrottledLog
from edge_runtime.config import RuntimeConfig
from edge_runtime.hospital.link import HospitalLink
from edge_runtime.model.bundle import Bundle
from edge_runtime.model.gate import GatePolicy
from edge_runtime.pipeline.runner import Pipeline, Sink
from edge_runtime.pipeline.sessions import SessionStore
from edge_runtime.pipeline.stages import Decode, Encode, Exam, Gate, Head, Pair, PipelineStage, Preprocess
from edge_runtime.scanners.profiles import ScannerProfile
from edge_runtime.sinks.audit import AuditLog
from edge_runtime.sinks.results import AuditResults, PublishResults, PublishThumbnails, ReportToPacs


def stages(
    bundle: Bundle, config: RuntimeConfig, profiles: dict[str, ScannerProfile], sessions: SessionStore
) -> list[PipelineStage]:
    """The pipeline's stages, in order.

    Args:
        bundle: the verified bundle being served.
        config: the runtime's configuration.
        profiles: every known scanner profile.
        sessions: the exams in progress.
    """
    policy = GatePolicy(bundle.gate, bundle.meta.view_gate, config.gate.view_authority)
    return [
        Decode(),
        Preprocess(profiles, bundle.meta.input.harmonisation),
        Encode(bundle),
        Gate(policy, sessions, config.gate, keep_crops=config.thumbnails.enabled),
        Pair(sessions),
        Head(bundle),
        Exam(sessions, withhold_outside=config.gate.out_of_distribution == "withhold"),
    ]


def compose(
    bundle: Bundle,
    config: RuntimeConfig,
    profiles: dict[str, ScannerProfile],
    state: tuple[SessionStore, AuditLog, RuntimeStats, ThrottledLog],
    results: zmq.Socket | None = None,
    hospital: HospitalLink | None = None,
) -> Pipeline:
    """The whole data flow after the source: the stages, then the PACS report queue, the audit log, the results socket
    and thumbnails.

    Args:
        bundle: the verified bundle being served.
        config: the runtime's configuration.
        profiles: every known scanner profile.
        state: the exams, the audit log, the statistics and the throttled log.
        results: the worker's results socket; None runs the pipeline without publishing (replays, benchmarks).
        hospital: the PACS report queue and the studies it reports into (None: no PACS configured).
    """
    sessions, audit, stats, log = state
    sinks: list[Sink] = [ReportToPacs(hospital)] if hospital is not None else []  # first: the record names it
    sinks.append(AuditResults(audit, stats))  # before publishing: each result says whether it was recorded
    if results is not None:
        sinks.append(PublishResults(results, stats))
    if results is not None and config.thumbnails.enabled:
        sinks.append(PublishThumbnails(results, sessions, config.thumbnails))
    return Pipeline(stages(bundle, config, profiles, sessions), sinks, (bundle, sessions, stats, log))
