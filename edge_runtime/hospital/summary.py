"""`edge-runtime report`: an ended exam's report in words, and a one-page picture for the record, from the audit log's
final record (UIDs and the answer, never a patient field) or from a report document (e.g. retrieved from the PACS)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.contracts import HRI_ABSENT_SAID, HriAbsent
from edge_runtime.errors import FattyLiverError
from edge_runtime.hospital.drawn import DrawnFrame
from edge_runtime.hospital.report import ReportedValues, read_report
from edge_runtime.sinks.audit import read_final_exams


def certified_line(error: float, subjects: int) -> str:
    """What a definite call rests on, in one line a clinician reads."""
    return f"definite calls: at most {100 * error:g} % wrong, certified on {subjects} subjects"


class ReportNotFound(FattyLiverError):
    """No ended exam or report matches what was asked (the message says what was searched)."""


@dataclass(frozen=True)
class Summary:
    """What one page says: the answer, with its interval, and where it came from."""

    title: str
    call: str
    lines: list[str]
    pdff: float | None
    interval: tuple[float, float] | None
    trend: tuple[Visit, ...] = ()  # the patient's PDFF over the visits, oldest first (follow-up), this exam last
    frame: np.ndarray | None = None  # the measured frame with its hepatorenal regions drawn (RGB), when found


@dataclass(frozen=True)
class Visit:
    """One point of the trend: a study date, its PDFF and interval."""

    date: str
    pdff: float
    interval: tuple[float, float] | None


def followup_lines(followup: dict, exam: dict) -> tuple[list[str], tuple[Visit, ...]]:
    """The comparison with the prior report in words, and the visits it rests on."""
    lines = [f"follow-up: {followup['reason']}"]
    prior = followup.get("prior")
    if prior:
        lines.append(f"prior report {prior['sop_instance_uid']} of {prior['date']} by {prior['model']}")
    rule = followup.get("rule")
    if rule:
        scale, between, pair_sd = rule["scale"], rule["between_visits"], rule["pair_sd"]
        lines.append(f"judged by the change rule: scale {scale:.2f}, between visits {between:.2f} pp, "
                     f"pair sd {pair_sd:.3f}")  # fmt: skip
    trend = [Visit(h["date"], h["pdff"], _pair(h.get("pdff_interval"))) for h in followup.get("history") or []
             if h.get("pdff") is not None]  # fmt: skip
    if followup.get("date") and exam.get("pdff") is not None:
        trend.append(Visit(followup["date"], exam["pdff"], _pair(exam.get("pdff_interval"))))
    return lines, tuple(trend)


def _pair(values: list | None) -> tuple[float, float] | None:
    return (float(values[0]), float(values[1])) if values else None


def hri_line(hri: dict) -> str:
    """The exam's hepatorenal index in words: the value, its interval and frames, or why there is none."""
    if hri.get("value") is None:
        why = HRI_ABSENT_SAID[HriAbsent(hri["why"])] if hri.get("why") else "no frame"
        return f"hepatorenal index: not measurable ({why})"
    low, high = hri["interval"]
    return f"hepatorenal index (liver/cortex) {hri['value']:.2f} (95 %: {low:.2f}-{high:.2f}, {hri['frames']} frames)"


def from_audit(log: Path, session: str) -> Summary:
    """The last final record of ``session`` in the audit log."""
    finals = [f for f in read_final_exams(log) if f.get("session") == session]
    if not finals:
        raise ReportNotFound(f"{log}: no ended exam of session {session!r}")
    record = finals[-1]
    exam, model = record["exam"], record["model"]
    call = exam.get("call") or "indeterminate"
    lines = [f"session {session}", f"model {model['name']} {model['version']} (sha {model['sha']})"]
    lines.append(f"scanner {record.get('scanner') or 'not recorded'} (the log keeps no patient field)")
    lines += [f"site adaptation: {model.get('site') or 'none'}", f"image pairs: {exam.get('n_pairs', 0)}"]
    if exam.get("p_fatty") is not None:
        lines.append(f"p_fatty {exam['p_fatty']:.3f}")
    if exam.get("definite_error") is not None:
        lines.append(certified_line(exam["definite_error"], exam["definite_subjects"]))
    if exam.get("reason"):
        lines.append(f"why: {exam['reason']}")
    if exam.get("hri"):
        lines.append(hri_line(exam["hri"]))
    if record.get("study"):
        lines.append(
            f"study {record['study']['study_instance_uid']}, {len(record['study']['sop_instance_uids'])} images"
        )
    lines.append(f"PACS report: {record.get('report') or 'no PACS configured'}")
    said, trend = followup_lines(record["followup"], exam) if record.get("followup") else ([], ())
    interval = tuple(exam["pdff_interval"]) if exam.get("pdff_interval") else None
    return Summary(f"Fatty liver exam, ended {record['why']}", call, lines + said, exam.get("pdff"), interval, trend)


def from_document(path: Path, images: Callable[[ReportedValues], DrawnFrame] | None = None) -> Summary:
    """A report document (DICOM SR) as this product writes it.

    Args:
        path: the SR file.
        images: where the frame its regions were measured on is found (None: the page draws no frame).
    """
    try:
        said = read_report(path)
    except (ValueError, KeyError, AttributeError, OSError) as exc:
        raise ReportNotFound(f"{path}: not a fatty-liver-edge report ({exc})") from None
    drawn = images(said) if images is not None else None
    summary = _document_summary(said)
    if drawn is None:
        return summary
    return replace(summary, lines=[*summary.lines, drawn.said], frame=drawn.image)


def _document_summary(said: ReportedValues) -> Summary:
    lines = [f"patient {said.patient}, study date {said.study_date or 'not stated'}",
             f"model {said.model}, scanner {said.scanner or 'not stated'}"]  # fmt: skip
    lines += [f"study {said.study_uid}", f"report {said.sop_instance_uid}", f"source images: {len(said.source_images)}"]
    if said.p_fatty is not None:
        lines.append(f"p_fatty {said.p_fatty:.3f}")
    if said.why:
        lines.append(f"why: {said.why}")
    if said.hri is not None:
        drawn = ", ".join(f"{r.name} (mean echo {r.mean_echo:.1f})" for r in said.hri_regions)
        lines.append(f"hepatorenal index (liver/cortex) {said.hri:.2f}" + (f"; drawn: {drawn}" if drawn else ""))
    if said.change_said:
        lines.append(f"follow-up: {said.change_said}")
        lines += [f"prior report {said.prior_report}"] if said.prior_report else []
    return Summary("Fatty liver report (DICOM SR)", said.call, lines, said.pdff, said.pdff_interval)


def text(summary: Summary) -> str:
    pdff = "n/a" if summary.pdff is None else f"{summary.pdff:.1f} %"
    if summary.interval:
        pdff += f" (90 % of patients like this one: {summary.interval[0]:.1f}-{summary.interval[1]:.1f} %)"
    head = [summary.title, f"call: {summary.call.upper()}", f"PDFF: {pdff}"]
    trend = [f"  {v.date}: {v.pdff:.1f} %" + (f" ({v.interval[0]:.1f}-{v.interval[1]:.1f})" if v.interval else "")
             for v in summary.trend]  # fmt: skip
    trend = ["PDFF over the visits:", *trend] if trend else []
    return "\n".join([*head, *summary.lines, *trend, "Research use, not a medical device."]) + "\n"


def page(summary: Summary, path: Path) -> Path:
    """One A4-proportioned page (1240 x 1754 px): the call in large type, the PDFF on a 0-40 % scale with its
    interval, then every line, and the research-use notice."""
    img = np.full((1754, 1240, 3), 255, np.uint8)
    colours = {"fatty": (40, 110, 230), "normal": (200, 140, 40), "indeterminate": (110, 110, 110)}
    cv2.putText(img, summary.title, (70, 120), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (20, 20, 20), 2, cv2.LINE_AA)
    cv2.putText(
        img,
        summary.call.upper(),
        (70, 290),
        cv2.FONT_HERSHEY_DUPLEX,
        3.6,
        colours.get(summary.call, (0, 0, 0)),
        6,
        cv2.LINE_AA,
    )
    _pdff_scale(img, summary)
    if len(summary.trend) > 1:
        _trend(img, summary.trend)
    step = min(52, 780 // max(1, len(summary.lines)))  # every line fits above the trend
    for k, line in enumerate(summary.lines):
        cv2.putText(img, line[:90], (70, 620 + step * k), cv2.FONT_HERSHEY_SIMPLEX, 0.85, (30, 30, 30), 2, cv2.LINE_AA)
    if summary.frame is not None:
        bottom = 1380 if len(summary.trend) > 1 else 1640
        _frame(img, summary.frame, top=620 + step * len(summary.lines), bottom=bottom)
    cv2.putText(
        img,
        "Research use, not a medical device.",
        (70, 1680),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.9,
        (0, 0, 200),
        2,
        cv2.LINE_AA,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise ReportNotFound(f"could not write {path} (is its suffix .png?)")
    return path


def _frame(img: np.ndarray, frame: np.ndarray, top: int, bottom: int, left: int = 70, width: int = 1100) -> None:
    """The measured frame with its regions, scaled to fit between the lines and the trend (BGR on the page)."""
    height = bottom - top
    if height < 120:
        return
    scale = min(width / frame.shape[1], height / frame.shape[0])
    size = (max(1, int(frame.shape[1] * scale)), max(1, int(frame.shape[0] * scale)))
    shown = cv2.cvtColor(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
    img[top : top + size[1], left : left + size[0]] = shown


def _pdff_scale(img: np.ndarray, summary: Summary, top: int = 400, left: int = 70, width: int = 1100) -> None:
    x = lambda pdff: int(left + width * min(max(pdff, 0.0), 40.0) / 40.0)  # noqa: E731
    cv2.rectangle(img, (left, top), (left + width, top + 40), (225, 225, 225), -1)
    cv2.line(img, (x(5.0), top - 10), (x(5.0), top + 50), (0, 0, 0), 2)  # the 5 % line
    cv2.putText(img, "5 %", (x(5.0) - 20, top + 85), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
    if summary.interval:
        low, high = summary.interval
        cv2.rectangle(img, (x(low), top + 5), (x(high), top + 35), (240, 200, 120), -1)
        said = f"90 % of patients like this one: {low:.1f}-{high:.1f} %"
        cv2.putText(img, said, (left + 300, top + 85), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (60, 60, 60), 2, cv2.LINE_AA)
    if summary.pdff is not None:
        cv2.circle(img, (x(summary.pdff), top + 20), 14, (40, 40, 40), -1)
        said = f"PDFF {summary.pdff:.1f} %"
        cv2.putText(img, said, (left, top - 25), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (20, 20, 20), 2, cv2.LINE_AA)


def _trend(img: np.ndarray, visits: tuple[Visit, ...], top: int = 1430, left: int = 100, width: int = 1040) -> None:
    """The PDFF at each visit with its interval, by date, under the lines (a follow-up's page)."""
    import datetime as dt

    days = [dt.date.fromisoformat(v.date).toordinal() for v in visits]
    d0, span = min(days), max(max(days) - min(days), 1)
    high = max(10.0, *(v.interval[1] if v.interval else v.pdff for v in visits)) * 1.1
    x = lambda day: int(left + width * (day - d0) / span)  # noqa: E731
    y = lambda pdff: int(top + 170 - 170 * pdff / high)  # noqa: E731
    ink, soft = (30, 30, 30), (200, 140, 40)
    cv2.line(img, (left, y(5.0)), (left + width, y(5.0)), (0, 0, 200), 1, cv2.LINE_AA)
    cv2.putText(img, "PDFF over the visits", (left, top - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.9, ink, 2, cv2.LINE_AA)
    for day, visit in zip(days, visits, strict=True):
        if visit.interval:
            cv2.line(img, (x(day), y(visit.interval[0])), (x(day), y(visit.interval[1])), soft, 4, cv2.LINE_AA)
        cv2.circle(img, (x(day), y(visit.pdff)), 10, ink, -1)
        said = f"{visit.date}: {visit.pdff:.1f} %"
        cv2.putText(img, said, (x(day) - 80, top + 205), cv2.FONT_HERSHEY_SIMPLEX, 0.7, ink, 2, cv2.LINE_AA)
