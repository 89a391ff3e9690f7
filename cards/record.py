"""PatientRecord: the patient's FHIR resources, indexed by type, validated lazily with fhir.resources (R4).

A resource is parsed with its ``fhir.resources.R4B`` model the first time the core uses it; one that fails R4
validation is skipped and remembered, so the data-quality card can name it (service-contract.md §6). Only the
resources the rules actually look at are parsed, which keeps a 2,000-Observation record fast.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from importlib import import_module
from typing import Any

from pydantic import ValidationError

from . import terminology as t

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_OBSERVATION_OK = {"final", "amended", "corrected"}
_CONDITION_EXCLUDED = {"refuted", "entered-in-error"}

_MODEL_MODULES = {
    "AdverseEvent": "adverseevent", "BodyStructure": "bodystructure", "Condition": "condition",
    "Medication": "medication", "MedicationAdministration": "medicationadministration",
    "MedicationRequest": "medicationrequest", "MedicationStatement": "medicationstatement",
    "Observation": "observation", "Patient": "patient",
}


def parse_date(value: object) -> date | None:
    """FHIR date/dateTime/instant (any precision) -> date; partial dates take the first day."""
    if not isinstance(value, str):
        return None
    match = _DATE.match(value)
    if not match:
        return None
    year, month, day = match.group(1), match.group(2) or "01", match.group(3) or "01"
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        return None


def list_of(value: object) -> list:
    """A FHIR repeating element read defensively: the list, or empty when absent or mistyped."""
    return value if isinstance(value, list) else []


def codings(concept: object) -> Iterator[tuple[str, str]]:
    """(system, code) pairs of a CodeableConcept (or a list of them); ICD-10-CM codes normalised."""
    concepts = concept if isinstance(concept, list) else [concept]
    for item in concepts:
        if not isinstance(item, dict):
            continue
        for coding in list_of(item.get("coding")):
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                system = coding.get("system") if isinstance(coding.get("system"), str) else ""
                code = coding["code"].strip()
                yield system, (t.normalise_icd10(code) if system == t.ICD10CM else code)


def has_code(concept: object, system: str, codes: Iterable[str]) -> bool:
    wanted = set(codes)
    return any(s == system and c in wanted for s, c in codings(concept))


def concept_text(concept: object) -> str:
    """The human text of a CodeableConcept: ``text``, else the first coding display."""
    if not isinstance(concept, dict):
        return ""
    if isinstance(concept.get("text"), str):
        return concept["text"]
    for coding in list_of(concept.get("coding")):
        if isinstance(coding, dict) and isinstance(coding.get("display"), str):
            return coding["display"]
    return ""


def observation_date(obs: dict) -> date | None:
    period = obs.get("effectivePeriod") if isinstance(obs.get("effectivePeriod"), dict) else {}
    return parse_date(obs.get("effectiveDateTime")) or parse_date(period.get("start")) or parse_date(
        obs.get("effectiveInstant")) or parse_date(obs.get("issued"))


def condition_date(cond: dict) -> date | None:
    period = cond.get("onsetPeriod") if isinstance(cond.get("onsetPeriod"), dict) else {}
    return parse_date(cond.get("onsetDateTime")) or parse_date(period.get("start")) or parse_date(
        cond.get("recordedDate"))


def reference_id(reference: object, resource_type: str) -> str | None:
    """``{"reference": "Type/id"}`` (or a full URL ending so) -> id."""
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return None
    parts = reference["reference"].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == resource_type:
        return parts[-1]
    return None


def _belongs_to(resource: dict, patient_id: str) -> bool:
    """False when the resource's subject/patient reference names another patient (or a non-patient subject)."""
    if resource["resourceType"] == "Patient":
        return resource.get("id") == patient_id
    for name in ("subject", "patient"):
        reference = resource.get(name)
        if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
            parts = reference["reference"].rstrip("/").split("/")
            return len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] == patient_id
    return True  # no subject (e.g. Medication): not patient-specific


@dataclass(frozen=True)
class SkippedResource:
    """A resource that failed R4 validation and was not used."""

    resource_type: str
    resource_id: str
    problem: str


class PatientRecord:
    """The patient's resources by type; lookups return only valid, countable resources."""

    def __init__(self, resources: Iterable[dict], patient_id: str | None = None) -> None:
        """Index ``resources``; with ``patient_id``, resources whose subject/patient is another patient are
        left out (a FHIR server that ignores an unsupported search parameter returns everyone's data)."""
        self._by_type: dict[str, list[dict]] = defaultdict(list)
        self._by_ref: dict[str, dict] = {}
        self.other_patient: list[str] = []
        seen: set[tuple[str, str]] = set()
        for resource in resources:
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                continue
            if patient_id is not None and not _belongs_to(resource, patient_id):
                self.other_patient.append(f"{resource['resourceType']}/{resource.get('id', '?')}")
                continue
            key = (resource["resourceType"], str(resource.get("id", "")))
            if key[1] and key in seen:  # the same resource from prefetch and a FHIR page
                continue
            seen.add(key)
            self._by_type[key[0]].append(resource)
            if key[1]:
                self._by_ref[f"{key[0]}/{key[1]}"] = resource
        self._validity: dict[int, bool] = {}
        self.skipped: list[SkippedResource] = []
        # Observations by (system, code), each with its (defensively read) date: one pass, then cheap lookups.
        self._observations_by_code: dict[tuple[str, str], list[tuple[date, dict]]] = defaultdict(list)
        for obs in self._by_type.get("Observation", ()):
            when = observation_date(obs) or date.min
            for key in set(codings(obs.get("code"))):
                self._observations_by_code[key].append((when, obs))

    # -- validation -------------------------------------------------------------------------------
    def valid(self, resource: dict) -> bool:
        """Validate with the fhir.resources R4 model once; remember failures for the data-quality card."""
        known = self._validity.get(id(resource))
        if known is not None:
            return known
        rtype = resource.get("resourceType", "")
        module = _MODEL_MODULES.get(rtype)
        ok = True
        if module:
            model = getattr(import_module(f"fhir.resources.R4B.{module}"), rtype)
            candidate = resource
            if rtype == "Observation" and "status" not in resource:
                # clinical-rules.md §1: an absent Observation status counts like "final"
                candidate = {**resource, "status": "final"}
            try:
                model.model_validate(candidate)
            except (ValidationError, ValueError, TypeError) as exc:
                ok = False
                first = exc.errors()[0] if isinstance(exc, ValidationError) and exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ())) or "resource"
                self.skipped.append(SkippedResource(rtype, str(resource.get("id", "?")),
                                                    f"invalid R4 at {where}"))
        self._validity[id(resource)] = ok
        return ok

    # -- lookups ----------------------------------------------------------------------------------
    def all(self, resource_type: str) -> list[dict]:
        """Every valid resource of a type (validated on first use)."""
        return [r for r in self._by_type.get(resource_type, ()) if self.valid(r)]

    def resolve(self, reference: object, container: dict | None = None) -> dict | None:
        """A referenced resource: contained (``#id``) or in the record (``Type/id``)."""
        if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
            return None
        ref = reference["reference"]
        if ref.startswith("#") and container is not None:
            for contained in container.get("contained") or ():
                if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                    return contained
            return None
        parts = ref.rstrip("/").split("/")
        target = self._by_ref.get("/".join(parts[-2:])) if len(parts) >= 2 else None
        return target if target is not None and self.valid(target) else None

    def countable(self, obs: dict) -> bool:
        """A valid Observation whose status counts: final, amended, corrected or absent (clinical-rules.md §1)."""
        return self.valid(obs) and obs.get("status", "final") in _OBSERVATION_OK

    def observation_candidates(self, codes: Iterable[str], system: str = t.LOINC) -> list[tuple[date, dict]]:
        """(date, Observation) with one of the codes, newest first — NOT yet validated (see ``countable``)."""
        found: dict[int, tuple[date, dict]] = {}
        for code in codes:
            for item in self._observations_by_code.get((system, code), ()):
                found[id(item[1])] = item
        return sorted(found.values(), key=lambda item: item[0], reverse=True)

    def observations(self, codes: Iterable[str], system: str = t.LOINC) -> Iterator[dict]:
        """Countable Observations with one of the codes, newest first, validated lazily as they are reached.

        Callers that need only the newest usable value stop early, so a long history is never parsed in full.
        """
        return (obs for _when, obs in self.observation_candidates(codes, system) if self.countable(obs))

    def conditions(self) -> list[dict]:
        """Conditions that count: not refuted, not entered in error (clinicalStatus does not matter)."""
        result = []
        for cond in self.all("Condition"):
            status = {code for _s, code in codings(cond.get("verificationStatus"))}
            if not status & _CONDITION_EXCLUDED:
                result.append(cond)
        return result

    def adverse_events(self) -> list[dict]:
        return [ae for ae in self.all("AdverseEvent") if ae.get("actuality", "actual") == "actual"]

    def count(self, resource_type: str) -> int:
        return len(self._by_type.get(resource_type, ()))

    def raw(self, resource_type: str) -> list[dict[str, Any]]:
        """Unvalidated resources (for lenient parsing of draft orders only)."""
        return list(self._by_type.get(resource_type, ()))
