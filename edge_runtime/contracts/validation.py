"""The words of validation at a site, declared once: what became of each patient of a site cohort pulled from the
PACS (`trainer site-cohort`), and of each MRI-PDFF result reconciled with the box's answers (`edge-runtime
outcomes`). The phantom's archive states its truth in the same words, so a test compares them one to one."""

from __future__ import annotations

from enum import StrEnum

WINDOW_DAYS = 90  # the longest gap between an ultrasound exam and its MRI-PDFF (the paper's mean gap: 45 days)


class CohortOutcome(StrEnum):
    """What became of one patient of the reference list in the site cohort."""

    USED = "used"  # a liver and a kidney-liver frame were chosen
    NO_STUDY_IN_WINDOW = "no_study_in_window"  # no ultrasound study within the window of the MRI date
    NOT_RETRIEVED = "not_retrieved"  # the PACS found the study but did not send it
    NO_READABLE_IMAGE = "no_readable_image"  # the study held no image the one DICOM reader could use
    NO_LIVER_FRAME = "no_liver_frame"  # the view gate found no liver frame
    NO_KIDNEY_LIVER_FRAME = "no_kidney_liver_frame"  # the view gate found no kidney-liver frame
    ALL_FLAGGED = "all_flagged"  # every frame of a view was flagged by the guard: unlike anything the bundle knows


class ReconcileOutcome(StrEnum):
    """What became of one MRI-PDFF result at the box."""

    MATCHED = "matched"  # an exam of that patient or accession within the window
    NO_EXAM = "no_exam"  # the box answered no exam of that patient or accession within the window
