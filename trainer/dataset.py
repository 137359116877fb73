"""From a manifest to model-ready tensors, through the one shared preprocessing function."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from edge_runtime.contracts import OTHER_VIEW, VIEWS
from edge_runtime.pipeline.preprocess import PreprocessError, preprocess_frame
from edge_runtime.scanners.profiles import ProfileError, ScannerProfile, default_profiles, get_profile
from trainer.images import ImageReadError, image_digest, read_for_profile
from trainer.manifest import Manifest, ManifestError, SubjectRecord, duplicate_image_problems, load_manifest

PHANTOM_PROFILE_PREFIX = "phantom-"  # the phantom's screen layouts (phantom-philips, phantom-ge)


@dataclass
class Cohort:
    """Preprocessed 224x224x3 uint8 tensors of every subject's two views, plus what is known about them."""

    subjects: list[SubjectRecord]
    images: dict[tuple[str, str], np.ndarray]  # (subject_id, view) -> tensor
    harmonisation: str  # preprocess_frame's last step for every tensor here (TrainConfig.harmonisation)
    digests: dict[tuple[str, str], str] = field(default_factory=dict)  # (subject_id, view) -> screen content id
    profiles: dict[str, ScannerProfile] = field(default_factory=dict)  # the scanner profiles its images use
    others: dict[str, list[np.ndarray]] = field(default_factory=dict)  # subject -> its view=other tensors

    @property
    def ids(self) -> list[str]:
        return [s.subject_id for s in self.subjects]

    def image(self, subject_id: str, view: str) -> np.ndarray:
        return self.images[(subject_id, view)]

    def scanner(self, subject_id: str, view: str) -> str:
        """The scanner profile a subject's view was captured on (the guard's centre is per console)."""
        record = next(s for s in self.subjects if s.subject_id == subject_id)
        return record.views[view].scanner

    def pdff(self) -> np.ndarray:
        return np.array([np.nan if s.pdff is None else s.pdff for s in self.subjects], dtype=np.float64)

    def vendors(self) -> list[str]:
        return [s.vendor for s in self.subjects]

    @property
    def kind(self) -> str:
        """'phantom' when every image came from a phantom scanner profile, else 'clinical'."""
        scanners = {e.scanner for s in self.subjects for e in s.views.values()}
        return "phantom" if all(name.startswith(PHANTOM_PROFILE_PREFIX) for name in scanners) else "clinical"


def load_cohort(
    manifest: Manifest,
    profiles: Mapping[str, ScannerProfile] | None = None,
    labelled_only: bool = False,
    progress: bool = True,
    *,
    harmonisation: str,
) -> Cohort:
    """Read and preprocess every image once (the expensive decode of full-HD screens happens here only).


    Unreadable images, screens that do not match their scanner profile and the same picture under two rows
    are collected by manifest row and raised together as one ManifestError, so a user fixes them in one pass.

    Args:
        manifest: a parsed manifest.
        profiles: scanner profiles by name (default: the shipped ones).
        labelled_only: keep only subjects with a PDFF.
        progress: show a progress bar.
        harmonisation: preprocess_frame's harmonisation step (the run's TrainConfig.harmonisation).
    """
    profiles = profiles or default_profiles()
    subjects = [s for s in manifest.subjects.values() if s.pdff is not None or not labelled_only]
    images: dict[tuple[str, str], np.ndarray] = {}
    digests: dict[tuple[str, str], str] = {}
    problems: list[str] = []
    jobs = [(s, v, s.views[v]) for s in subjects for v in VIEWS]
    jobs += [(s, f"{OTHER_VIEW}@{e.row}", e) for s in subjects for e in s.others]
    rows = {(s.subject_id, key): entry.row for s, key, entry in jobs}
    for subject, key, entry in tqdm(jobs, desc="preprocessing images", unit="img", disable=not progress):
        try:
            profile = get_profile(profiles, entry.scanner)
            screen = read_for_profile(entry.path, profile, entry.frame, entry.region)
            digests[(subject.subject_id, key)] = image_digest(screen)
            images[(subject.subject_id, key)] = preprocess_frame(screen, profile, harmonisation=harmonisation)
        except (ImageReadError, PreprocessError, ProfileError) as exc:
            problems.append(f"row {entry.row} ({entry.path.name}): {exc}")
    problems += duplicate_image_problems(digests, rows)
    if problems:
        raise ManifestError(manifest.path, problems)
    others = {s.subject_id: [images.pop((s.subject_id, f"{OTHER_VIEW}@{e.row}")) for e in s.others] for s in subjects}
    view_digests = {k: d for k, d in digests.items() if k[1] in VIEWS}
    used = {e.scanner for s in subjects for e in s.views.values()}
    chosen = {name: profiles[name] for name in sorted(used)}
    kept_others = {sid: o for sid, o in others.items() if o}
    return Cohort(subjects, images, harmonisation, view_digests, chosen, kept_others)


def read_cohort(
    manifest_path: str | Path,
    profiles: Mapping[str, ScannerProfile] | None = None,
    labelled_only: bool = False,
    progress: bool = True,
    *,
    harmonisation: str,
) -> Cohort:
    """Manifest -> cohort, decoding each full-HD screen once: the manifest's rows are validated without

    reading images, and load_cohort reports image problems by row while it preprocesses.

    Args:
        manifest_path: manifest.csv.
        profiles: scanner profiles by name (default: the shipped ones).
        labelled_only: keep only subjects with a PDFF.
        progress: show a progress bar.
        harmonisation: preprocess_frame's harmonisation step (the run's TrainConfig.harmonisation).
    """
    manifest = load_manifest(manifest_path, profiles, check_images=False)
    return load_cohort(manifest, profiles, labelled_only, progress, harmonisation=harmonisation)
