"""manifest.csv: the one way images enter training and evaluation.

Columns: subject_id, view (liver|kidney_liver, or other for a frame showing neither: never paired), scanner
(a profile name), path (relative to the manifest), pdff (% or empty when unlabelled); optional reader_label
(a radiologist's call: fatty/normal or 1/0), frame (which frame of a cine DICOM loop; default 0), region (which
tissue region of a dual or quad display DICOM file, 0 upwards, top to bottom then left to right) and mask_path.
Loading checks everything first and reports every problem with its row number at once, so a user fixes a 400-row
spreadsheet in one pass instead of one traceback at a time.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.contracts import FATTY_PDFF, OTHER_VIEW, VIEWS
from edge_runtime.errors import FattyLiverError
from edge_runtime.scanners.profiles import ScannerProfile, default_profiles
from trainer.images import ImageReadError, image_digest, read_for_profile

REQUIRED_COLUMNS = ("subject_id", "view", "scanner", "path", "pdff")
_READER_LABELS = {"1": 1, "fatty": 1, "yes": 1, "0": 0, "normal": 0, "no": 0}


class ManifestError(FattyLiverError):
    """Every problem found in a manifest, each with its row number."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s)\n{listing}")


@dataclass(frozen=True)
class ImageEntry:
    row: int  # 1-based line number in the CSV (the header is line 1)
    path: Path
    scanner: str
    mask_path: Path | None = None
    frame: int = 0  # which frame of a cine DICOM loop (optional manifest column)
    region: int | None = None  # which tissue region of a multi-region DICOM file (optional manifest column)


@dataclass
class SubjectRecord:
    subject_id: str
    scanner: str
    vendor: str
    pdff: float | None
    reader_label: int | None
    views: dict[str, ImageEntry] = field(default_factory=dict)
    others: list[ImageEntry] = field(default_factory=list)  # view=other rows: never paired, for a view gate

    @property
    def fatty(self) -> bool | None:
        return None if self.pdff is None else self.pdff >= FATTY_PDFF


@dataclass
class Manifest:
    path: Path
    subjects: dict[str, SubjectRecord]

    @property
    def subject_ids(self) -> list[str]:
        return list(self.subjects)

    def summary(self) -> dict[str, Any]:
        subs = list(self.subjects.values())
        labelled = [s for s in subs if s.pdff is not None]
        pdffs = [s.pdff for s in labelled if s.pdff is not None]
        return {
            "subjects": len(subs),
            "images": sum(len(s.views) + len(s.others) for s in subs),
            "views": dict(Counter(v for s in subs for v in s.views)) | {OTHER_VIEW: sum(len(s.others) for s in subs)},
            "vendors": dict(Counter(s.vendor for s in subs)),
            "scanners": dict(Counter(s.scanner for s in subs)),
            "labelled": len(labelled),
            "unlabelled": len(subs) - len(labelled),
            "with_reader_label": sum(s.reader_label is not None for s in subs),
            "fatty_share": (sum(p >= FATTY_PDFF for p in pdffs) / len(pdffs)) if pdffs else None,
            "fatty_rule": f"PDFF >= {FATTY_PDFF:g} %",
            "pdff_range": [min(pdffs), max(pdffs)] if pdffs else None,
        }


def _parse_pdff(text: str, where: str, problems: list[str]) -> float | None:
    if text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        problems.append(f"{where}: pdff {text!r} is not a number")
        return None
    if not 0.0 <= value <= 100.0:
        problems.append(f"{where}: pdff {value} is outside [0, 100]")
        return None
    return value


def _parse_index(text: str, column: str, where: str, problems: list[str]) -> int | None:
    """An optional 0-based index column (frame, region); None when empty."""
    if text == "":
        return None
    if not text.isdigit():
        problems.append(f"{where}: {column} {text!r} is not a {column} number (0, 1, 2, ...)")
        return None
    return int(text)


def _check_image(path: Path, profile: ScannerProfile | None, at: tuple[int, int | None], where: str,
                 problems: list[str]) -> str | None:  # fmt: skip
    """Decode one image, check its size against its profile; returns its content digest when readable.

    Args:
        path: the image file.
        profile: its scanner profile.
        at: which frame of a cine loop, and which tissue region of a multi-region file.
        where: the row, for messages.
        problems: where problems are collected.
    """
    try:
        image = read_for_profile(path, profile, *at)
    except ImageReadError as exc:
        problems.append(f"{where}: {exc}")
        return None
    if profile is not None and not profile.fits(image.shape[1], image.shape[0]):
        problems.append(
            f"{where}: image {path.name} is {image.shape[1]}x{image.shape[0]} but scanner profile "
            f"{profile.name!r} expects {profile.expected_size()}"
        )
    return image_digest(image)


def duplicate_image_problems(digests: Mapping[tuple[str, str], str], rows: Mapping[tuple[str, str], int]) -> list[str]:
    """Rows whose image is the same picture as an earlier row's, naming both rows.

    One picture under two subjects would land on both sides of a cross-validation fold (and score itself);
    under two views of one subject it would pair a view with itself.

    Args:
        digests: (subject_id, view) -> image content digest.
        rows: (subject_id, view) -> manifest row number.
    """
    first: dict[str, tuple[str, str]] = {}
    problems = []
    for key in sorted(digests, key=lambda k: rows[k]):
        digest = digests[key]
        if digest not in first:
            first[digest] = key
            continue
        (sid, view), (first_sid, first_view) = key, first[digest]
        whose = "the same subject" if sid == first_sid else f"subject {first_sid}"
        problems.append(
            f"row {rows[key]} (subject {sid}, {view}): the same image as row {rows[first[digest]]} "
            f"({whose}, {first_view})"
        )
    return problems


def _read_rows(path: Path) -> list[dict[str, str]]:
    """The CSV's rows with stripped values; a ManifestError when it is missing, unreadable or lacks columns."""
    if not path.is_file():
        raise ManifestError(path, ["manifest file not found"])
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(path, [f"cannot read as CSV: {exc}"]) from exc
    if not rows:
        raise ManifestError(path, ["no rows (expected a header and one row per image)"])
    columns = list(rows[0].keys())
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ManifestError(path, [f"missing column(s): {', '.join(missing)}; have: {', '.join(map(str, columns))}"])
    return [{k: (v or "").strip() for k, v in raw.items() if k is not None} for raw in rows]


class _ManifestReader:
    """Reads rows one by one into subjects, collecting every problem with its row number."""

    def __init__(self, path: Path, profiles: Mapping[str, ScannerProfile], check_images: bool):
        self.path, self.profiles, self.check_images = path, profiles, check_images
        self.subjects: dict[str, SubjectRecord] = {}
        self.rows: dict[tuple[str, str], int] = {}
        self.digests: dict[tuple[str, str], str] = {}
        self.problems: list[str] = []

    def add(self, i: int, row: dict[str, str]) -> None:
        where = f"row {i}"
        sid, view, scanner = row["subject_id"], row["view"], row["scanner"]
        if not sid:
            self.problems.append(f"{where}: empty subject_id")
            return
        if view not in (*VIEWS, OTHER_VIEW):
            self.problems.append(f"{where}: view {view!r} is not one of {', '.join((*VIEWS, OTHER_VIEW))}")
            return
        key = (sid, view if view != OTHER_VIEW else f"{OTHER_VIEW}@{i}")  # any number of other rows
        if key in self.rows:
            self.problems.append(f"{where}: duplicate of row {self.rows[key]} (subject {sid}, {view})")
            return
        self.rows[key] = i
        profile = self.profiles.get(scanner)
        if profile is None:
            known = ", ".join(sorted(self.profiles))
            self.problems.append(f"{where}: unknown scanner profile {scanner!r} (known: {known})")
        record = self._record(where, row, profile)
        if not row["path"]:
            self.problems.append(f"{where}: empty path")
            return
        image_path = self.path.parent / row["path"]
        frame = _parse_index(row.get("frame", ""), "frame", where, self.problems) or 0
        region = _parse_index(row.get("region", ""), "region", where, self.problems)
        if self.check_images:
            digest = _check_image(image_path, profile, (frame, region), where, self.problems)
            if digest is not None:
                self.digests[key] = digest
        mask = self.path.parent / row["mask_path"] if row.get("mask_path") else None
        entry = ImageEntry(i, image_path, scanner, mask, frame, region)
        if view == OTHER_VIEW:
            record.others.append(entry)
        else:
            record.views[view] = entry

    def _record(self, where: str, row: dict[str, str], profile: ScannerProfile | None) -> SubjectRecord:
        """The row's subject, created on its first row; later rows must agree on scanner and PDFF."""
        sid, scanner = row["subject_id"], row["scanner"]
        pdff = _parse_pdff(row["pdff"], where, self.problems)
        reader_text = row.get("reader_label", "").lower()
        reader = _READER_LABELS.get(reader_text) if reader_text else None
        if reader_text and reader is None:
            self.problems.append(f"{where}: reader_label {row['reader_label']!r} is not fatty/normal/1/0")
        record = self.subjects.get(sid)
        if record is None:
            record = SubjectRecord(sid, scanner, profile.vendor if profile else "?", pdff, reader)
            self.subjects[sid] = record
            return record
        if record.scanner != scanner:
            self.problems.append(f"{where}: subject {sid} was scanned on {record.scanner!r} in another row")
        if record.pdff != pdff:
            self.problems.append(f"{where}: subject {sid} has pdff {pdff} here but {record.pdff} in another row")
        return record

    def finish(self) -> Manifest:
        for sid, record in self.subjects.items():
            self.problems += [
                f"subject {sid}: no usable {v} row (both views are needed)" for v in VIEWS if v not in record.views
            ]
        self.problems += duplicate_image_problems(self.digests, self.rows)
        if any("unknown scanner profile" in p for p in self.problems):
            beside = self.path.parent / "profiles.json"
            hint = f" ({beside} sits beside this manifest)" if beside.is_file() else ""
            self.problems.append(f"scanners beyond the shipped profiles need --profiles FILE{hint}")
        if self.problems:
            raise ManifestError(self.path, self.problems)
        return Manifest(path=self.path, subjects=self.subjects)


def load_manifest(
    path: str | Path,
    profiles: Mapping[str, ScannerProfile] | None = None,
    check_images: bool = True,
) -> Manifest:
    """Parse and validate; raises ManifestError listing all problems, or returns the subjects.

    With check_images every image is decoded once: unreadable files, screens of the wrong size for their
    profile and the same picture under two rows are reported too (``trainer validate``). Without, rows are
    checked without reading images, and the loader that decodes them reports image problems (read_cohort).
    """
    path = Path(path)
    reader = _ManifestReader(path, profiles if profiles is not None else default_profiles(), check_images)
    for i, row in enumerate(_read_rows(path), start=2):
        reader.add(i, row)
    return reader.finish()
