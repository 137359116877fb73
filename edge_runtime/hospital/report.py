"""An ended exam as the IHE AI Results report: a Comprehensive 3D SR holding a TID 1500 measurement report with one
TID 1501 group, in the exam's own study and a new series, written with highdicom.

The group holds the call as a qualitative evaluation of steatosis of the liver (present, absent, indeterminate, and
why when indeterminate), the PDFF estimate with its interval and the interval's coverage, p_fatty and the call's
coverage, the number of image pairs, the algorithm (TID 4019: the bundle's name, version, SHA-256 and site
adaptation) and, when the exam came over DICOM, the images that contributed as its source images. The SR's
Contributing Equipment names this product as the processing equipment, as IHE AIR asks.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from edge_runtime.contracts import ExamRecord, FollowUp, PriorReport
from edge_runtime.followup.change import lineage
from edge_runtime.hospital import codes
from edge_runtime.pipeline.studies import Evidence, HriEvidence
from edge_runtime.sources.dicom.attributes import patient_study_attributes
from edge_runtime.sources.dicom.sop import MULTI_FRAME_STORAGE

PRODUCT = "fatty-liver-edge"
REPORT_SERIES_NUMBER = 9701
REPORT_SERIES_DESCRIPTION = "AI result: fatty liver (research use)"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


@dataclass(frozen=True)
class StudyContext:
    """What a report inherits from its study: the patient and study modules (from a stored image, or the Modality
    Worklist), in UTF-8, and the images that contributed. It lives only inside the queued report, which is deleted
    once sent."""

    attributes: Dataset  # only edge_runtime.sources.dicom.attributes.PATIENT_STUDY_KEYWORDS, in UTF-8
    evidence: tuple[Evidence, ...] = ()
    hri: HriEvidence | None = None  # the frame the hepatorenal index is shown on, with both regions

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
    def from_json(
        cls, attributes: Mapping[str, Any], evidence: Sequence[Evidence] = (), hri: HriEvidence | None = None
    ) -> StudyContext:
        """The context from attributes as they travel (DICOM JSON, edge_runtime.pipeline.studies)."""
        return cls(Dataset.from_json(dict(attributes)), tuple(evidence), hri)


@dataclass(frozen=True)
class Equipment:
    """This box as the report names it."""

    station: str  # the box's AE title
    software_version: str
    serial: str = ""


def _stub(study: StudyContext, evidence: Evidence | None) -> Dataset:
    """An evidence dataset as highdicom reads one: the study's attributes and, for a real image, its identity."""
    ds = Dataset()
    ds.update(copy.deepcopy(study.attributes))  # its own elements: setting one never changes the study's or a sibling's
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
    if exam.get("pdff_se") is not None:
        out.append(num(codes.REPEAT_ERROR, exam["pdff_se"], codes.NO_UNITS))
    hri = exam.get("hri") or {}
    if hri.get("value") is not None:
        low, high = hri["interval"]
        out += [num(codes.HEPATORENAL_INDEX, hri["value"], codes.NO_UNITS)]
        out += [num(codes.HEPATORENAL_INDEX_LOWER, low, codes.NO_UNITS)]
        out += [num(codes.HEPATORENAL_INDEX_UPPER, high, codes.NO_UNITS)]
        out += [num(codes.HEPATORENAL_FRAMES, hri["frames"], codes.NO_UNITS)]
    return out


def _evaluations(exam: dict[str, Any], hd: Any) -> list:
    call = exam.get("call") or "indeterminate"
    out = [hd.sr.QualitativeEvaluation(codes.STEATOSIS_OF_LIVER, codes.CALLS[call])]
    if call == "indeterminate":
        out.append(hd.sr.QualitativeEvaluation(codes.WHY_INDETERMINATE, codes.why_code(exam.get("why"))))
    return out


def _group(record: ExamRecord, study: StudyContext, hd: Any, followup: FollowUp | None = None) -> Any:
    """The TID 1501 group: the measurements, the call, the algorithm, the source images, and the comparison with
    the prior report when one was asked for."""
    model = record.model
    parameters = [f"sha {model.sha}", f"site {model.site or 'none (as trained)'}"]
    parameters += [f"scanner {record.scanner}"] if record.scanner else []
    sources = [hd.sr.SourceImageForMeasurementGroup(e.sop_class, e.sop_instance) for e in study.evidence] or None
    exam = record.exam.model_dump()
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier=f"fatty liver exam {record.session}"[:64]),
        finding_type=codes.STEATOSIS_OF_LIVER,
        finding_sites=[hd.sr.FindingSite(codes.LIVER)],
        algorithm_id=hd.sr.AlgorithmIdentification(name=model.name, version=model.version, parameters=parameters),
        measurements=_measurements(exam, hd),
        qualitative_evaluations=_evaluations(exam, hd),
        source_images=sources,
    )
    if followup is not None:
        group[0].ContentSequence.extend(_followup_items(followup, hd))
    return group


def _region_group(name: str, site: Any, polygon: Sequence, echo: float, shown: HriEvidence, hd: Any, hri: bool) -> Any:
    """A TID 1410 planar ROI group: one region as a closed polygon on the stored frame it was measured on, its mean
    echo, and (on the liver's) that frame's hepatorenal index."""
    import numpy as np

    points = np.array([*polygon, polygon[0]], dtype=np.float32)  # a closed POLYLINE: its last point is its first
    frames = [shown.frame_number] if shown.image.sop_class in MULTI_FRAME_STORAGE else None
    source = hd.sr.SourceImageForRegion(
        shown.image.sop_class, shown.image.sop_instance, referenced_frame_numbers=frames
    )
    measurements = [hd.sr.Measurement(name=codes.MEAN_ECHO, value=float(echo), unit=codes.NO_UNITS)]
    if hri:
        measurements.append(hd.sr.Measurement(name=codes.HEPATORENAL_INDEX, value=shown.value, unit=codes.NO_UNITS))
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier=name, uid=hd.UID()),
        referenced_region=hd.sr.ImageRegion(hd.sr.GraphicTypeValues.POLYLINE, points, source),
        finding_type=codes.HEPATORENAL_INDEX,
        finding_sites=[hd.sr.FindingSite(site)],
        measurements=measurements,
    )


def _hri_groups(study: StudyContext, hd: Any) -> list:
    """Both regions of the frame the exam's HRI is shown on, as a viewer draws them (none when none was measured)."""
    shown = study.hri
    if shown is None:
        return []
    return [
        _region_group("liver region", codes.LIVER, shown.liver_region, shown.liver_echo, shown, hd, hri=True),
        _region_group(
            "renal cortex region", codes.KIDNEY, shown.cortex_region, shown.cortex_echo, shown, hd, hri=False
        ),
    ]


def _followup_items(followup: FollowUp, hd: Any) -> list:
    """The comparison with the prior report: the coded statement, its words, the change with its interval, and the
    prior report itself, in the exam's group."""
    said = hd.sr.CodeContentItem(codes.CHANGE_SINCE_PRIOR, codes.CHANGES[followup.statement], "CONTAINS")
    items = [said, hd.sr.TextContentItem(codes.FOLLOW_UP_SAID, followup.reason[:1024], "CONTAINS")]
    if followup.change is not None:
        said_values = (followup.change, *followup.change_interval)
        for code, value in zip((codes.CHANGE, codes.CHANGE_LOWER, codes.CHANGE_UPPER), said_values, strict=True):
            items.append(hd.sr.NumContentItem(code, float(value), codes.PERCENT, relationship_type="CONTAINS"))
    if followup.prior is not None:
        prior = followup.prior.sop_instance_uid
        items.append(hd.sr.CompositeContentItem(codes.PRIOR_REPORT, COMPREHENSIVE_3D_SR, prior, "CONTAINS"))
    return items


def _prior_stub(study: StudyContext, prior: PriorReport) -> Dataset:
    """The prior report as evidence: highdicom lists it under Pertinent Other Evidence (another study of the
    patient)."""
    ds = _stub(study, None)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = prior.study_instance_uid, prior.series_instance_uid
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = COMPREHENSIVE_3D_SR, prior.sop_instance_uid, "SR"
    return ds


def build_report(
    record: ExamRecord,
    study: StudyContext,
    equipment: Equipment,
    uids: tuple[str, str],
    followup: FollowUp | None = None,
) -> Dataset:
    """The exam's SR document in its study.

    Args:
        record: the exam's final record (its answer, model and session).
        study: the patient, study and contributing images.
        equipment: this box, as the report names it.
        uids: the report's SOP Instance UID and its series' UID (kept for every resend: the PACS never holds two).
        followup: the comparison with the patient's previous report (None: not asked).
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
        imaging_measurements=[_group(record, study, hd, followup), *_hri_groups(study, hd)],
    )
    evidence = [_stub(study, e) for e in study.evidence] or [_stub(study, None)]
    prior = followup.prior if followup is not None else None
    evidence += [_prior_stub(study, prior)] if prior is not None else []
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
        record_evidence=bool(study.evidence) or prior is not None,
        series_description=REPORT_SERIES_DESCRIPTION,
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
class ShownRegion:
    """A region a report draws: its name, polygon (image pixels), the image and frame, and its mean echo."""

    name: str
    polygon: tuple[tuple[float, float], ...]
    sop_instance_uid: str
    frame_number: int
    mean_echo: float
    series_uid: str = ""  # the image's series, as the report's evidence lists it ('' when it does not)


def image_series(sr: Dataset, sop_instance_uid: str) -> str:
    """The series the report's evidence lists an image in ('' when none does), so a viewer fetches only that series
    rather than a study whose cine loops may run to hundreds of megabytes."""
    for evidence in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in sr.get(evidence, []):
            for series in study.get("ReferencedSeriesSequence", []):
                listed = {str(i.ReferencedSOPInstanceUID) for i in series.get("ReferencedSOPSequence", [])}
                if sop_instance_uid in listed:
                    return str(series.SeriesInstanceUID)
    return ""


def _shown_regions(sr: Any) -> tuple[ShownRegion, ...]:
    """Every planar ROI group's region as a viewer reads it: the SCOORD, the image it is drawn on and its series."""
    out = []
    for group in sr.content.get_planar_roi_measurement_groups():
        scoord = group.roi
        reference = scoord.ContentSequence[0].ReferencedSOPSequence[0]
        echo = next(float(m.value) for m in group.get_measurements() if m.name.value == codes.MEAN_ECHO.value)
        points = tuple((float(x), float(y)) for x, y in scoord.value[:-1])  # the closing point repeats the first
        frame = int(reference.get("ReferencedFrameNumber", 1))
        uid = str(reference.ReferencedSOPInstanceUID)
        out.append(ShownRegion(str(group.tracking_identifier), points, uid, frame, echo, image_series(sr, uid)))
    return tuple(out)


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
    hri: float | None = None
    hri_regions: tuple[ShownRegion, ...] = ()
    patient: str = ""  # name and ID, as the study's patient module holds them
    study_date: str = ""
    model: str = ""  # the bundle's name and version (the Contributing Equipment's model name)
    pdff_se: float | None = None
    n_pairs: int = 0
    why_code: str | None = None  # the coded reason's value (edge_runtime.hospital.codes.WHY)
    lineage: str = ""  # the bundle's name and site adaptation (edge_runtime.followup.change.lineage_of)
    scanner: str | None = None
    series_uid: str = ""
    change: str | None = None  # the follow-up statement (edge_runtime.contracts.Change), when one was made
    change_said: str | None = None
    prior_report: str | None = None  # the SOP Instance UID of the prior report compared


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
        hri=values.get(codes.HEPATORENAL_INDEX.value),
        hri_regions=_shown_regions(sr),
        patient=f"{sr.get('PatientName', '') or ''} ({sr.get('PatientID', '') or 'no ID'})",
        study_date=str(sr.get("StudyDate", "") or ""),
        model=_model_name(sr),
        pdff_se=values.get(codes.REPEAT_ERROR.value),
        n_pairs=int(values.get(codes.IMAGE_PAIRS.value, 0)),
        why_code=why.value if why is not None else None,
        series_uid=str(sr.SeriesInstanceUID),
        **_algorithm(group[0]),
        **_followup_read(group[0]),
    )


def _items(container: Any) -> dict[str, list[Any]]:
    """A container's content items by their concept's code value."""
    out: dict[str, list[Any]] = {}
    for item in container.ContentSequence:
        out.setdefault(str(item.ConceptNameCodeSequence[0].CodeValue), []).append(item)
    return out


def _algorithm(container: Any) -> dict[str, Any]:
    """The lineage (name and site) and scanner a report's TID 4019 algorithm identification states."""
    items = _items(container)
    name = str(items["111001"][0].TextValue) if "111001" in items else ""
    parameters = [str(i.TextValue) for i in items.get("111002", [])]
    said = dict(p.split(" ", 1) for p in parameters if " " in p)
    site = said.get("site", "")
    site = "" if site.startswith("none") else site
    return {"lineage": lineage(name, site or None), "scanner": said.get("scanner")}


def _followup_read(container: Any) -> dict[str, Any]:
    items = _items(container)
    if codes.CHANGE_SINCE_PRIOR.value not in items:
        return {}
    coded = str(items[codes.CHANGE_SINCE_PRIOR.value][0].ConceptCodeSequence[0].CodeValue)
    statement = next(change.value for change, code in codes.CHANGES.items() if code.value == coded)
    prior = items.get(codes.PRIOR_REPORT.value)
    said = items.get(codes.FOLLOW_UP_SAID.value)
    return {
        "change": statement,
        "change_said": str(said[0].TextValue) if said else None,
        "prior_report": str(prior[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID) if prior else None,
    }


def _model_name(sr: Any) -> str:
    equipment = sr.get("ContributingEquipmentSequence") or []
    return str(equipment[0].get("ManufacturerModelName", "")) if equipment else ""
