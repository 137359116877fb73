"""The reference standard as a hospital holds it: MRI-PDFF results, one per row of a CSV list, or one per
Observation of a FHIR ``Bundle`` as an EHR exports them (JSON; validated by ``fhir.resources``, R5 or R4B).

A CSV row has ``patient_id``, ``accession`` (either may be empty, not both), ``mri_date`` (ISO) and ``pdff`` (%). An
Observation gives the patient as ``subject.identifier`` (or the ``Patient/ID`` it references), the accession number
as an identifier of type ``ACSN`` (HL7 v2 table 0203) on itself or on the request it is ``basedOn``, the date as
``effectiveDateTime`` (or the start of ``effectivePeriod``) and the PDFF as ``valueQuantity`` in ``%``.

Reading never stops at a bad row: every row that cannot be used is refused by name with its reason (a missing
identifier, a date or value that is not one, a duplicate), and every good row is kept.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.errors import FattyLiverError

CSV_COLUMNS = ("patient_id", "accession", "mri_date", "pdff")
ACCESSION_TYPE = "ACSN"  # HL7 v2 table 0203: accession identifier
FINAL_STATUSES = {"final", "amended", "corrected"}
PDFF_WORDS = ("pdff", "fat fraction")  # an Observation's code says what it measures in one of these words


class ReferenceError(FattyLiverError):
    """The reference file cannot be read at all (not CSV with the columns, not a FHIR Bundle); the message says why."""


@dataclass(frozen=True)
class ReferenceResult:
    """One MRI-PDFF result: whose, when, how much, and where in the file it was read."""

    where: str  # "pdff.csv row 4" or "observations.json entry 3 (Observation/abc)"
    patient_id: str
    accession: str
    mri_date: dt.date
    pdff: float

    @property
    def key(self) -> tuple[str, str, dt.date]:
        return self.patient_id, self.accession, self.mri_date


@dataclass
class ReferenceList:
    """Every usable result of one file, and every refused row with its reason."""

    source: Path
    results: list[ReferenceResult] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "<where>: <why>"

    def add(self, result: ReferenceResult) -> None:
        """Keep a result unless it repeats an earlier one (same patient, accession and date): then refuse it."""
        earlier = next((r for r in self.results if r.key == result.key), None)
        if earlier is None:
            self.results.append(result)
        elif earlier.pdff == result.pdff:
            self.refused.append(f"{result.where}: duplicate of {earlier.where}")
        else:
            self.refused.append(f"{result.where}: contradicts {earlier.where} ({result.pdff:g} vs {earlier.pdff:g} %)")


def read_reference(path: str | Path) -> ReferenceList:
    """The results of a reference file: a FHIR Bundle when it is JSON, a CSV list otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReferenceError(f"{path}: cannot read the reference list ({exc})") from None
    if text.lstrip().startswith("{"):
        return _read_fhir(path, text)
    return _read_csv(path, text)


def _read_csv(path: Path, text: str) -> ReferenceList:
    rows = csv.DictReader(text.splitlines())
    missing = [c for c in CSV_COLUMNS if c not in (rows.fieldnames or [])]
    if missing:
        raise ReferenceError(f"{path}: not a reference list: no column {', '.join(missing)} (needs {CSV_COLUMNS})")
    out = ReferenceList(path)
    for number, row in enumerate(rows, start=2):
        where = f"{path.name} row {number}"
        try:
            out.add(_result(where, row.get("patient_id"), row.get("accession"), row.get("mri_date"), row.get("pdff")))
        except ValueError as exc:
            out.refused.append(f"{where}: {exc}")
    return out


def _result(where: str, patient: Any, accession: Any, date: Any, pdff: Any) -> ReferenceResult:
    """One result from its four facts, or ValueError saying which fact is wrong."""
    patient, accession = (str(patient or "").strip(), str(accession or "").strip())
    if not patient and not accession:
        raise ValueError("neither a patient ID nor an accession number")
    try:
        day = date if isinstance(date, dt.date) else dt.date.fromisoformat(str(date or "").strip()[:10])
    except ValueError:
        raise ValueError(f"MRI date {date!r} is not an ISO date (YYYY-MM-DD)") from None
    try:
        value = float(str(pdff).strip())
    except ValueError:
        raise ValueError(f"PDFF {pdff!r} is not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 100.0:
        raise ValueError(f"PDFF {value:g} is not a percentage in 0-100")
    return ReferenceResult(where, patient, accession, day, round(value, 3))


def _read_fhir(path: Path, text: str) -> ReferenceList:
    bundle = _validated_bundle(path, text)
    included = {e.fullUrl: e.resource for e in bundle.entry or [] if e.fullUrl and e.resource is not None}
    out = ReferenceList(path)
    for number, entry in enumerate(bundle.entry or [], start=1):
        resource = entry.resource
        if resource is None or resource.get_resource_type() != "Observation":
            continue  # patients and requests travel with the observations; only observations are results
        where = f"{path.name} entry {number} (Observation/{resource.id or '?'})"
        try:
            out.add(_observation(where, resource, included))
        except ValueError as exc:
            out.refused.append(f"{where}: {exc}")
    return out


BUNDLE_TYPES = frozenset(
    [
        "document",
        "message",
        "transaction",
        "transaction-response",
        "batch",
        "batch-response",
        "history",
        "searchset",
        "collection",
        "subscription-notification",
    ]
)


def _validated_bundle(path: Path, text: str) -> Any:
    """The Bundle as fhir.resources models (R5, else R4B), or ReferenceError with the validator's first words."""
    try:
        from fhir.resources.bundle import Bundle
        from fhir.resources.R4B.bundle import Bundle as BundleR4B
    except ImportError:  # the bedside image holds no FHIR models; the CSV form needs none
        raise ReferenceError(
            f"{path}: a FHIR Bundle needs the FHIR models (pip install 'fatty-liver-edge[site]'); or give the CSV form"
        ) from None

    try:
        if json.loads(text).get("resourceType") != "Bundle":
            raise ReferenceError(f"{path}: JSON, but not a FHIR Bundle (resourceType is not 'Bundle')")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ReferenceError(f"{path}: not JSON ({exc})") from None
    problems = []
    for model in (Bundle, BundleR4B):
        try:
            bundle = model.model_validate_json(text)
        except ValueError as exc:
            problems.append(str(exc).splitlines()[0:3])
            continue
        if bundle.type not in BUNDLE_TYPES:  # the models check a code's form, not its value set
            raise ReferenceError(f"{path}: not a valid FHIR Bundle: type {bundle.type!r} is not a Bundle type")
        return bundle
    raise ReferenceError(f"{path}: not a valid FHIR Bundle (R5 or R4B): {' '.join(problems[0])}")


def _observation(where: str, obs: Any, included: dict[str, Any]) -> ReferenceResult:
    if obs.status not in FINAL_STATUSES:
        raise ValueError(f"status {obs.status!r}: only final, amended or corrected results are a reference")
    words = " ".join(_code_words(obs.code)).lower()
    if not any(w in words for w in PDFF_WORDS):
        raise ValueError(f"not a PDFF result (its code says {words or 'nothing'!r})")
    quantity = obs.valueQuantity
    if quantity is None or quantity.value is None:
        raise ValueError("no valueQuantity")
    if (quantity.code or quantity.unit) not in ("%", "percent"):
        raise ValueError(f"PDFF in {quantity.code or quantity.unit!r}, not %")
    date = obs.effectiveDateTime or (obs.effectivePeriod.start if obs.effectivePeriod else None)
    if date is None:
        raise ValueError("no effectiveDateTime")
    return _result(where, _patient_id(obs, included), _accession(obs, included), _as_date(date), quantity.value)


def _as_date(value: Any) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else dt.date.fromisoformat(str(value)[:10])


def _code_words(code: Any) -> Iterator[str]:
    if code is None:
        return
    yield code.text or ""
    for coding in code.coding or []:
        yield coding.display or ""
        yield coding.code or ""


def _patient_id(obs: Any, included: dict[str, Any]) -> str:
    """The patient's identifier: on the reference itself, on an included Patient, or the id the reference names."""
    subject = obs.subject
    if subject is None:
        return ""
    if subject.identifier is not None and subject.identifier.value:
        return subject.identifier.value
    patient = included.get(subject.reference or "") or next(
        (r for url, r in included.items() if subject.reference and url.endswith(subject.reference)), None
    )
    if patient is not None and patient.identifier:
        return patient.identifier[0].value or ""
    reference = subject.reference or ""
    return reference.split("/", 1)[1] if reference.startswith("Patient/") else ""


def _accession(obs: Any, included: dict[str, Any]) -> str:
    """An accession identifier (type ACSN) on the Observation, on its basedOn reference or on the request it names."""
    identifiers = list(obs.identifier or [])
    for based in obs.basedOn or []:
        if based.identifier is not None:
            identifiers.append(based.identifier)
        request = included.get(based.reference or "")
        identifiers += list(getattr(request, "identifier", None) or [])
    for identifier in identifiers:
        codes = [c.code for c in (identifier.type.coding or [])] if identifier.type else []
        if ACCESSION_TYPE in codes and identifier.value:
            return identifier.value
    return ""
