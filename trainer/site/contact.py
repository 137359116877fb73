"""The site cohort's contact sheet: each used patient's chosen liver and kidney-liver frames side by side, as the
model sees them, labelled with the pseudonym and the gate's confidence, so a sonographer confirms a hundred patients
in minutes and names the ones to drop."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_runtime.contracts import VIEWS

THUMB = 150  # pixels a side per frame
LABEL = 34  # pixels of text under each patient
PER_ROW = 4  # patients per row
GAP = 8


def _cell(record: Any, sheet_dir: Path) -> np.ndarray:
    """One patient: both frames, then the pseudonym and each view's confidence."""
    cell = np.full((THUMB + LABEL, 2 * THUMB + GAP, 3), 255, np.uint8)
    for k, view in enumerate(VIEWS):
        image = cv2.imread(str(sheet_dir / f"{record.subject_id}_{view}.png"))
        if image is not None:
            x = k * (THUMB + GAP)
            cell[:THUMB, x : x + THUMB] = cv2.resize(image, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    said = " ".join(f"{v[:6]} {record.views[v]['confidence']:.2f}" for v in VIEWS)
    cv2.putText(cell, record.subject_id, (2, THUMB + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(cell, said, (2, THUMB + 29), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
    return cell


def write_contact_sheet(path: Path, records: Sequence[Any], sheet_dir: Path) -> Path | None:
    """The sheet of every used patient (records with both views chosen); None when there is none."""
    used = [r for r in records if set(VIEWS) <= set(r.views)]
    if not used:
        return None
    cells = [_cell(r, sheet_dir) for r in used]
    height, width = cells[0].shape[:2]
    rows = -(-len(cells) // PER_ROW)
    sheet = np.full((rows * (height + GAP) + GAP, PER_ROW * (width + GAP) + GAP, 3), 255, np.uint8)
    for k, cell in enumerate(cells):
        y, x = GAP + (k // PER_ROW) * (height + GAP), GAP + (k % PER_ROW) * (width + GAP)
        sheet[y : y + height, x : x + width] = cell
    cv2.imwrite(str(path), sheet)
    return path
