"""The patient and study attributes a stored image (or a worklist item) carries to its exam's report.

Scanners write names in every character set the standard allows: ISO 2022 code extensions with an empty first value
(``['', 'ISO 2022 IR 149']``, Korean; ``['', 'ISO 2022 IR 87']``, Japanese with three component groups), UTF-8,
Arabic (ISO_IR 127), Latin-1 and more. pydicom decodes each value with the set its dataset declares; the attributes
then travel as DICOM JSON (unicode) and the report is written in UTF-8 (``ISO_IR 192``), one set every reader takes,
so a name reaches the report as stored, whatever set the scanner used.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

PATIENT_STUDY_KEYWORDS = """
    PatientName PatientID PatientBirthDate PatientSex StudyInstanceUID StudyDate StudyTime StudyID AccessionNumber
    ReferringPhysicianName
""".split()  # noqa: SIM905 - keywords read as a sentence
UTF8 = "ISO_IR 192"


def patient_study_attributes(source: Dataset) -> dict[str, Any]:
    """The patient and study modules of ``source`` as DICOM JSON in UTF-8; a missing attribute is empty (type 2)."""
    kept = Dataset()
    kept.SpecificCharacterSet = UTF8
    for keyword in PATIENT_STUDY_KEYWORDS:
        value = source.get(keyword)
        if value is None:
            setattr(kept, keyword, "")
        elif keyword.endswith("Name"):  # decoded components, whatever set the scanner wrote them in
            setattr(kept, keyword, str(value))
        else:
            setattr(kept, keyword, value)
    return kept.to_json_dict()
