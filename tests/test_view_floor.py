"""The view gate's confidence floor, chosen on subject-level CV: the lowest that puts no wrong image into pairs,
neither an admitted other frame nor a view frame filed under the other view."""

from __future__ import annotations

import numpy as np

from edge_runtime.contracts import VIEW_CLASSES
from trainer.export.gate import choose_floor

LIVER, KIDNEY, OTHER = (VIEW_CLASSES.index(c) for c in ("liver", "kidney_liver", "other"))


def _probs(rows: list[tuple[int, float]]) -> np.ndarray:
    """One row per frame: (predicted class, its probability), the rest shared by the other two classes."""
    probs = np.zeros((len(rows), len(VIEW_CLASSES)))
    for i, (k, p) in enumerate(rows):
        probs[i] = (1 - p) / 2
        probs[i, k] = p
    return probs


def test_the_floor_rises_until_swapped_views_stay_out() -> None:
    """Other frames are all confidently other, so they allow the lowest floor; but 3 of 100 kidney-liver
    frames (1.5 %) are called liver at 0.65: the floor must rise above that, and no higher."""
    rows = [(LIVER, 0.95)] * 100 + [(KIDNEY, 0.95)] * 97 + [(LIVER, 0.65)] * 3 + [(OTHER, 0.9)] * 100
    labels = np.array([LIVER] * 100 + [KIDNEY] * 100 + [OTHER] * 100)
    assert choose_floor(_probs(rows), labels) == 0.66


def test_the_floor_still_keeps_other_frames_out() -> None:
    rows = [(LIVER, 0.95)] * 100 + [(KIDNEY, 0.95)] * 100 + [(LIVER, 0.8)] * 3 + [(OTHER, 0.9)] * 97
    labels = np.array([LIVER] * 100 + [KIDNEY] * 100 + [OTHER] * 100)
    assert choose_floor(_probs(rows), labels) == 0.81
    assert choose_floor(_probs(rows[:200] + [(OTHER, 0.9)] * 100), labels) == 0.5
