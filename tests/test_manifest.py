"""Manifests: every problem reported at once with its row; `trainer validate` needs no TensorFlow."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from trainer.cli import main as trainer_cli
from trainer.manifest import ManifestError, load_manifest


def test_phantom_manifest_loads_with_both_views(tiny_cohort: Path) -> None:
    manifest = load_manifest(tiny_cohort / "manifest.csv")
    assert len(manifest.subjects) == 10
    for record in manifest.subjects.values():
        assert set(record.views) == {"liver", "kidney_liver"}
        assert record.vendor in {"PHILIPS", "GE"}
    summary = manifest.summary()
    assert summary["labelled"] == 10 and summary["images"] == 20 + 20  # two views and two view=other rows each
    assert summary["views"] == {"liver": 10, "kidney_liver": 10, "other": 20}


def _broken_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    lines = (dst / "manifest.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    rows[0] = rows[0].replace("images/", "images/missing_")  # row 2: missing file
    rows[1] = rows[1].replace("phantom-ge", "acme").replace("phantom-philips", "acme")  # row 3: scanner
    rows[2] = ",".join([*rows[2].split(",")[:4], "140", *rows[2].split(",")[5:]])  # row 4: pdff
    rows.append(rows[4])  # duplicate of row 6
    del rows[7]  # a subject loses one view
    (dst / "images" / "junk.png").write_bytes(b"\x89PNG broken")
    rows.append("PX9999,liver,phantom-ge,images/junk.png,3.0,")
    rows.append("PX9999,sideways,phantom-ge,images/junk.png,3.0,")
    (dst / "manifest.csv").write_text("\n".join([header, *rows]) + "\n")
    return dst / "manifest.csv"


def test_all_problems_are_listed_with_row_numbers(tiny_cohort: Path, tmp_path: Path) -> None:
    path = _broken_copy(tiny_cohort, tmp_path / "broken")
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    text = str(info.value)
    assert "row 2:" in text and "file not found" in text
    assert "row 3:" in text and "unknown scanner profile 'acme'" in text
    assert "row 4:" in text and "outside [0, 100]" in text
    assert "duplicate of row 6" in text
    assert "not a readable image" in text and "junk.png" in text
    assert "'sideways'" in text
    assert "no usable" in text
    assert len(info.value.problems) >= 8


def test_validate_command_exit_codes(tiny_cohort: Path, tmp_path: Path) -> None:
    ok = CliRunner().invoke(trainer_cli, ["validate", str(tiny_cohort / "manifest.csv")])
    assert ok.exit_code == 0, ok.output
    assert "subjects:   10" in ok.output
    bad = CliRunner().invoke(trainer_cli, ["validate", str(_broken_copy(tiny_cohort, tmp_path / "b"))])
    assert bad.exit_code == 1
    assert "row 2:" in bad.output


def test_validate_does_not_import_tensorflow(tiny_cohort: Path) -> None:
    code = (
        "import sys; from trainer.cli import main;"
        f"main(['validate', {str(tiny_cohort / 'manifest.csv')!r}], standalone_mode=False);"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_read_cohort_decodes_each_screen_once_and_lists_image_problems_by_row(
    tiny_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trainer.dataset as dataset
    from trainer.dataset import read_cohort

    reads: list[Path] = []
    real_read = dataset.read_for_profile
    monkeypatch.setattr(
        dataset,
        "read_for_profile",
        lambda path, profile, frame=0, region=None: reads.append(path) or real_read(path, profile, frame, region),
    )
    cohort = read_cohort(tiny_cohort / "manifest.csv", progress=False, harmonisation="none")
    images = 2 * len(cohort.ids) + sum(len(o) for o in cohort.others.values())
    assert len(reads) == len(set(reads)) == images  # once per image, not once to validate + once to use

    dst = tmp_path / "bad"
    shutil.copytree(tiny_cohort, dst)
    lines = (dst / "manifest.csv").read_text().splitlines()
    first, second = lines[1].split(","), lines[2].split(",")
    (dst / first[3]).write_bytes(b"\x89PNG broken")  # row 2: unreadable
    cv2.imwrite(str(dst / second[3]), np.zeros((100, 120, 3), np.uint8))  # row 3: not the profile's screen size
    with pytest.raises(ManifestError) as info:
        read_cohort(dst / "manifest.csv", progress=False, harmonisation="none")
    text = str(info.value)
    assert "row 2 (" in text and "not a readable image" in text
    assert "row 3 (" in text and "120x100" in text
    assert len(info.value.problems) == 2


def test_the_same_image_under_two_subjects_is_refused_naming_both_rows(tiny_cohort: Path, tmp_path: Path) -> None:
    cohort = tmp_path / "dup"
    shutil.copytree(tiny_cohort, cohort)
    lines = (cohort / "manifest.csv").read_text().splitlines()
    first_path = lines[1].split(",")[3]  # row 2: the first subject's liver view
    fields = lines[3].split(",")  # row 4: the second subject's liver view
    fields[3] = first_path
    lines[3] = ",".join(fields)
    (cohort / "manifest.csv").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(trainer_cli, ["validate", str(cohort / "manifest.csv")])
    assert result.exit_code == 1
    assert "row 4" in result.output and "row 2" in result.output and "same image" in result.output
