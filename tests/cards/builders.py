"""Minimal FHIR R4 resources (plain dicts) for the unit tests of the core (cards/).

Codes here are written out from shared/reference/clinical-codes.md, not imported from cards.terminology,
so that a wrong code table in the core makes a test fail instead of agreeing with itself.
Every builder returns a resource that validates against the fhir.resources R4B model (see test_record.py).
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cards.record import PatientRecord

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
UCUM = "http://unitsofmeasure.org"

PATIENT_ID = "p1"
NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
TODAY = NOW.date()

# Ingredient RxNorm codes (clinical-codes.md §4.1).
RXNORM_INGREDIENT = {
    "atezolizumab": "1792776", "bevacizumab": "253337", "durvalumab": "1919503", "nivolumab": "1597876",
    "ipilimumab": "1094833", "pembrolizumab": "1547545", "sorafenib": "495881", "lenvatinib": "1603296",
    "regorafenib": "1312397", "cabozantinib": "1363268", "ramucirumab": "1535922",
}

_ids = itertools.count(1)


def _next_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def ago(days: int) -> str:
    """ISO date ``days`` before TODAY (negative: in the future)."""
    return (TODAY - timedelta(days=days)).isoformat()


def iso(value: date | str) -> str:
    return value if isinstance(value, str) else value.isoformat()


def concept(code: str, system: str, display: str | None = None, text: str | None = None) -> dict:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    result: dict[str, Any] = {"coding": [coding]}
    if text:
        result["text"] = text
    return result


def patient(pid: str = PATIENT_ID, birth_date: str | None = "1961-03-15", **extra: Any) -> dict:
    """A Patient (62–65 years old in these tests unless ``birth_date`` says otherwise)."""
    result: dict = {"resourceType": "Patient", "id": pid, **extra}
    if birth_date:
        result["birthDate"] = birth_date
    return result


def record(*resources: dict) -> PatientRecord:
    """A PatientRecord holding the patient and the given resources."""
    return PatientRecord([patient(), *resources])


# -- Observations -----------------------------------------------------------------------------------
def observation(code: str, value: float | None = None, unit: str | None = None, when: date | str | None = None,
                *, oid: str | None = None, status: str | None = "final", system: str = LOINC,
                ucum: bool = True, value_integer: int | None = None, value_concept: dict | None = None,
                interpretation: dict | None = None, date_field: str = "effectiveDateTime") -> dict:
    """An Observation with a numeric ``valueQuantity`` (UCUM-coded unless ``ucum`` is False), an integer or
    a coded value. ``unit=None`` gives a quantity without any unit."""
    obs: dict[str, Any] = {"resourceType": "Observation", "id": oid or _next_id("obs"),
                           "code": concept(code, system), "subject": {"reference": f"Patient/{PATIENT_ID}"}}
    if status is not None:  # None: no status at all (R4 requires one)
        obs["status"] = status
    if when is not None:
        if date_field == "effectivePeriod":
            obs["effectivePeriod"] = {"start": iso(when)}
        elif date_field == "issued":
            obs["issued"] = f"{iso(when)}T08:00:00Z"
        else:
            obs[date_field] = iso(when)
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if unit is not None:
            quantity["unit"] = unit
            if ucum:
                quantity["system"] = UCUM
                quantity["code"] = unit
        obs["valueQuantity"] = quantity
    if value_integer is not None:
        obs["valueInteger"] = value_integer
    if value_concept is not None:
        obs["valueCodeableConcept"] = value_concept
    if interpretation is not None:
        obs["interpretation"] = [interpretation]
    return obs


def albumin(value: float, unit: str, when: date | str, **kwargs: Any) -> dict:
    return observation(kwargs.pop("code", "1751-7"), value, unit, when, **kwargs)


def bilirubin(value: float, unit: str, when: date | str, **kwargs: Any) -> dict:
    return observation(kwargs.pop("code", "1975-2"), value, unit, when, **kwargs)


def ecog(value: int, when: date | str, **kwargs: Any) -> dict:
    return observation("89247-1", when=when, value_integer=value, **kwargs)


def karnofsky(value: int, when: date | str, **kwargs: Any) -> dict:
    return observation("89243-0", when=when, value_integer=value, **kwargs)


def afp(value: float, unit: str, when: date | str, code: str = "1834-1", **kwargs: Any) -> dict:
    return observation(code, value, unit, when, **kwargs)


def weight(value: float, unit: str, when: date | str, **kwargs: Any) -> dict:
    return observation("29463-7", value, unit, when, **kwargs)


def inr(value: float, when: date | str, unit: str | None = "{INR}", **kwargs: Any) -> dict:
    return observation(kwargs.pop("code", "6301-6"), value, unit, when, **kwargs)


def disease_status(snomed_code: str, when: date | str, code: str = "97509-4") -> dict:
    return observation(code, when=when, value_concept=concept(snomed_code, SNOMED))


def tumor_size(lesion_id: str, size: float, when: date | str, *, unit: str = "mm", oid: str | None = None) -> dict:
    """mCODE TumorSize: 21889-1 with component 33728-7 (longest dimension), focus -> BodyStructure."""
    obs = observation("21889-1", when=when, oid=oid)
    obs["focus"] = [{"reference": f"BodyStructure/{lesion_id}"}]
    obs["component"] = [{"code": concept("33728-7", LOINC),
                         "valueQuantity": {"value": size, "unit": unit, "system": UCUM, "code": unit}}]
    return obs


def body_structure(lesion_id: str, organ_snomed: str | None = None, *, description: str | None = None,
                   location_text: str | None = None) -> dict:
    resource: dict[str, Any] = {"resourceType": "BodyStructure", "id": lesion_id,
                                "patient": {"reference": f"Patient/{PATIENT_ID}"}}
    if organ_snomed or location_text:
        location: dict[str, Any] = {}
        if organ_snomed:
            location["coding"] = [{"system": SNOMED, "code": organ_snomed}]
        if location_text:
            location["text"] = location_text
        resource["location"] = location
    if description:
        resource["description"] = description
    return resource


# -- Conditions -------------------------------------------------------------------------------------
def condition(code: str, onset: date | str | None = None, *, system: str | None = None,
              verification: str | None = "confirmed", clinical: str | None = "active", severity: str | None = None,
              recorded: date | str | None = None, cid: str | None = None, text: str | None = None) -> dict:
    """A Condition coded in ICD-10-CM or SNOMED CT (all-digit codes are taken as SNOMED unless ``system``)."""
    system = system or (SNOMED if code.isdigit() else ICD10CM)
    cond: dict[str, Any] = {"resourceType": "Condition", "id": cid or _next_id("cond"),
                            "code": concept(code, system, text=text),
                            "subject": {"reference": f"Patient/{PATIENT_ID}"}}
    if clinical:
        cond["clinicalStatus"] = concept(clinical, "http://terminology.hl7.org/CodeSystem/condition-clinical")
    if verification:
        cond["verificationStatus"] = concept(verification,
                                             "http://terminology.hl7.org/CodeSystem/condition-ver-status")
    if onset is not None:
        cond["onsetDateTime"] = iso(onset)
    if recorded is not None:
        cond["recordedDate"] = iso(recorded)
    if severity:
        cond["severity"] = concept(severity, SNOMED)
    return cond


# -- Medications ------------------------------------------------------------------------------------
def rxnorm(code: str, display: str | None = None) -> dict:
    return concept(code, RXNORM, display)


def atc(code: str) -> dict:
    return concept(code, ATC)


def text_concept(text: str) -> dict:
    return {"text": text}


def drug(name: str) -> dict:
    """Ingredient RxNorm coding when one is verified, else the name as text."""
    if name in RXNORM_INGREDIENT:
        return rxnorm(RXNORM_INGREDIENT[name], name)
    return text_concept(name)


def med_statement(medication: dict | str, start: date | str | None, end: date | str | None = None,
                  status: str | None = None, status_reason: str | None = None, *, mid: str | None = None,
                  contained: list[dict] | None = None, reference: str | None = None,
                  date_asserted: date | str | None = None) -> dict:
    """A MedicationStatement. ``medication``: a CodeableConcept, or a drug name (see ``drug``).

    Default status: ``stopped`` with a status reason, ``completed`` with an end date, else ``active``.
    ``reference`` (e.g. "#med") uses medicationReference instead of a CodeableConcept.
    """
    if status is None:
        status = "stopped" if status_reason else ("completed" if end else "active")
    statement: dict[str, Any] = {"resourceType": "MedicationStatement", "id": mid or _next_id("ms"),
                                 "status": status, "subject": {"reference": f"Patient/{PATIENT_ID}"}}
    if contained:
        statement["contained"] = contained
    if reference:
        statement["medicationReference"] = {"reference": reference}
    else:
        statement["medicationCodeableConcept"] = drug(medication) if isinstance(medication, str) else medication
    if start is not None or end is not None:
        period: dict[str, str] = {}
        if start is not None:
            period["start"] = iso(start)
        if end is not None:
            period["end"] = iso(end)
        statement["effectivePeriod"] = period
    if status_reason:
        statement["statusReason"] = [concept(status_reason, SNOMED)]
    if date_asserted:
        statement["dateAsserted"] = iso(date_asserted)
    return statement


def medication(mid: str, code_concept: dict) -> dict:
    return {"resourceType": "Medication", "id": mid, "code": code_concept}


# -- AdverseEvent -----------------------------------------------------------------------------------
def adverse_event(event: dict | str | None, when: date | str | None, *, suspect: str | None = None,
                  severity: str | None = None, text: str | None = None, aid: str | None = None) -> dict:
    """An AdverseEvent; ``event`` is a CodeableConcept or an ICD-10-CM code; ``suspect`` a reference such as
    "MedicationStatement/ms-1"; ``severity`` mild | moderate | severe."""
    resource: dict[str, Any] = {"resourceType": "AdverseEvent", "id": aid or _next_id("ae"), "actuality": "actual",
                                "subject": {"reference": f"Patient/{PATIENT_ID}"}}
    if isinstance(event, str):
        event = concept(event, ICD10CM, text=text)
    elif event is not None and text:
        event = {**event, "text": text}
    elif event is None and text:
        event = {"text": text}
    if event is not None:
        resource["event"] = event
    if when is not None:
        resource["date"] = iso(when)
    if suspect:
        resource["suspectEntity"] = [{"instance": {"reference": suspect}}]
    if severity:
        resource["severity"] = concept(severity, "http://terminology.hl7.org/CodeSystem/adverse-event-severity")
    return resource
