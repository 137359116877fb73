"""A DICOM study as an exam: where each of its frames came from, and what the study carries to its report.

A stored image's frames travel with their :class:`StudyOrigin`: the study, series and instance, the SOP class, and
the patient and study attributes the report inherits (DICOM JSON, decoded from whatever character set the scanner
wrote). The session keeps them in its :class:`StudyTrack` while the exam runs; when it ends, the sinks receive the
track's :class:`StudyEvidence` beside the exam's final record. Patient attributes never reach the audit log: the
record holds UIDs only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.pipeline.exam import ExamTracker


@dataclass(frozen=True)
class Evidence:
    """One stored image the exam analysed: what a report references."""

    sop_class: str
    sop_instance: str
    series: str


@dataclass(frozen=True)
class StudyOrigin:
    """Where a frame stored over DICOM came from: its study is its session."""

    study: str  # StudyInstanceUID
    series: str  # SeriesInstanceUID
    instance: str  # SOPInstanceUID
    frame: int  # the frame of a cine loop (0 for one image)
    region: int | None  # the tissue region of a dual or quad display (None: the whole image)
    sop_class: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)  # the patient and study modules, DICOM JSON

    @property
    def evidence(self) -> Evidence:
        return Evidence(self.sop_class, self.instance, self.series)


@dataclass(frozen=True)
class StudyTerms:
    """How a DICOM study's session differs from a live one: it ends when no image has come for ``idle_s``, its
    views pair however far apart they were stored, and its exam follows the study policy (``new_exam``)."""

    idle_s: float
    new_exam: Callable[[], ExamTracker]


@dataclass(frozen=True)
class StudyEvidence:
    """What an ended study hands its report: the patient and study attributes, and the images that contributed."""

    attributes: Mapping[str, Any]
    evidence: tuple[Evidence, ...]


@dataclass
class StudyTrack:
    """What one study's exam saw: every instance that reached the pipeline, those whose frames were filed as a view,
    and the study's attributes as its images carried them."""

    study: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    received: dict[str, Evidence] = field(default_factory=dict)  # instance -> its evidence
    contributed: dict[str, set[str]] = field(default_factory=dict)  # series -> instances with a filed frame

    def arrived(self, origin: StudyOrigin) -> None:
        self.received[origin.instance] = origin.evidence
        self.attributes = origin.attributes or self.attributes

    def filed(self, origin: StudyOrigin) -> None:
        self.contributed.setdefault(origin.series, set()).add(origin.instance)

    def instances(self) -> list[str]:
        return sorted({i for instances in self.contributed.values() for i in instances})

    def evidence(self) -> StudyEvidence:
        used = [self.received[i] for i in self.instances() if i in self.received]
        return StudyEvidence(dict(self.attributes), tuple(used))
