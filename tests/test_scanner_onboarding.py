"""Bring your own scanner, part 3: many screen layouts, the three forms a site's images come in (screen grab,
DICOM with its ultrasound region, pre-cropped), cine frames, and onboarding a console with `profile detect`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq
from click.testing import CliRunner
from helpers import train_args

from edge_runtime.cli import main as edge_cli
from edge_runtime.scanners.detect import detect_box, detect_boxes, iou
from edge_runtime.scanners.profiles import ProfileError, read_profiles_file
from phantom.cohort import CohortForm, generate_cohort
from phantom.formats import FORMATS
from phantom.layouts import DUAL_LAYOUT, LAYOUT_SETS, LAYOUTS, assign_layouts
from phantom.render import render_dual, render_view
from phantom.subject import draw_cohort
from trainer.dataset import read_cohort
from trainer.manifest import ManifestError, load_manifest

ALL = LAYOUT_SETS["all"]  # every layout a cohort row can use (a dual display holds two views)


def _cohort_images(folder: Path) -> dict[tuple[str, str], np.ndarray]:
    profiles = read_profiles_file(folder / "profiles.json")
    return read_cohort(folder / "manifest.csv", {**profiles}, progress=False, harmonisation="none").images


def test_every_layout_as_screen_dicom_and_cropped_gives_identical_tensors(tmp_path: Path) -> None:
    """27 subjects over every layout of three vendors: each layout's subjects come as a screen PNG, a DICOM and
    a cropped PNG."""
    generate_cohort(tmp_path / "screens", 27, seed=5, with_masks=False, workers=2, form=CohortForm(ALL))
    generate_cohort(tmp_path / "mixed", 27, seed=5, with_masks=False, workers=2, form=CohortForm(ALL, FORMATS))
    rows = list(csv.DictReader((tmp_path / "mixed" / "manifest.csv").open()))
    scanners = {r["scanner"] for r in rows}
    vendors = {LAYOUTS[name].vendor for name in ALL}
    assert {r["path"][-4:] for r in rows} == {".png", ".dcm"} and len(scanners) == len(ALL) + 2 * len(vendors)
    truth = json.loads((tmp_path / "mixed" / "truth.json").read_text())
    assert {s["layout"] for s in truth["subjects"]} == set(ALL)
    screens, mixed = _cohort_images(tmp_path / "screens"), _cohort_images(tmp_path / "mixed")
    assert screens.keys() == mixed.keys() and len(screens) == 2 * 27
    for key, tensor in screens.items():
        np.testing.assert_array_equal(mixed[key], tensor, err_msg=str(key))


def test_the_manifest_frame_column_picks_a_cine_frame(tmp_path: Path) -> None:
    form = CohortForm(("phantom-philips", "phantom-ge-1024x768"), ("dicom",), cine_frames=2)
    generate_cohort(tmp_path / "cine", 4, seed=2, with_masks=False, workers=1, form=form)
    generate_cohort(tmp_path / "stills", 4, seed=2, with_masks=False, workers=1, form=CohortForm(form.layouts))
    rows = list(csv.DictReader((tmp_path / "cine" / "manifest.csv").open()))
    assert {r["frame"] for r in rows} == {"0", "1"}
    cine, stills = _cohort_images(tmp_path / "cine"), _cohort_images(tmp_path / "stills")
    for row in rows:
        same = np.array_equal(cine[(row["subject_id"], row["view"])], stills[(row["subject_id"], row["view"])])
        assert same == (row["frame"] == "0"), row  # frame 0 is the still; frame 1 is another speckle realisation


def test_bad_frame_values_are_reported_by_row(tmp_path: Path) -> None:
    generate_cohort(tmp_path, 2, seed=1, with_masks=False, workers=1, form=CohortForm(formats=("screen", "dicom")))
    rows = list(csv.DictReader((tmp_path / "manifest.csv").open()))
    frames = {"images/PH0001_liver.png": "1", "images/PH0002_liver.dcm": "3", "images/PH0002_kidney_liver.dcm": "x"}
    with (tmp_path / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*rows[0], "frame"], lineterminator="\n")
        writer.writeheader()
        writer.writerows({**r, "frame": frames.get(r["path"], "")} for r in rows)
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path / "manifest.csv", read_profiles_file(tmp_path / "profiles.json"))
    problems = "\n".join(info.value.problems)
    assert "row 2:" in problems and "frame 1 asked for, but a .png file holds one image" in problems
    assert "row 4:" in problems and "frame 3 asked for, but the file holds 1 frame(s)" in problems
    assert "row 5: frame 'x' is not a frame number" in problems


def _grabs(layout: str, count: int, seed: int) -> list[np.ndarray]:
    subjects = draw_cohort(count, seed, vendors=(LAYOUTS[layout].vendor,))
    if layout == DUAL_LAYOUT:
        return [render_dual(s, seed, layout, frame=s.index % 3).screen for s in subjects]
    subjects = assign_layouts(subjects, [layout])
    return [render_view(s, ("liver", "kidney_liver")[s.index % 2], seed, frame=s.index % 3).screen for s in subjects]


def _has_calipers(screen: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    x, y, w, h = box
    inside = screen[y : y + h, x : x + w].astype(int)
    return bool(((inside[..., 0] > 200) & (inside[..., 1] > 200) & (inside[..., 2] < 80)).sum() > 20)


@pytest.mark.parametrize("layout", (*ALL, DUAL_LAYOUT))
def test_profile_detect_finds_every_box_on_every_layout(layout: str) -> None:
    """20 grabs per layout, different subjects, views, speckle and PDFF; some frozen with calipers and text, one
    layout with burned-in patient text touching the image, one a dual display (two boxes, left to right)."""
    truth = LAYOUTS[layout].boxes
    grabs = _grabs(layout, 20, seed=31)
    for grab in grabs:
        found = detect_boxes(grab)
        assert len(found) == len(truth), (layout, found)
        score = min(iou(b, t) for b, t in zip(found, truth, strict=True))
        assert score >= 0.97, (layout, found, truth)
    if LAYOUTS[layout].style is not None and LAYOUTS[layout].style.caliper_share > 0:
        assert sum(_has_calipers(g, truth[0]) for g in grabs) >= 2  # the bar includes burned-in calipers


def test_profile_detect_command_writes_a_profile_and_an_overlay_and_refuses_bad_grabs(tmp_path: Path) -> None:
    for i, grab in enumerate(_grabs("phantom-ge-1366x768", 3, seed=8)):
        cv2.imwrite(str(tmp_path / f"grab{i}.png"), cv2.cvtColor(grab, cv2.COLOR_RGB2BGR))
    grabs = [str(tmp_path / f"grab{i}.png") for i in range(3)]
    out = tmp_path / "site" / "profiles.json"
    args = ["profile", "detect", *grabs, "--name", "ward-logiq", "--vendor", "GE", "--out", str(out)]
    run = CliRunner().invoke(edge_cli, args)
    assert run.exit_code == 0, run.output
    profile = read_profiles_file(out)["ward-logiq"]
    assert iou(profile.crop_box, LAYOUTS["phantom-ge-1366x768"].profile.crop_box) >= 0.97
    assert profile.vendor == "GE" and profile.screen_size == (1366, 768)
    assert cv2.imread(str(out.parent / "ward-logiq-overlay.png")).shape == (768, 1366, 3)

    again = CliRunner().invoke(edge_cli, ["profile", "detect", grabs[0], "--name", "ward-logiq", "--out", str(out)])
    assert again.exit_code == 1 and "already defines 'ward-logiq'" in again.output

    shifted = np.roll(cv2.imread(grabs[0]), 60, axis=1)  # same size, box elsewhere: not one preset
    cv2.imwrite(str(tmp_path / "shifted.png"), shifted)
    disagree = CliRunner().invoke(edge_cli, ["profile", "detect", grabs[1], str(tmp_path / "shifted.png")])
    assert disagree.exit_code == 1 and "disagree" in disagree.output and "shifted.png" in disagree.output

    rng = np.random.default_rng(0)
    bad = {"blank.png": np.zeros((768, 1024, 3), np.uint8), "photo.png": rng.integers(0, 255, (600, 800, 3))}
    for name, pixels in bad.items():
        cv2.imwrite(str(tmp_path / name), pixels.astype(np.uint8))
        refused = CliRunner().invoke(edge_cli, ["profile", "detect", str(tmp_path / name)])
        assert refused.exit_code == 1 and f"{name}: found no ultrasound image box" in refused.output


def test_profile_detect_reads_dicom_checks_its_regions_and_splits_a_dual_display(tmp_path: Path) -> None:
    from phantom.dicom import UltrasoundRegion, write_ultrasound_dicom
    from phantom.study import write_dual

    subjects = draw_cohort(2, 7, vendors=("GE",))  # the dual layout is a GE console
    dual = [write_dual(tmp_path / f"dual{k}.dcm", s, 7, DUAL_LAYOUT) for k, s in enumerate(subjects)]
    out = tmp_path / "profiles.json"
    run = CliRunner().invoke(edge_cli, ["profile", "detect", *map(str, dual), "--name", "aloka", "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert "region sequence agrees" in run.output and "aloka-1, aloka-2" in run.output
    written = read_profiles_file(out)
    for name, truth in zip(("aloka-1", "aloka-2"), LAYOUTS[DUAL_LAYOUT].boxes, strict=True):
        assert iou(written[name].crop_box, truth) >= 0.97

    header = "phantom-ge-header-1280x1024"
    grab = _grabs(header, 1, seed=12)[0]
    wrong = write_ultrasound_dicom(tmp_path / "wrong.dcm", grab, [UltrasoundRegion(0, 0, 300, 200)], "GE", header)
    refused = CliRunner().invoke(edge_cli, ["profile", "detect", str(wrong)])
    assert refused.exit_code == 1 and "the file's region sequence says" in refused.output
    bare = write_ultrasound_dicom(tmp_path / "bare.dcm", grab, [], "GE", header)  # no regions: GE files often
    named = CliRunner().invoke(edge_cli, ["profile", "detect", str(bare), "--name", "ward3", "--out", str(out)])
    assert named.exit_code == 0 and f"name their model {header!r}" in named.output
    assert iou(read_profiles_file(out)["ward3"].crop_box, LAYOUTS[header].profile.crop_box) >= 0.97


def test_detect_refuses_a_grab_that_is_all_image() -> None:
    crop = _grabs("phantom-philips", 1, seed=3)[0][170:830, 600:1300]  # inside the sector: speckle everywhere
    with pytest.raises(ProfileError, match="already cropped"):
        detect_box(np.ascontiguousarray(crop))


@pytest.mark.slow
def test_a_cohort_of_three_layouts_plus_dicom_trains_exports_and_serves(
    feature_cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from phantom.cli import main as phantom_cli
    from trainer.cli import main as trainer_cli

    cohort = tmp_path / "cohort"
    layouts = ["phantom-philips-1280x1024", "phantom-ge-1024x768", "phantom-ge-1366x768"]
    args = ["cohort", "--subjects", "10", "--seed", "21", "--out", str(cohort), "--no-masks"]
    args += [a for name in layouts for a in ("--layout", name)] + ["--format", "screen", "--format", "dicom"]
    assert CliRunner().invoke(phantom_cli, args).exit_code == 0
    profiles = str(cohort / "profiles.json")
    args = train_args(cohort / "manifest.csv", tmp_path / "run", feature_cache, task="classify", profiles=profiles)
    result = CliRunner().invoke(trainer_cli, args)
    assert result.exit_code == 0, result.output
    bundle = tmp_path / "bundle"
    args = ["export", "--run", str(tmp_path / "run"), "--out", str(bundle), "--float", "--allow-fidelity-miss"]
    result = CliRunner().invoke(trainer_cli, args)
    assert result.exit_code == 0, result.output
    scanners = json.loads((bundle / "bundle.json").read_text())["scanners"]
    assert set(scanners) == {*layouts, "phantom-philips-dicom", "phantom-ge-dicom"}
    with caplog.at_level("WARNING"):
        _serve_one_seen_and_one_unseen(bundle, tmp_path)
    assert "scanner 'phantom-philips-1600x1200' is not one bundle" in caplog.text


def _serve_one_seen_and_one_unseen(bundle_dir: Path, tmp_path: Path) -> None:
    from helpers import runtime_config

    from edge_runtime.contracts import FrameHeader
    from edge_runtime.model.bundle import load_bundle
    from edge_runtime.model.served import ServedModel
    from edge_runtime.scanners.profiles import load_profiles
    from edge_runtime.server import EdgeServer
    from edge_runtime.wire.protocol import encode_frame

    bundle = load_bundle(bundle_dir)
    trained = {name: spec.model_dump() for name, spec in bundle.meta.scanners.items()}
    profiles = load_profiles(extra={n: LAYOUTS[n].profile.to_mapping() for n in ALL} | trained)
    config = runtime_config(tmp_path)
    server = EdgeServer(config, ServedModel.prepared(bundle, profiles, config), context=zmq.Context())
    for seq, layout in enumerate(("phantom-ge-1366x768", "phantom-philips-1600x1200"), start=1):
        screen = _grabs(layout, 1, seed=4)[0]
        header = FrameHeader(1, seq, 1.0, "exam-1", layout, "liver", screen.shape[1], screen.shape[0], 3, "raw")
        server.bedside.admission.admit(encode_frame(header, screen), 1.0)
    assert server.stats.snapshot()["rejected"] == {"unseen_scanner": 1}
    assert len(server.bedside.worker.queue) == 1
    server.bedside.audit.close()
