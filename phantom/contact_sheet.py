"""A contact sheet a person can look at: normal vs fatty, both views, every vendor, with PDFF."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from edge_runtime.contracts import VIEWS
from phantom.subject import Subject
from phantom.vendors import VENDORS

TILE = 300


def pick_examples(subjects: Sequence[Subject]) -> list[Subject]:
    """Per vendor, the most typical normal and the most typical fatty subject (closest to the group median)."""
    picked = []
    vendors = [v for v in VENDORS if any(s.vendor == v for s in subjects)]
    for fatty in (False, True):
        for vendor in vendors:
            group = [s for s in subjects if s.fatty == fatty and s.vendor == vendor]
            if group:
                median = float(np.median([s.pdff for s in group]))
                picked.append(min(group, key=lambda s: abs(s.pdff - median)))
    return picked


def build_contact_sheet(subjects: Sequence[Subject], load_bmode: Callable[[Subject, str], np.ndarray]) -> np.ndarray:
    """Rows: the picked subjects; columns: liver view, kidney-liver view (B-mode crop, as the model sees it)."""
    rows = []
    for subject in pick_examples(subjects):
        tiles = []
        for view in VIEWS:
            bmode = load_bmode(subject, view)
            tile = cv2.resize(bmode, (TILE, TILE), interpolation=cv2.INTER_AREA)
            tiles.append(tile)
        label = np.full((TILE, 260, 3), 24, np.uint8)
        status = "FATTY" if subject.fatty else "NORMAL"
        color = (255, 140, 60) if subject.fatty else (120, 220, 120)
        for i, line in enumerate([subject.vendor, status, f"PDFF {subject.pdff:.1f} %", subject.subject_id]):
            cv2.putText(label, line, (14, 70 + 50 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.8, color, 2, cv2.LINE_AA)
        rows.append(np.hstack([label, *tiles]))
    header = np.full((50, rows[0].shape[1], 3), 24, np.uint8)
    for i, view in enumerate(VIEWS):
        cv2.putText(header, view, (260 + i * TILE + 20, 34), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (230, 230, 230), 2)
    return np.vstack([header, *rows])
