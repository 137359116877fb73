"""A DICOM study as an exam: where each of its frames came from, and what the study carries to its report.

A stored image's frames travel with their :class:`StudyOrigin`: the study, series and instance, the SOP class, and
the patient and study attributes the report inherits (DICOM JSON, decoded from whatever character set the scanner
wrote). The session keeps them in its :class:`StudyTrack` while the exam runs; when it ends, the sinks receive the
track's :class:`StudyEvidence` beside the exam's final record. Patient attributes never reach the audit log: the
record holds UIDs only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from edge_runtime.contracts import HriReading
from edge_runtime.pipeline.exam import ExamTracker

KEPT_HRI_FRAMES = 30  # a study keeps its last this many measured frames for the report's choice


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
    offset: tuple[int, int] = (0, 0)  # the region's top-left pixel in the stored image (x, y)

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
class HriEvidence:
    """The kidney-liver frame a report shows the hepatorenal index on: the stored image and frame (1-based, as
    DICOM numbers frames), the frame's HRI, and both regions as polygons in the stored image's pixels."""

    image: Evidence
    frame_number: int
    value: float
    liver_region: tuple[tuple[float, float], ...]
    cortex_region: tuple[tuple[float, float], ...]
    liver_echo: float
    cortex_echo: float

    @classmethod
    def of(cls, origin: StudyOrigin, reading: HriReading) -> HriEvidence:
        """A measured reading of a stored frame, its regions moved from the frame into the stored image."""
        dx, dy = origin.offset

        def moved(polygon: list[tuple[float, float]] | None) -> tuple[tuple[float, float], ...]:
            return tuple((round(x + dx, 1), round(y + dy, 1)) for x, y in polygon or ())

        return cls(
            origin.evidence,
            origin.frame + 1,
            float(reading.value),
            moved(reading.liver_region),
            moved(reading.cortex_region),
            float(reading.liver_echo),
            float(reading.cortex_echo),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HriEvidence:
        polygon = lambda points: tuple(tuple(point) for point in points)  # noqa: E731
        fields = dict(data) | {"image": Evidence(**data["image"])}
        return cls(**fields | {k: polygon(fields[k]) for k in ("liver_region", "cortex_region")})


@dataclass(frozen=True)
class StudyEvidence:
    """What an ended study hands its report: the patient and study attributes, the images that contributed, and
    the frame whose hepatorenal index stands for the exam's (None: none was measured)."""

    attributes: Mapping[str, Any]
    evidence: tuple[Evidence, ...]
    hri: HriEvidence | None = None


@dataclass
class StudyTrack:
    """What one study's exam saw: every instance that reached the pipeline, those whose frames were filed as a view,
    and the study's attributes as its images carried them."""

    study: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    received: dict[str, Evidence] = field(default_factory=dict)  # instance -> its evidence
    contributed: dict[str, set[str]] = field(default_factory=dict)  # series -> instances with a filed frame
    measured: list[HriEvidence] = field(default_factory=list)  # guard-clean frames given an HRI (the last few)

    def arrived(self, origin: StudyOrigin) -> None:
        self.received[origin.instance] = origin.evidence
        self.attributes = origin.attributes or self.attributes

    def filed(self, origin: StudyOrigin) -> None:
        self.contributed.setdefault(origin.series, set()).add(origin.instance)

    def hri_measured(self, origin: StudyOrigin, reading: HriReading) -> None:
        """A stored frame's HRI, kept so the report can show the exam's on an image."""
        self.measured = [*self.measured[-(KEPT_HRI_FRAMES - 1) :], HriEvidence.of(origin, reading)]

    def representative(self) -> HriEvidence | None:
        """The measured frame whose HRI lies nearest the exam's (the geometric mean of the frames')."""
        if not self.measured:
            return None
        centre = math.exp(sum(math.log(m.value) for m in self.measured) / len(self.measured))
        return min(self.measured, key=lambda m: abs(math.log(m.value / centre)))

    def instances(self) -> list[str]:
        return sorted({i for instances in self.contributed.values() for i in instances})

    def evidence(self) -> StudyEvidence:
        used = [self.received[i] for i in self.instances() if i in self.received]
        return StudyEvidence(dict(self.attributes), tuple(used), self.representative())
