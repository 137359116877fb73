"""Bring your own scanner, part 1: one profiles file for every command, recorded in the run and the bundle,
and the bedside refuses frames from a scanner the model never trained on."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import zmq
from click.testing import CliRunner
from helpers import train_args

from edge_runtime.scanners.profiles import ProfileError, read_profiles_file
from trainer.cli import main as trainer_cli

SITE = {"site-epiq": {"vendor": "PHILIPS", "screen": [1920, 1080], "crop": [490, 160, 940, 680]}}


def test_profiles_files_in_json_or_toml_with_errors_that_name_the_file_and_the_profile(tmp_path: Path) -> None:
    (tmp_path / "site.json").write_text(json.dumps(SITE))
    (tmp_path / "site.toml").write_text(
        '[profiles.site-epiq]\nvendor = "PHILIPS"\nscreen = [1920, 1080]\ncrop = [490, 160, 940, 680]\n'
    )
    assert read_profiles_file(tmp_path / "site.json") == read_profiles_file(tmp_path / "site.toml")
    (tmp_path / "twice.json").write_text(
        '{"a": {"vendor": "GE", "screen": [800, 600], "crop": [0, 0, 100, 100]},'
        ' "a": {"vendor": "GE", "screen": [800, 600], "crop": [0, 0, 100, 100]}}'
    )
    with pytest.raises(ProfileError, match=r"twice\.json.*'a' defined twice"):
        read_profiles_file(tmp_path / "twice.json")
    outside = {"wide": {"vendor": "GE", "screen": [800, 600], "crop": [700, 0, 200, 100]}}
    (tmp_path / "outside.json").write_text(json.dumps(outside))
    with pytest.raises(ProfileError, match=r"outside\.json.*'wide'.*outside the 800x600 screen"):
        read_profiles_file(tmp_path / "outside.json")
    (tmp_path / "broken.toml").write_text("[profiles\n")
    with pytest.raises(ProfileError, match=r"broken\.toml"):
        read_profiles_file(tmp_path / "broken.toml")


def _site_cohort(tiny_cohort: Path, tmp_path: Path) -> Path:
    """The tiny cohort as a site would export it: its PHILIPS rows name the site's own scanner profile."""
    cohort = tmp_path / "site-cohort"
    shutil.copytree(tiny_cohort, cohort)
    rows = list(csv.DictReader((cohort / "manifest.csv").open()))
    for row in rows:
        row["scanner"] = "site-epiq" if row["scanner"] == "phantom-philips" else row["scanner"]
    with (cohort / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "site.json").write_text(json.dumps(SITE))
    return cohort


@pytest.mark.slow
def test_a_site_scanner_trains_with_profiles_and_the_run_records_them(
    tiny_cohort: Path, feature_cache: Path, tmp_path: Path
) -> None:
    cohort, profiles = _site_cohort(tiny_cohort, tmp_path), tmp_path / "site.json"
    refused = CliRunner().invoke(trainer_cli, ["validate", str(cohort / "manifest.csv")])
    assert refused.exit_code == 1 and "unknown scanner profile 'site-epiq'" in refused.output
    ok = CliRunner().invoke(trainer_cli, ["validate", str(cohort / "manifest.csv"), "--profiles", str(profiles)])
    assert ok.exit_code == 0, ok.output
    args = train_args(cohort / "manifest.csv", tmp_path / "run", feature_cache, profiles=str(profiles))
    result = CliRunner().invoke(trainer_cli, args)
    assert result.exit_code == 0, result.output
    recorded = json.loads((tmp_path / "run" / "profiles.json").read_text())
    assert recorded["site-epiq"] == SITE["site-epiq"] and set(recorded) == {"site-epiq", "phantom-ge"}
    assert json.loads((tmp_path / "run" / "cohort.json").read_text())["kind"] == "clinical"


def test_the_bundle_lists_its_scanners_and_serve_refuses_an_unseen_one(bundle_dir: Path, tmp_path: Path) -> None:
    from helpers import phantom_screens, runtime_config

    from edge_runtime.contracts import FrameHeader
    from edge_runtime.model.bundle import load_bundle
    from edge_runtime.model.served import ServedModel
    from edge_runtime.scanners.profiles import load_profiles
    from edge_runtime.server import EdgeServer
    from edge_runtime.wire.protocol import encode_frame

    bundle = load_bundle(bundle_dir)
    assert set(bundle.meta.scanners) == {"phantom-philips", "phantom-ge"}
    _, screen = phantom_screens(1)[(0, "liver")]
    header = FrameHeader(1, 0, 1.0, "exam-1", "ward-x", "liver", screen.shape[1], screen.shape[0], 3, "raw")
    profiles = load_profiles(extra={"ward-x": SITE["site-epiq"] | {"screen": [screen.shape[1], screen.shape[0]]}})
    for allow, expected in ((False, {"unseen_scanner": 1}), (True, {})):
        config = runtime_config(tmp_path / str(allow), scanners={"allow_unseen": allow})
        server = EdgeServer(config, ServedModel.prepared(bundle, profiles, config), context=zmq.Context())
        server.bedside.admission.admit(encode_frame(header, screen), 1.0)
        assert server.stats.snapshot()["rejected"] == expected
        assert len(server.bedside.worker.queue) == (1 if allow else 0)
        server.bedside.audit.close()


def test_images_already_cropped_give_the_same_tensors_as_the_screens_they_came_from(tiny_cohort: Path) -> None:
    import numpy as np

    from edge_runtime.pipeline.preprocess import PreprocessError, preprocess_frame
    from edge_runtime.scanners.profiles import default_profiles
    from trainer.images import read_image

    profiles = default_profiles()
    for row in list(csv.DictReader((tiny_cohort / "manifest.csv").open()))[:4]:
        screen, profile = read_image(tiny_cohort / row["path"]), profiles[row["scanner"]]
        x, y, w, h = profile.crop_box
        cropped = np.ascontiguousarray(screen[y : y + h, x : x + w])  # what a site that crops for us sends
        np.testing.assert_array_equal(
            preprocess_frame(cropped, profiles["full-frame"], harmonisation="none"),
            preprocess_frame(screen, profile, harmonisation="none"),
        )
        with pytest.raises(PreprocessError, match=f"expects {profile.screen_width}x{profile.screen_height}"):
            preprocess_frame(cropped, profile, harmonisation="none")  # a screen profile still checks the screen's size
    assert profiles["full-frame"].to_mapping() == {"vendor": "unspecified", "crop": "full-frame"}


def _ultrasound_dicom(path: Path, screen, regions: list[tuple[int, int, int, int, int, int]]) -> Path:
    """A DICOM ultrasound file of an RGB screen with the given regions (x0, y0, x1, y1, spatial format, data type)."""
    from phantom.dicom import UltrasoundRegion, write_ultrasound_dicom

    return write_ultrasound_dicom(path, screen, [UltrasoundRegion(*r) for r in regions])


def test_dicom_files_are_cropped_by_their_own_ultrasound_region(tiny_cohort: Path, tmp_path: Path) -> None:
    import numpy as np

    from edge_runtime.pipeline.preprocess import preprocess_frame
    from edge_runtime.scanners.profiles import default_profiles
    from trainer.images import ImageReadError, read_for_profile, read_image

    profiles = default_profiles()
    row = next(csv.DictReader((tiny_cohort / "manifest.csv").open()))
    screen, profile = read_image(tiny_cohort / row["path"]), profiles[row["scanner"]]
    x, y, w, h = profile.crop_box
    tissue = (x, y, x + w - 1, y + h - 1, 1, 1)
    colour_bar = (10, 10, 40, 300, 0, 0)
    good = _ultrasound_dicom(tmp_path / "good.dcm", screen, [colour_bar, tissue])
    via_region = preprocess_frame(
        read_for_profile(good, profiles["dicom-region"]), profiles["dicom-region"], harmonisation="none"
    )
    np.testing.assert_array_equal(
        via_region, preprocess_frame(screen, profile, harmonisation="none")
    )  # same tensor as the screen grab

    cases = {
        "none.dcm": ([], "no Sequence of Ultrasound Regions"),
        "two.dcm": ([tissue, (0, 0, 99, 99, 1, 1)], "2 2-D tissue regions"),
        "outside.dcm": ([(x, y, screen.shape[1] + 5, y + h - 1, 1, 1)], "lies outside the"),
    }
    for name, (regions, message) in cases.items():
        path = _ultrasound_dicom(tmp_path / name, screen, regions)
        with pytest.raises(ImageReadError, match=message) as info:
            read_for_profile(path, profiles["dicom-region"])
        assert name in str(info.value)
