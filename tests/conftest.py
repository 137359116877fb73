"""Shared fixtures: phantom cohorts are generated once per test session and reused (they take seconds)."""

from __future__ import annotations

import os
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
    """Ten subjects: enough for both vendors and both classes, fast enough for every test that needs files."""
    from phantom.cohort import generate_cohort

    out = tmp_path_factory.mktemp("cohort10")
    generate_cohort(out, 10, seed=3, with_masks=False, workers=2)
    return out
