"""An ended exam as the IHE AI Results report: a Comprehensive 3D SR holding a TID 1500 measurement report with one
TID 1501 group, in the exam's own study and a new series, written with highdicom.

The group holds the call as a qualitative evaluation of steatosis of the liver (present, absent, indeterminate, and
why when indeterminate), the PDFF estimate with its interval and the interval's coverage, p_fatty and the call's
coverage, the number of image pairs, the algorithm (TID 4019: the bundle's name, version, SHA-256 and site
adaptation) and, when the exam came over DICOM, the images that contributed as its source images. The SR's
Contributing Equipment names this product as the processing equipment, as IHE AIR asks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from edge_runtime.contracts import ExamRecord
from edge_runtime.hospital import codes
from edge_runtime.pipeline.studies import Evidence
from edge_runtime.sources.dicom.attributes import patient_study_attributes

PRODUCT = "fatty-liver-edge"
REPORT_SERIES_NUMBER = 9701


@dataclass(frozen=True)
class StudyContext:
    """What a report inherits from its study: the patient and study modules (from a stored image, or the Modality
    Worklist), in UTF-8, and the images that contributed. It lives only inside the queued report, which is deleted
    once sent."""

    attributes: Dataset  # only edge_runtime.sources.dicom.attributes.PATIENT_STUDY_KEYWORDS, in UTF-8
    evidence: tuple[Evidence, ...] = ()

    @property
    def study_uid(self) -> str:
        return str(self.attributes.StudyInstanceUID)

    @property
    def accession(self) -> str:
        return str(self.attributes.get("AccessionNumber", "") or "")

    @classmethod
    def of(cls, source: Dataset, evidence: Sequence[Evidence] = ()) -> StudyContext:
        """The patient and study attributes of a stored image or a worklist item (missing ones empty, as type 2)."""
        return cls.from_json(patient_study_attributes(source), evidence)

    @classmethod
    def from_json(cls, attributes: Mapping[str, Any], evidence: Sequence[Evidence] = ()) -> StudyContext:
        """The context from attributes as they travel (DICOM JSON, edge_runtime.pipeline.studies)."""
        return cls(Dataset.from_json(dict(attributes)), tuple(evidence))


@dataclass(frozen=True)
class Equipment:
    """This box as the report names it."""

    station: str  # the box's AE title
    software_version: str
    serial: str = ""


def _stub(study: StudyContext, evidence: Evidence | None) -> Dataset:
    """An evidence dataset as highdicom reads one: the study's attributes and, for a real image, its identity."""
    ds = Dataset()
    ds.update(study.attributes)
    ds.SOPClassUID = evidence.sop_class if evidence else "1.2.840.10008.5.1.4.1.1.6.1"
    ds.SOPInstanceUID = evidence.sop_instance if evidence else "2.25.1"
    ds.SeriesInstanceUID = evidence.series if evidence else "2.25.2"
    ds.Modality = "US"
    return ds


def _measurements(exam: dict[str, Any], hd: Any) -> list:
    num = lambda name, value, unit: hd.sr.Measurement(name=name, value=float(value), unit=unit)  # noqa: E731
    out = []
    if exam.get("pdff") is not None:
        out.append(num(codes.FAT_FRACTION, exam["pdff"], codes.PERCENT))
    if exam.get("pdff_interval"):
        low, high = exam["pdff_interval"]
        out += [num(codes.FAT_FRACTION_LOWER, low, codes.PERCENT), num(codes.FAT_FRACTION_UPPER, high, codes.PERCENT)]
        out.append(num(codes.INTERVAL_COVERAGE, 100 * (exam.get("pdff_coverage") or 0.9), codes.PERCENT))
    if exam.get("p_fatty") is not None:
        out.append(num(codes.P_FATTY, exam["p_fatty"], codes.NO_UNITS))
    if exam.get("definite_error") is not None:
        out.append(num(codes.DEFINITE_ERROR, 100 * exam["definite_error"], codes.PERCENT))
        out.append(num(codes.DEFINITE_SUBJECTS, exam["definite_subjects"], codes.NO_UNITS))
    out.append(num(codes.IMAGE_PAIRS, exam.get("n_pairs") or 0, codes.NO_UNITS))
    return out


def _evaluations(exam: dict[str, Any], hd: Any) -> list:
    call = exam.get("call") or "indeterminate"
    out = [hd.sr.QualitativeEvaluation(codes.STEATOSIS_OF_LIVER, codes.CALLS[call])]
    if call == "indeterminate":
        out.append(hd.sr.QualitativeEvaluation(codes.WHY_INDETERMINATE, codes.why_code(exam.get("why"))))
    return out


def _group(record: ExamRecord, study: StudyContext, hd: Any) -> Any:
    """The TID 1501 group: the measurements, the call, the algorithm, the source images."""
    model = record.model
    parameters = [f"sha {model.sha}", f"site {model.site or 'none (as trained)'}"]
    sources = [hd.sr.SourceImageForMeasurementGroup(e.sop_class, e.sop_instance) for e in study.evidence] or None
    exam = record.exam.model_dump()
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier=f"fatty liver exam {record.session}"[:64]),
        finding_type=codes.STEATOSIS_OF_LIVER,
        finding_sites=[hd.sr.FindingSite(codes.LIVER)],
        algorithm_id=hd.sr.AlgorithmIdentification(name=model.name, version=model.version, parameters=parameters),
        measurements=_measurements(exam, hd),
        qualitative_evaluations=_evaluations(exam, hd),
        source_images=sources,
    )


def build_report(record: ExamRecord, study: StudyContext, equipment: Equipment, uids: tuple[str, str]) -> Dataset:
    """The exam's SR document in its study.

    Args:
        record: the exam's final record (its answer, model and session).
        study: the patient, study and contributing images.
        equipment: this box, as the report names it.
        uids: the report's SOP Instance UID and its series' UID (kept for every resend: the PACS never holds two).
    """
    import highdicom as hd

    observer = hd.sr.ObserverContext(
        observer_type=codes_dcm_device(),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=equipment.station, manufacturer_name=PRODUCT, model_name=record.model.name
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.ULTRASONOGRAPHY_OF_ABDOMEN,
        imaging_measurements=[_group(record, study, hd)],
    )
    evidence = [_stub(study, e) for e in study.evidence] or [_stub(study, None)]
    ended = dt.datetime.fromtimestamp(record.ended, dt.UTC)
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=uids[1],
        series_number=REPORT_SERIES_NUMBER,
        sop_instance_uid=uids[0],
        instance_number=1,
        manufacturer=PRODUCT,
        is_complete=True,
        record_evidence=bool(study.evidence),
        series_description="AI result: fatty liver (research use)",
        content_date=ended.date(),
        content_time=ended.time(),
        contributing_equipment=[contributing(equipment, record)],
    )
    sr.CodingSchemeIdentificationSequence = [private_scheme()]
    return sr


def private_scheme() -> Dataset:
    """The private coding scheme declared in the document, as PS3.3 C.12.1.1.2 asks of a scheme not in PS3.16."""
    item = Dataset()
    item.CodingSchemeDesignator = codes.PRIVATE_SCHEME
    item.CodingSchemeName = "fatty-liver-edge concepts (docs/ARCHITECTURE.md, 'The PACS report')"
    item.CodingSchemeResponsibleOrganization = PRODUCT
    return item


def codes_dcm_device() -> Any:
    from pydicom.sr.codedict import codes as dicom_codes

    return dicom_codes.DCM.Device


def contributing(equipment: Equipment, record: ExamRecord) -> Any:
    """This product as the processing equipment (IHE AIR: the AI result's Contributing Equipment)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes as dicom_codes

    return hd.ContributingEquipment(
        manufacturer=PRODUCT,
        purpose_of_reference=dicom_codes.DCM.ProcessingEquipment,
        manufacturer_model_name=f"{record.model.name} {record.model.version}"[:64],
        software_versions=equipment.software_version,
        device_serial_number=equipment.serial or None,
        station_name=equipment.station,
    )


@dataclass(frozen=True)
class ReportedValues:
    """What a report states, read back from the document with highdicom (as a PACS viewer or a registry would)."""

    study_uid: str
    sop_instance_uid: str
    call: str
    why: str | None
    pdff: float | None
    pdff_interval: tuple[float, float] | None
    p_fatty: float | None
    source_images: tuple[str, ...]


def read_report(source: Any) -> ReportedValues:
    """A report's statements from its file or dataset; a ValueError when it is not this product's report."""
    import highdicom as hd

    sr = hd.sr.srread(source) if not isinstance(source, Dataset) else hd.sr.Comprehensive3DSR.from_dataset(source)
    groups = sr.content.get_image_measurement_groups()
    if len(groups) != 1:
        raise ValueError(f"expected one measurement group, found {len(groups)}")
    group = groups[0]
    values = {m.name.value: float(m.value) for m in group.get_measurements()}
    judged = {q.name.value: q.value for q in group.get_qualitative_evaluations()}
    calls = {code.value: name for name, code in codes.CALLS.items()}
    why = judged.get(codes.WHY_INDETERMINATE.value)
    interval = (codes.FAT_FRACTION_LOWER.value, codes.FAT_FRACTION_UPPER.value)
    return ReportedValues(
        study_uid=str(sr.StudyInstanceUID),
        sop_instance_uid=str(sr.SOPInstanceUID),
        call=calls[judged[codes.STEATOSIS_OF_LIVER.value].value],
        why=why.meaning if why is not None else None,
        pdff=values.get(codes.FAT_FRACTION.value),
        pdff_interval=(values[interval[0]], values[interval[1]]) if interval[0] in values else None,
        p_fatty=values.get(codes.P_FATTY.value),
        source_images=tuple(s.referenced_sop_instance_uid for s in group.source_images),
    )
