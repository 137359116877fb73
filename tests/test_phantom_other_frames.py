"""Frames that are neither view: the phantom renders each kind a real exam shows, and manifests carry them as
view=other rows that are checked like any image but never paired."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from phantom.anatomy import LIVER
from phantom.cohort import CohortForm, generate_cohort
from phantom.layouts import assign_layouts
from phantom.other_views import OTHER_KINDS, SPLEEN
from phantom.render import profile_for, render_other, render_view
from phantom.subject import draw_cohort
from trainer.dataset import read_cohort
from trainer.manifest import ManifestError, load_manifest


@pytest.fixture(scope="module")
def subject():
    return assign_layouts(draw_cohort(2, 6), ["phantom-philips-1280x1024", "phantom-ge"])[0]


def _box(screen: np.ndarray, subject) -> np.ndarray:
    x, y, w, h = profile_for(subject).crop_box
    return screen[y : y + h, x : x + w].astype(int)


def test_each_other_kind_shows_what_it_names(subject) -> None:
    frames = {kind: render_other(subject, kind, seed=6) for kind in OTHER_KINDS}
    liver = render_view(subject, "liver", seed=6)
    coloured = {k: int(((b.max(axis=2) - b.min(axis=2)) > 80).sum()) for k, b in
                ((k, _box(f.screen, subject)) for k, f in frames.items())}  # fmt: skip
    assert coloured["doppler"] > 300 and coloured["menu"] == 0 and coloured["air"] == 0
    assert (frames["air"].mask == 0).all() and (frames["spleen"].mask == SPLEEN).any()
    assert not (frames["spleen"].mask == LIVER).any() and (liver.mask == LIVER).any()
    menu = _box(frames["menu"].screen, subject)
    assert (np.abs(menu - np.array([40, 48, 64])).sum(axis=2) == 0).mean() > 0.3  # the panel covers the box
    partial = _box(frames["partial_contact"].screen, subject).mean(axis=2)
    halves = partial[:, : partial.shape[1] // 2].mean(), partial[:, partial.shape[1] // 2 :].mean()
    assert min(halves) < 0.5 * max(halves)  # one side of the sector lost contact
    with pytest.raises(ValueError, match="unknown other-frame kind"):
        render_other(subject, "heart", seed=6)


def test_other_rows_are_validated_but_never_paired(tmp_path: Path) -> None:
    generate_cohort(tmp_path, 4, seed=2, with_masks=False, workers=2, form=CohortForm(other_frames=2))
    rows = list(csv.DictReader((tmp_path / "manifest.csv").open()))
    assert sum(r["view"] == "other" for r in rows) == 8
    kinds = json.loads((tmp_path / "truth.json").read_text())["other_frames"]
    assert set(kinds.values()) == set(OTHER_KINDS)  # the kinds rotate over the cohort
    manifest = load_manifest(tmp_path / "manifest.csv")
    assert manifest.summary()["views"] == {"liver": 4, "kidney_liver": 4, "other": 8}
    assert read_cohort(tmp_path / "manifest.csv", progress=False, harmonisation="none").images.keys() == {
        (s, v) for s in manifest.subject_ids for v in ("liver", "kidney_liver")
    }
    # Other rows for only some subjects are fine; a broken other row is reported by its row like any image.
    kept = [r for r in rows if not (r["view"] == "other" and r["subject_id"] != "PH0001")]
    kept[2]["path"] = "images/missing.png"
    with (tmp_path / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
    with pytest.raises(ManifestError, match=r"row 4: .*missing\.png: file not found"):
        load_manifest(tmp_path / "manifest.csv")
