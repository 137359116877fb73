"""Cohort files: deterministic, shaped like a real export, and a contact sheet a person can read."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import cv2
import numpy as np
from click.testing import CliRunner

from edge_runtime.scanners.profiles import default_profiles
from phantom.cli import main as phantom_cli
from phantom.cohort import generate_cohort


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_cohort(tmp_path: Path) -> None:
    generate_cohort(tmp_path / "a", 3, seed=42, workers=1)
    generate_cohort(tmp_path / "b", 3, seed=42, workers=2)
    generate_cohort(tmp_path / "c", 3, seed=43, workers=1)
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert len(a) == 3 * 2 * 2 + 4  # images + masks + manifest, profiles, truth, contact sheet
    assert a == b
    assert a["images/PH0001_liver.png"] != c["images/PH0001_liver.png"]


def test_screens_fit_their_scanner_profile_and_ui_lies_outside_the_crop(tiny_cohort: Path) -> None:
    profiles = default_profiles()
    rows = list(csv.DictReader((tiny_cohort / "manifest.csv").read_text().splitlines()))
    assert {r["scanner"] for r in rows} == {"phantom-philips", "phantom-ge"}
    for row in rows[:4]:
        profile = profiles[row["scanner"]]
        screen = cv2.imread(str(tiny_cohort / row["path"]))
        assert (screen.shape[1], screen.shape[0]) == profile.screen_size
        x, y, w, h = profile.crop_box
        outside = screen.copy()
        outside[y : y + h, x : x + w] = 0
        # Text, scale and logo are drawn (bright pixels) outside the B-mode box.
        assert (outside.max(axis=2) > 150).sum() > 500
        bmode = screen[y : y + h, x : x + w]
        sector = bmode.max(axis=2) > 0
        assert sector.mean() > 0.4  # the sector fills most of the box...
        assert not sector[0, 0] and not sector[0, -1]  # ...and the box corners are outside the sector


def test_cli_writes_manifest_and_contact_sheet(tmp_path: Path) -> None:
    result = CliRunner().invoke(phantom_cli, ["cohort", "--subjects", "4", "--seed", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "4 subjects" in result.output
    lines = (tmp_path / "manifest.csv").read_text().splitlines()
    assert lines[0].split(",")[:5] == ["subject_id", "view", "scanner", "path", "pdff"]
    assert sum(line.split(",")[1] == "other" for line in lines[1:]) == 4 * 4  # what a default view gate learns from
    sheet = cv2.imread(str(tmp_path / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 600 and sheet.shape[1] > 600
    assert np.std(sheet) > 20


def test_cli_rejects_bad_prevalence(tmp_path: Path) -> None:
    result = CliRunner().invoke(phantom_cli, ["cohort", "--out", str(tmp_path), "--prevalence", "lots"])
    assert result.exit_code == 2
    assert "prevalence" in result.output
