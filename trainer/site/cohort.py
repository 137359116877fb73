"""`trainer site-cohort`: a validation study pulled from the hospital's own PACS, from a list of MRI-PDFF results.

For each result the patient's studies are found by C-FIND, the ultrasound study nearest the MRI within the window is
retrieved (C-GET, or C-MOVE to this tool's own storage SCP), every frame goes through the bundle's bedside path and
the gate's most confident guard-clean frame of each view is taken (trainer.site.frames). What happened to each
patient is logged by a declared outcome (edge_runtime.contracts.CohortOutcome).

The output folder is the hospital's own. Only ``private/`` holds identifiers (the retrieved DICOM, the
pseudonym table, the key); the manifest, the log, the summary and the contact sheet name patients by keyed
pseudonym only. A patient is finished once its state is written, so a second run picks up where the first stopped.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from edge_runtime.contracts import VIEWS
from edge_runtime.contracts.validation import WINDOW_DAYS, CohortOutcome
from edge_runtime.hospital.pseudonyms import identity_key, pseudonym
from edge_runtime.hospital.reference import ReferenceList, ReferenceResult
from edge_runtime.hospital.retrieve import FoundStudy, Retrieval, RetrieveError, StudyArchive
from edge_runtime.model.bundle import load_bundle
from edge_runtime.model.interpreter import ALL_CORES
from edge_runtime.scanners.profiles import ScannerProfile, load_profiles
from trainer.site.contact import write_contact_sheet
from trainer.site.frames import FrameChoice, FrameScorer, choose_frames

LOG_COLUMNS = ("subject_id", "reference", "outcome", "detail", "candidates", "gap_days", "frames", "seconds")


@dataclass
class PatientRecord:
    """What became of one reference result: the log line, and the chosen frames when used."""

    subject_id: str  # keyed pseudonym
    reference: str  # where in the reference file
    outcome: str
    detail: str
    pdff: float
    candidates: int = 0
    gap_days: int | None = None
    frames: int = 0
    seconds: float = 0.0
    views: dict[str, dict[str, Any]] = field(default_factory=dict)  # view -> path, frame, region, scanner, confidence


@dataclass(frozen=True)
class StudyPick:
    """The study taken for one result, how many were in the window, and the log's words about the choice."""

    study: FoundStudy | None
    candidates: int
    gap_days: int | None
    detail: str


def pick_study(found: list[FoundStudy], result: ReferenceResult, window_days: int) -> StudyPick:
    """The ultrasound study nearest the MRI within the window (the result's own accession number first)."""
    dated = [s for s in found if s.date is not None and (not s.modalities or "US" in s.modalities)]
    gaps = {s.study_uid: (s.date - result.mri_date).days for s in dated}
    inside = sorted((s for s in dated if abs(gaps[s.study_uid]) <= window_days), key=lambda s: abs(gaps[s.study_uid]))
    if not inside:
        nearest = min((gaps[s.study_uid] for s in dated), key=abs, default=None)
        said = "no ultrasound study at all" if nearest is None else f"the nearest is {_days(nearest)}"
        return StudyPick(None, 0, nearest, f"no ultrasound study within {window_days} days of the MRI ({said})")
    own = [s for s in inside if result.accession and s.accession == result.accession]
    chosen = (own or inside)[0]
    gap = gaps[chosen.study_uid]
    detail = ""
    if len(inside) > 1:
        others = ", ".join(_days(gaps[s.study_uid]) for s in inside if s is not chosen)
        why = "the one with its accession number" if own else "the nearest"
        detail = f"{len(inside)} studies in the window: took {why}, {_days(gap)}; not {others}"
    return StudyPick(chosen, len(inside), gap, detail)


def _days(gap: int) -> str:
    return f"{abs(gap)} days {'after' if gap >= 0 else 'before'} the MRI"


class SiteCohort:
    """One cohort folder being filled from one PACS with one bundle."""

    def __init__(self, out: Path, archive: StudyArchive, scorer: FrameScorer, key: bytes, window_days: int):
        self.out, self.archive, self.scorer, self.key, self.window_days = out, archive, scorer, key, window_days
        self.private = out / "private"
        for folder in ("dicom", "state", "sheet"):
            (self.private / folder).mkdir(parents=True, exist_ok=True)

    def subject_of(self, result: ReferenceResult) -> str:
        kind, value = ("patient", result.patient_id) if result.patient_id else ("accession", result.accession)
        return "S" + (pseudonym(self.key, kind, value) or "")[:12]

    def done(self, subject: str) -> PatientRecord | None:
        path = self.private / "state" / f"{subject}.json"
        return PatientRecord(**json.loads(path.read_text())) if path.is_file() else None

    def run(self, result: ReferenceResult, how: Retrieval) -> PatientRecord:
        """One result: find, pick, retrieve, score, choose; the record is kept unless the PACS failed to send."""
        started, subject = time.perf_counter(), self.subject_of(result)
        record = PatientRecord(subject, result.where, CohortOutcome.USED, "", result.pdff)
        try:
            pick = pick_study(self.archive.find_studies(result.patient_id, result.accession), result, self.window_days)
            record.candidates, record.gap_days, record.detail = pick.candidates, pick.gap_days, pick.detail
            if pick.study is None:
                record.outcome = CohortOutcome.NO_STUDY_IN_WINDOW
            else:
                self._analyse(record, pick.study, how)
        except RetrieveError as exc:
            record.outcome, record.detail = CohortOutcome.NOT_RETRIEVED, str(exc)
        record.seconds = round(time.perf_counter() - started, 2)
        if record.outcome != CohortOutcome.NOT_RETRIEVED:  # the PACS may answer on the next run
            (self.private / "state" / f"{subject}.json").write_text(json.dumps(asdict(record)))
        return record

    def _analyse(self, record: PatientRecord, study: FoundStudy, how: Retrieval) -> None:
        retrieved = self.archive.retrieve(study.study_uid, self.private / "dicom" / record.subject_id, how)
        frames, problems = [], []
        for path in sorted(retrieved.files):
            scored, why = self.scorer.score_file(path)
            frames += scored
            problems += [why] if why else []
        choice = choose_frames(frames, problems)
        record.outcome, record.frames = choice.outcome, choice.scored
        record.detail = "; ".join(d for d in (record.detail, choice.detail) if d)
        record.views = self._kept(record.subject_id, choice)

    def _kept(self, subject: str, choice: FrameChoice) -> dict[str, dict[str, Any]]:
        import cv2

        kept = {}
        for view, f in choice.chosen.items():
            thumbnail = self.private / "sheet" / f"{subject}_{view}.png"
            cv2.imwrite(str(thumbnail), cv2.cvtColor(f.tensor, cv2.COLOR_RGB2BGR))
            path = f.path.relative_to(self.out).as_posix()
            kept[view] = {"path": path, "frame": f.frame, "region": f.region, "scanner": f.scanner,
                          "confidence": round(f.confidence, 4)}  # fmt: skip
        return kept


def site_cohort(
    reference: ReferenceList, pacs: StudyArchive, bundle_dir: str | Path, out_dir: str | Path, *,
    profiles: str | None = None, window_days: int = WINDOW_DAYS, how: Retrieval = "get", key_file: str | None = None,
    adapt_count: int = 12,
) -> dict[str, Any]:  # fmt: skip
    """Build the cohort folder for every usable result of ``reference``; the summary (also cohort.json).

    Args:
        reference: the MRI-PDFF results (edge_runtime.hospital.reference.read_reference).
        pacs: the archive to ask (a PACS over DIMSE, or a DICOMweb service).
        bundle_dir: the bundle whose gate and guard choose the frames.
        out_dir: the hospital's own folder for the cohort.
        profiles: the site's scanner profiles file.
        window_days: the longest gap between ultrasound and MRI.
        how: 'get' (C-GET) or 'move' (C-MOVE to this tool's storage SCP); DICOMweb retrieves by WADO-RS.
        key_file: the pseudonym key (default: private/identity.key in the folder).
        adapt_count: subjects set aside in adapt.csv for site-adapt; check.csv holds the others.
    """
    out = Path(out_dir)
    bundle = load_bundle(bundle_dir, num_threads=ALL_CORES)
    known = load_profiles(profiles, extra={k: v.model_dump() for k, v in bundle.meta.scanners.items()})
    key = identity_key(key_file or out / "private" / "identity.key")
    cohort = SiteCohort(out, pacs, FrameScorer(bundle, known), key, window_days)
    records, fetched = [], 0
    for result in tqdm(reference.results, desc="patients", unit="patient"):
        record = cohort.done(cohort.subject_of(result))
        if record is None:
            record, fetched = cohort.run(result, how), fetched + 1
        records.append(record)
    _write_pseudonyms(out, cohort, reference)
    write_manifest(out, records, known, adapt_count)
    _write_log(out, records)
    write_contact_sheet(out / "contact_sheet.png", records, out / "private" / "sheet")
    summary = _summary(records, reference, fetched, window_days, bundle_dir)
    (out / "cohort.json").write_text(json.dumps(summary, indent=1))
    return summary


def adapt_subjects(used: list[PatientRecord], count: int) -> set[str]:
    """``count`` subjects for site-adapt, half fatty and half normal where the cohort allows, taken in pseudonym
    order (a keyed hash: no patient property decides who is chosen, and a resumed run chooses the same)."""
    by_class = [sorted(r.subject_id for r in used if (r.pdff >= 5.0) == fatty) for fatty in (True, False)]
    half = min(count // 2, *map(len, by_class)) if all(by_class) else 0
    chosen = set(by_class[0][:half]) | set(by_class[1][:half])
    rest = sorted(set(r.subject_id for r in used) - chosen)
    return chosen | set(rest[: max(0, count - len(chosen))])


def _write_rows(path: Path, records: list[PatientRecord], known: Mapping[str, ScannerProfile]) -> None:
    columns = ("subject_id", "view", "scanner", "path", "pdff", "frame", "region")
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for r in records:
            for view in VIEWS:
                v = r.views[view]
                region = v["region"] if v["region"] is not None and known[v["scanner"]].dicom_region else ""
                writer.writerow({"subject_id": r.subject_id, "view": view, "scanner": v["scanner"], "path": v["path"],
                                 "pdff": f"{r.pdff:.2f}", "frame": v["frame"], "region": region})  # fmt: skip


def write_manifest(
    out: Path, records: list[PatientRecord], known: Mapping[str, ScannerProfile], adapt_count: int = 12
) -> None:
    """The used patients as the manifest site-check and site-adapt read (paths into private/dicom), split into
    adapt.csv (``adapt_count`` subjects for site-adapt) and check.csv (the rest, never seen by the adaptation), and
    profiles.json with every scanner it names. A dicom-region profile reads the chosen tissue region; a screen
    profile crops its own box from the whole screen, as the bedside's profile would.

    Args:
        out: the cohort folder.
        records: every patient's record, used or not.
        known: the scanner profiles, by name.
        adapt_count: subjects set aside in adapt.csv.
    """
    used = [r for r in records if r.outcome == CohortOutcome.USED]
    adapt = adapt_subjects(used, adapt_count)
    for name, chosen in (("manifest", used), ("adapt", [r for r in used if r.subject_id in adapt]),
                         ("check", [r for r in used if r.subject_id not in adapt])):  # fmt: skip
        _write_rows(out / f"{name}.csv", chosen, known)
    named = sorted({r.views[view]["scanner"] for r in used for view in VIEWS})
    profiles = {name: known[name].to_mapping() for name in named}
    (out / "profiles.json").write_text(json.dumps(profiles, indent=1) + "\n")


def _write_log(out: Path, records: list[PatientRecord]) -> None:
    with (out / "cohort_log.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(r) for r in records)


def _write_pseudonyms(out: Path, cohort: SiteCohort, reference: ReferenceList) -> None:
    """The re-identification table, kept in private/: which patient each pseudonym is."""
    with (out / "private" / "subjects.csv").open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("subject_id", "patient_id", "accession", "mri_date"))
        for r in reference.results:
            writer.writerow((cohort.subject_of(r), r.patient_id, r.accession, r.mri_date.isoformat()))


def _summary(
    records: list[PatientRecord], reference: ReferenceList, fetched: int, window_days: int, bundle_dir: str | Path
) -> dict[str, Any]:
    seconds = [r.seconds for r in records if r.seconds]
    return {
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "bundle": str(bundle_dir),
        "window_days": window_days,
        "results": len(reference.results),
        "refused_rows": reference.refused,
        "outcomes": dict(Counter(str(r.outcome) for r in records)),
        "used": sum(r.outcome == CohortOutcome.USED for r in records),
        "fetched_this_run": fetched,
        "seconds_per_patient": {
            "median": float(np.median(seconds)) if seconds else None,
            "mean": float(np.mean(seconds)) if seconds else None,
        },
    }
