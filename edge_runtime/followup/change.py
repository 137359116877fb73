"""Did the liver change? This exam's PDFF against the patient's previous report, with an honest answer.

Two exams of one patient by one bundle lineage on one scanner share most of the model's error: the same body wall,
the same operator habits, the same scanner's grey map. What they do not share is what a repeat exam moves: which
frames were caught (each exam states it as ``pdff_se``, from its own pairs' disagreement) and what a new day moves
(gain, probe angle), which no single exam can see: ``between_visits``. The change in PDFF points is judged against
both in quadrature, times ``scale``; both are calibrated on repeat phantom exams at the same PDFF so that at most
10 % of unchanged livers are called changed (benchmarks/followup.py; docs/DESIGN.md, "Follow-up"). Numbers from
different lineages, or from different scanners without a site adaptation, are not set side by side, nor are exams
whose estimate the bundle itself does not stand behind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge_runtime.contracts import (
    CHANGE_SAID,
    NO_CALL_SAID,
    Change,
    ExamEstimate,
    ExamRecord,
    FollowUp,
    FollowUpRule,
    ModelInfo,
    NoCall,
    PriorReport,
)

RESPONSE_FALL = -0.30  # trials' response: a relative MRI-PDFF fall of at least 30 %
UNRELIABLE = (NoCall.OUTSIDE_TRAINING, NoCall.DISCORDANT, NoCall.COLLECTING, NoCall.NOT_CALIBRATED)
# An exam indeterminate for one of these reasons has no estimate the bundle stands behind. One indeterminate because
# the fatty/normal line cannot be certified (cannot_tell, cannot_certify) still measures its PDFF as well as any.


# The rule is a bundle's (benchmarks/followup.py calibrates it on repeat phantom exams). The defaults rest on 60
# unchanged patients of the bundle that meets the change bars (two draws' calibration groups pooled; docs/DESIGN.md,
# "Follow-up"); the paper-distribution bundle keeps its own figures under them.
DEFAULT_CHANGE_SCALE = 1.87
DEFAULT_BETWEEN_VISITS_PP = 1.33
DEFAULT_PAIR_SD = 0.123  # log(1 + PDFF), pooled over the calibration exams' pairs

SITE_MARK = ", adapted to site "


def lineage(name: str, site: str | None) -> str:
    """A bundle's lineage: its name, and the site it was adapted to (versions of one lineage share a scale)."""
    return name + (f"{SITE_MARK}{site}" if site else "")


def lineage_of(model: ModelInfo) -> str:
    return lineage(model.name, model.site)


@dataclass(frozen=True)
class ChangeRule:
    """How far apart two exams must lie to be called a change."""

    scale: float  # multiplier on the pair's repeat error: the calibrated 90 % no-change bound
    between_visits: float  # sd of what a new day moves an exam's PDFF (gain, probe, frames), pp; exams cannot see it
    pair_sd: float = DEFAULT_PAIR_SD  # one pair's sd on log(1 + PDFF), pooled: the error of an exam with one pair

    def exam_se(self, pdff_se: float | None, n_pairs: int) -> float:
        """An exam's own standard error on log(1 + PDFF): its stated one, or the pooled pair sd over its pairs
        (a stored study of one image per view has one pair, and no spread of its own)."""
        return pdff_se if pdff_se is not None else self.pair_sd / math.sqrt(max(1, n_pairs))

    def repeat_error(self, prior: tuple[float, float], current: tuple[float, float]) -> float:
        """The sd of the change between two unchanged exams, pp: each exam's own error (its ``pdff_se`` on
        log(1 + PDFF), times 1 + PDFF) and the between-visit part of each, in quadrature.

        Args:
            prior: the prior's PDFF and pdff_se.
            current: this exam's PDFF and pdff_se.
        """
        own = [se * (1.0 + pdff) for pdff, se in (prior, current)]
        return math.sqrt(own[0] ** 2 + own[1] ** 2 + 2 * self.between_visits**2)

    def bound(self, prior: tuple[float, float], current: tuple[float, float]) -> float:
        """The largest change, pp, that two unchanged exams show 90 % of the time."""
        return self.scale * self.repeat_error(prior, current)


@dataclass(frozen=True)
class ThisExam:
    """This exam as a comparison sees it: its answer, the bundle lineage that made it and its scanner."""

    estimate: ExamEstimate
    lineage: str
    scanner: str | None


def not_comparable(prior: PriorReport, current: ThisExam) -> str | None:
    """Why the two exams' numbers cannot be set side by side, in words; None when they can."""
    if prior.lineage != current.lineage:
        made = f"the prior was made by {prior.lineage}, this exam by {current.lineage}"
        return f"{made}: their scales are not known to agree"
    adapted = SITE_MARK in current.lineage
    if prior.scanner and current.scanner and prior.scanner != current.scanner and not adapted:
        scanned = f"the prior was scanned on {prior.scanner}, this exam on {current.scanner}"
        return f"{scanned}, and the bundle is not adapted to this site's scanners"
    if prior.pdff is None or (prior.call == "indeterminate" and prior.why in UNRELIABLE):
        return f"the prior was indeterminate ({_said(prior.why)})"
    exam = current.estimate
    if exam.pdff is None or (exam.call in (None, "indeterminate") and exam.why in UNRELIABLE):
        return f"this exam is indeterminate ({_said(exam.why)})"
    return None


def _said(why: NoCall | None) -> str:
    return NO_CALL_SAID[why] if why is not None else "no estimate"


def compare(prior: PriorReport, current: ThisExam, days: int | None, rule: ChangeRule) -> FollowUp:
    """The follow-up statement of this exam against ``prior``.

    Args:
        prior: the patient's most recent earlier report.
        current: this exam, its lineage and scanner.
        days: days between the two studies (None: unknown).
        rule: the calibrated change rule.
    """
    why = not_comparable(prior, current)
    if why is not None:
        return FollowUp(statement=Change.NOT_COMPARABLE, reason=f"not comparable: {why}", prior=prior, days=days)
    before, after = float(prior.pdff), float(current.estimate.pdff)
    moved = after - before
    exam = current.estimate
    first, second = rule.exam_se(prior.pdff_se, prior.n_pairs), rule.exam_se(exam.pdff_se, exam.n_pairs)
    bound = rule.bound((before, first), (after, second))
    low, high = moved - bound, moved + bound
    statement = Change.NO_CHANGE if abs(moved) <= bound else Change.INCREASED if moved > 0 else Change.DECREASED
    response = responded(statement, high / before if before > 0 else None)
    return FollowUp(
        statement=statement,
        reason=_reason(statement, after - before, (low, high), response),
        prior=prior,
        days=days,
        change=round(after - before, 2),
        change_interval=(round(low, 2), round(high, 2)),
        relative_change=round((after - before) / before, 3) if before > 0 else None,
        response=response,
        rule=FollowUpRule(scale=rule.scale, between_visits=rule.between_visits, pair_sd=rule.pair_sd),
    )


def responded(statement: Change, relative_high: float | None) -> bool | None:
    """A response (a relative fall of at least 30 %) only when the change's whole interval lies beyond it; not one
    when the liver got fatter. Nothing else is said: the model reads changes short (0.66 to 0.85 of the true change at
    the median on repeat phantom exams), so an interval short of 30 % does not show a fall short of 30 %."""
    if statement == Change.INCREASED:
        return False
    if statement == Change.DECREASED and relative_high is not None and relative_high <= RESPONSE_FALL:
        return True
    return None


def _reason(statement: Change, change: float, interval: tuple[float, float], response: bool | None) -> str:
    words = f"{CHANGE_SAID[statement]}: {change:+.1f} pp ({interval[0]:+.1f} to {interval[1]:+.1f})"
    return words + ", a fall of at least 30 %" if response is True else words


def no_prior(why: str) -> FollowUp:
    """The comparison when no prior can be read: why, in words."""
    return FollowUp(statement=Change.NO_PRIOR, reason=f"prior not available: {why}")


def as_prior(record: ExamRecord, date: str, sop_instance_uid: str = "", study_uid: str = "") -> PriorReport:
    """An ended exam as a later exam reads it back from its report (the same fields the SR states).

    Args:
        record: the earlier exam's final record.
        date: its study date (ISO).
        sop_instance_uid: its report's UID.
        study_uid: its study's UID.
    """
    exam = record.exam
    return PriorReport(
        sop_instance_uid=sop_instance_uid,
        study_instance_uid=study_uid,
        date=date,
        call=exam.call or "indeterminate",
        why=exam.why if exam.call in (None, "indeterminate") else None,
        pdff=exam.pdff,
        pdff_interval=exam.pdff_interval,
        pdff_se=exam.pdff_se,
        n_pairs=exam.n_pairs,
        model=f"{record.model.name} {record.model.version}",
        lineage=lineage_of(record.model),
        scanner=record.scanner,
    )
