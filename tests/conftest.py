"""Shared fixtures: phantom cohorts are generated once per test session and reused (they take seconds)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def cohort90(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default 90-subject cohort (39 fatty) with truth masks: the size the physics bars are stated for."""
    from phantom.cohort import generate_cohort

    out = tmp_path_factory.mktemp("cohort90")
    generate_cohort(out, 90, seed=0, with_masks=True, workers=2)
    return out


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten subjects with two view=other rows each: enough for both vendors, both classes and a view gate, fast
    enough for every test that needs files."""
    from phantom.cohort import CohortForm, generate_cohort

    out = tmp_path_factory.mktemp("cohort10")
    generate_cohort(out, 10, seed=3, with_masks=False, workers=2, form=CohortForm(other_frames=2))
    return out


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(scope="session")
def run_dir(tiny_cohort: Path, feature_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished CLKL run on the tiny cohort: real VGG19 architecture, random weights, a few epochs."""
    from helpers import invoke_trainer, train_args

    out = tmp_path_factory.mktemp("runs") / "tiny"
    args = train_args(tiny_cohort / "manifest.csv", out, feature_cache, appearance="gain", epochs="3", bootstrap="50")
    result = invoke_trainer(*args)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def release_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The signing key the test bundle is released with (its .public beside it)."""
    from edge_runtime.model.signing import make_signing_key

    secret, _ = make_signing_key(tmp_path_factory.mktemp("release-keys"), "release")
    return secret


@pytest.fixture(scope="session")
def bundle_dir(run_dir: Path, release_key: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`trainer export --int8 --sign-key` on the tiny run: the bundle CI loads at the bedside side. The export
    must not print the converter's input-statistics warning (calibration.convert.no_input_statistics_warning)."""
    from helpers import invoke_trainer

    out = tmp_path_factory.mktemp("bundles") / "tiny-int8"
    args = ["export", "--run", str(run_dir), "--out", str(out), "--int8", "--samples", "24", "--version", "0.1.0"]
    args += ["--sign-key", str(release_key), "--debugger-images", "2"]  # the debugger's report, on few images
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        result = invoke_trainer(*args, "--allow-fidelity-miss")
    assert result.exit_code == 0, result.output
    noise = [str(w.message) for w in said if "Statistics for quantized inputs" in str(w.message)]
    assert not noise, f"the int8 export printed the converter's input-statistics warning: {noise}"
    return out


@pytest.fixture(scope="session")
def browser():
    """A real headless Chromium driven by Selenium (`make test` installs Debian's chromium and chromium-driver)."""
    from edge_runtime.display.browser import headless_chromium

    chrome = headless_chromium()
    yield chrome
    chrome.quit()


IMAGE_BUILD: dict = {}  # the bedside image's build, started when the session begins (test_image waits for it)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start `deploy/image/build.sh` in the background as soon as tests that need the image are collected: its
    downloads and layer commits overlap the tests before them instead of adding to the run."""
    import subprocess
    import tempfile

    from test_image import IMAGE, can_build

    if not can_build() or not any(item.nodeid.startswith("tests/test_image.py") for item in session.items):
        return
    out = Path(tempfile.mkdtemp(prefix="fle-image-"))
    log = open(out / "build.log", "w")  # noqa: SIM115 - the build writes it; test_image reads it
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, IMAGE=IMAGE, OUT=str(out))
    IMAGE_BUILD.update(out=out, log=out / "build.log", process=subprocess.Popen(
        ["sh", "deploy/image/build.sh"], cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env))  # fmt: skip
