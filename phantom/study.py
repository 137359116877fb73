"""A phantom exam stored the way a console stores it: both views of one subject as DICOM images of one study, each
in a chosen transfer syntax (phantom.dicom_forms), optionally with cine loops, and the patient, study and series a
console writes. The Manufacturer is the vendor and the Manufacturer's Model Name the screen layout, so the bedside
places each file on its scanner profile the way it places a real console's (edge_runtime.scanners.stored)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.contracts import VIEWS
from phantom.dicom import StudyIdentity, UltrasoundRegion, write_ultrasound_dicom
from phantom.dicom_forms import transcode
from phantom.layouts import get_layout
from phantom.render import render_view
from phantom.subject import Subject

CINE_FIRST_FRAME = 1000  # cine loops render speckle realisations no still image of the study uses


@dataclass(frozen=True)
class StoredImage:
    """One file of a phantom study and what it holds."""

    path: Path
    view: str
    form: str
    frames: int


@dataclass(frozen=True)
class StoredStudy:
    identity: StudyIdentity
    subject: Subject
    images: list[StoredImage]

    @property
    def files(self) -> list[Path]:
        return [image.path for image in self.images]


def _write(path: Path, screens: np.ndarray, subject: Subject, identity: StudyIdentity, form: str) -> Path:
    """One image (or cine loop) in one transfer syntax: written uncompressed, then transcoded."""
    layout = get_layout(subject.screen_layout)
    regions = [UltrasoundRegion.of_box(layout.profile.crop_box)]
    if form == "explicit-le":
        return write_ultrasound_dicom(path, screens, regions, layout.vendor, layout.name, identity)
    with tempfile.TemporaryDirectory() as tmp:
        raw = write_ultrasound_dicom(Path(tmp) / "raw.dcm", screens, regions, layout.vendor, layout.name, identity)
        return transcode(raw, path, form)


def write_study(
    out: str | Path,
    subject: Subject,
    seed: int,
    forms: Sequence[str] = ("explicit-le",),
    cine_frames: int = 0,
    identity: StudyIdentity | None = None,
    first_frame: int = 0,
) -> StoredStudy:
    """Both views of ``subject``, once per form (each a new live frame, as a sonographer stores several images),
    then one cine loop per view when ``cine_frames`` is given.

    Args:
        out: the folder to write into.
        subject: the phantom subject (its layout decides the screen).
        seed: the cohort seed (the same subject and seed render the same images).
        forms: transfer syntaxes (phantom.dicom_forms.FORMS keys), one still image per view each.
        cine_frames: frames of one cine loop per view (0: none).
        identity: the patient and study (default: a new study of this subject).
        first_frame: the first speckle realisation (a later visit renders its own: phantom.followup).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    identity = identity or StudyIdentity.new(subject.subject_id)
    images = []
    for k, form in enumerate(forms):
        for view in VIEWS:
            screen = render_view(subject, view, seed, frame=first_frame + k).screen
            path = _write(out / f"{subject.subject_id}_{view}_{k}_{form}.dcm", screen, subject, identity, form)
            images.append(StoredImage(path, view, form, 1))
    if cine_frames:
        for view in VIEWS:
            loop = np.stack([render_view(subject, view, seed, frame=first_frame + CINE_FIRST_FRAME + j).screen
                             for j in range(cine_frames)])  # fmt: skip
            path = _write(out / f"{subject.subject_id}_{view}_cine.dcm", loop, subject, identity, "explicit-le")
            images.append(StoredImage(path, view, "explicit-le", cine_frames))
    return StoredStudy(identity, subject, images)


def write_dual(
    path: str | Path, subject: Subject, seed: int, layout: str, identity: StudyIdentity | None = None
) -> Path:
    """A dual display stored as one file: the liver view in the left tissue region, the kidney-liver view in the
    right one, each stated in the Sequence of Ultrasound Regions.

    Args:
        path: where to write.
        subject: the phantom subject.
        seed: the cohort seed.
        layout: a dual layout (phantom.layouts.DUAL_LAYOUT).
        identity: the patient and study (default: a new study of this subject).
    """
    from phantom.render import render_dual

    dual = render_dual(subject, seed, layout)
    regions = [UltrasoundRegion.of_box(box) for box in dual.boxes]
    vendor = get_layout(layout).vendor
    return write_ultrasound_dicom(
        path, dual.screen, regions, vendor, layout, identity or StudyIdentity.new(subject.subject_id)
    )
