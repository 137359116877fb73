"""A site's subjects through the bundle exactly as the bedside runs it: the int8 encoder, the view gate, the guard,
every head of the ensemble and the exam's model-error statements (class set, PDFF interval). No float shortcut:
what the acceptance test scores is what the bedside would say."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_runtime.config import ExamPolicy
from edge_runtime.contracts import FATTY_PDFF, VIEWS
from edge_runtime.model.bundle import Bundle
from edge_runtime.model.gate import GatePolicy
from edge_runtime.model.uncertainty import Members, definite_call, sigmoid
from edge_runtime.pipeline.exam import ExamModel
from trainer.dataset import Cohort
from trainer.manifest import SubjectRecord


@dataclass(frozen=True)
class SubjectAnswer:
    """One subject's two views through the bundle, and what the bedside would state about it."""

    subject_id: str
    vendor: str
    scanner: str
    pdff: float  # the reference standard (MRI-PDFF, %)
    p_fatty: float  # calibrated, from the ensemble
    pdff_estimate: float  # recalibrated ensemble PDFF, %
    pdff_interval: tuple[float, float]
    class_set: tuple[str, ...]
    views_filed: tuple[str | None, ...]  # where the gate files each view frame ('auto'); None: kept out
    guard_flags: tuple[bool, ...]  # per view frame: beyond the guard

    @property
    def definite(self) -> bool:
        return len(self.class_set) == 1

    @property
    def interval_covers(self) -> bool:
        return self.pdff_interval[0] <= self.pdff <= self.pdff_interval[1]

    @property
    def views_right(self) -> float:
        """The share of its view frames the gate files under their own view."""
        return float(np.mean([filed == view for filed, view in zip(self.views_filed, VIEWS, strict=True)]))

    @property
    def guard_share(self) -> float:
        """The share of its view frames the guard flags."""
        return float(np.mean(self.guard_flags))


def exam_model(bundle: Bundle, policy: ExamPolicy | None = None) -> ExamModel:
    return ExamModel.from_bundle(bundle.meta.exam, bundle.threshold, policy or ExamPolicy())


@dataclass(frozen=True)
class RawAnswer:
    """What the bundle's models give for one subject before any exam statement: the ensemble, the gate, the guard."""

    features: dict[str, np.ndarray]  # view -> the bundle encoder's features
    members: Members
    views_filed: tuple[str | None, ...]
    guard_flags: tuple[bool, ...]


def run_subject(bundle: Bundle, gate: GatePolicy, cohort: Cohort, subject_id: str) -> RawAnswer:
    """One subject's two views through the int8 encoder, the gate ('auto', as grab sends them), the guard and
    every head.

    Args:
        bundle: the bundle run.
        gate: its gate policy (view authority 'model').
        cohort: the preprocessed images.
        subject_id: the subject.
    """
    images = {v: cohort.image(subject_id, v) for v in VIEWS}
    features = {v: bundle.encode(v, images[v]) for v in VIEWS}
    routes = [gate.route("auto", images[v], features[v]) for v in VIEWS]
    flags = [bool(gate.guard(v, images[v], features[v], cohort.scanner(subject_id, v))[0]) for v in VIEWS]
    return RawAnswer(features, bundle.answer(features), tuple(r.view for r in routes), tuple(flags))


def run_cohort(bundle: Bundle, cohort: Cohort, progress=None) -> list[RawAnswer]:
    gate = GatePolicy(bundle.gate, bundle.meta.view_gate, "model")
    ids = cohort.ids
    return [run_subject(bundle, gate, cohort, sid) for sid in (progress(ids) if progress else ids)]


def state(model: ExamModel, record: SubjectRecord, raw: RawAnswer) -> SubjectAnswer:
    """What the bedside states about one subject's pair as a single-pair exam: a definite call only where the bundle
    certifies it, and never on a pair the guard flags (the bedside gives no call then)."""
    p = float(sigmoid(model.logit(raw.members)))
    centre = model.pdff_centre(raw.members.log_pdff)
    call = definite_call(p, model.definite.fatty_threshold, model.definite.normal_threshold) if model.definite else None
    chosen = [call] if call is not None and not any(raw.guard_flags) else ["fatty", "normal"]  # as at the bedside
    return SubjectAnswer(
        subject_id=record.subject_id,
        vendor=record.vendor,
        scanner=record.views[VIEWS[0]].scanner,
        pdff=float(record.pdff) if record.pdff is not None else float("nan"),
        p_fatty=p,
        pdff_estimate=math.expm1(centre),
        pdff_interval=model.pdff_bounds(centre, raw.members.log_pdff_spread, 0.0),
        class_set=tuple(chosen),
        views_filed=raw.views_filed,
        guard_flags=raw.guard_flags,
    )


def answer_cohort(bundle: Bundle, cohort: Cohort, progress=None) -> list[SubjectAnswer]:
    """Every subject of the cohort through the bundle's bedside path and its exam statements."""
    model = exam_model(bundle)
    raws = run_cohort(bundle, cohort, progress)
    return [state(model, record, raw) for record, raw in zip(cohort.subjects, raws, strict=True)]


def arrays(answers: list[SubjectAnswer]) -> dict[str, np.ndarray]:
    """The answers as columns, for metrics and plots."""
    return {
        "pdff": np.array([a.pdff for a in answers]),
        "p_fatty": np.array([a.p_fatty for a in answers]),
        "pdff_pred": np.array([a.pdff_estimate for a in answers]),
        "covers": np.array([a.interval_covers for a in answers]),
        "definite": np.array([a.definite for a in answers]),
        "set_right": np.array([("fatty" if a.pdff >= FATTY_PDFF else "normal") in a.class_set for a in answers]),
        "guard": np.array([a.guard_share for a in answers]),
        "views_right": np.array([a.views_right for a in answers]),
    }
