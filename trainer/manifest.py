"""manifest.csv: the one way images enter training and evaluation.

Columns: subject_id, view (liver|kidney_liver), scanner (a profile name), path (relative to the manifest),
pdff (% or empty when unlabelled); optional reader_label (a radiologist's call: fatty/normal or 1/0) and
mask_path. Loading checks everything first and reports every problem with its row number at once, so a
user fixes a 400-row spreadsheet in one pass instead of one traceback at a time.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.profiles import ScannerProfile, default_profiles
from trainer.images import ImageReadError, read_image

VIEWS = ("liver", "kidney_liver")
REQUIRED_COLUMNS = ("subject_id", "view", "scanner", "path", "pdff")
FATTY_THRESHOLD_PDFF = 5.0
_READER_LABELS = {"1": 1, "fatty": 1, "yes": 1, "0": 0, "normal": 0, "no": 0}


class ManifestError(ValueError):
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


@dataclass
class SubjectRecord:
    subject_id: str
    scanner: str
    vendor: str
    pdff: float | None
    reader_label: int | None
    views: dict[str, ImageEntry] = field(default_factory=dict)

    @property
    def fatty(self) -> bool | None:
        return None if self.pdff is None else self.pdff >= FATTY_THRESHOLD_PDFF


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
            "images": sum(len(s.views) for s in subs),
            "views": dict(Counter(v for s in subs for v in s.views)),
            "vendors": dict(Counter(s.vendor for s in subs)),
            "scanners": dict(Counter(s.scanner for s in subs)),
            "labelled": len(labelled),
            "unlabelled": len(subs) - len(labelled),
            "with_reader_label": sum(s.reader_label is not None for s in subs),
            "fatty_share": (sum(p >= FATTY_THRESHOLD_PDFF for p in pdffs) / len(pdffs)) if pdffs else None,
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


def _check_image(path: Path, profile: ScannerProfile | None, where: str, problems: list[str]) -> None:
    try:
        image = read_image(path)
    except ImageReadError as exc:
        problems.append(f"{where}: {exc}")
        return
    if profile is not None and (image.shape[1], image.shape[0]) != profile.screen_size:
        problems.append(
            f"{where}: image {path.name} is {image.shape[1]}x{image.shape[0]} but scanner profile "
            f"{profile.name!r} expects {profile.screen_width}x{profile.screen_height}"
        )


def load_manifest(
    path: str | Path,
    profiles: Mapping[str, ScannerProfile] | None = None,
    check_images: bool = True,
) -> Manifest:
    """Parse and validate; raises ManifestError listing all problems, or returns the subjects."""
    path = Path(path)
    profiles = profiles if profiles is not None else default_profiles()
    if not path.is_file():
        raise ManifestError(path, ["manifest file not found"])
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
            columns = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(path, [f"cannot read as CSV: {exc}"]) from exc
    if not rows:
        raise ManifestError(path, ["no rows (expected a header and one row per image)"])
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ManifestError(path, [f"missing column(s): {', '.join(missing)}; have: {', '.join(columns)}"])

    problems: list[str] = []
    subjects: dict[str, SubjectRecord] = {}
    seen: dict[tuple[str, str], int] = {}
    base = path.parent
    for i, raw in enumerate(rows, start=2):
        where = f"row {i}"
        row = {k: (v or "").strip() for k, v in raw.items() if k is not None}
        sid, view, scanner = row["subject_id"], row["view"], row["scanner"]
        if not sid:
            problems.append(f"{where}: empty subject_id")
            continue
        if view not in VIEWS:
            problems.append(f"{where}: view {view!r} is not one of {', '.join(VIEWS)}")
            continue
        if (sid, view) in seen:
            problems.append(f"{where}: duplicate of row {seen[(sid, view)]} (subject {sid}, view {view})")
            continue
        seen[(sid, view)] = i
        profile = profiles.get(scanner)
        if profile is None:
            problems.append(f"{where}: unknown scanner profile {scanner!r} (known: {', '.join(sorted(profiles))})")
        pdff = _parse_pdff(row["pdff"], where, problems)
        reader_text = row.get("reader_label", "").lower()
        reader = _READER_LABELS.get(reader_text) if reader_text else None
        if reader_text and reader is None:
            problems.append(f"{where}: reader_label {row['reader_label']!r} is not fatty/normal/1/0")
        image_path = base / row["path"] if row["path"] else None
        if image_path is None:
            problems.append(f"{where}: empty path")
        elif check_images:
            _check_image(image_path, profile, where, problems)
        mask = base / row["mask_path"] if row.get("mask_path") else None

        record = subjects.get(sid)
        if record is None:
            record = SubjectRecord(sid, scanner, profile.vendor if profile else "?", pdff, reader)
            subjects[sid] = record
        else:
            if record.scanner != scanner:
                problems.append(f"{where}: subject {sid} was scanned on {record.scanner!r} in another row")
            if record.pdff != pdff:
                problems.append(f"{where}: subject {sid} has pdff {pdff} here but {record.pdff} in another row")
        if image_path is not None:
            record.views[view] = ImageEntry(i, image_path, scanner, mask)

    for sid, record in subjects.items():
        for view in VIEWS:
            if view not in record.views:
                problems.append(f"subject {sid}: no usable {view} row (both views are needed)")
    if problems:
        raise ManifestError(path, problems)
    return Manifest(path=path, subjects=subjects)
