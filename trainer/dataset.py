"""From a manifest to model-ready tensors, through the one shared preprocessing function."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from edge_runtime.preprocess import preprocess_frame
from edge_runtime.profiles import ScannerProfile, default_profiles, get_profile
from trainer.images import read_image
from trainer.manifest import VIEWS, Manifest, SubjectRecord


@dataclass
class Cohort:
    """Preprocessed 224x224x3 uint8 tensors of every subject's two views, plus what is known about them."""

    subjects: list[SubjectRecord]
    images: dict[tuple[str, str], np.ndarray]  # (subject_id, view) -> tensor

    @property
    def ids(self) -> list[str]:
        return [s.subject_id for s in self.subjects]

    def image(self, subject_id: str, view: str) -> np.ndarray:
        return self.images[(subject_id, view)]

    def pdff(self) -> np.ndarray:
        return np.array([np.nan if s.pdff is None else s.pdff for s in self.subjects], dtype=np.float64)

    def vendors(self) -> list[str]:
        return [s.vendor for s in self.subjects]


def load_cohort(
    manifest: Manifest,
    profiles: Mapping[str, ScannerProfile] | None = None,
    labelled_only: bool = False,
    progress: bool = True,
) -> Cohort:
    """Read and preprocess every image once (the expensive decode of full-HD screens happens here only)."""
    profiles = profiles or default_profiles()
    subjects = [s for s in manifest.subjects.values() if s.pdff is not None or not labelled_only]
    images: dict[tuple[str, str], np.ndarray] = {}
    jobs = [(s, v) for s in subjects for v in VIEWS]
    for subject, view in tqdm(jobs, desc="preprocessing images", unit="img", disable=not progress):
        entry = subject.views[view]
        screen = read_image(entry.path)
        images[(subject.subject_id, view)] = preprocess_frame(screen, get_profile(profiles, entry.scanner))
    return Cohort(subjects, images)
