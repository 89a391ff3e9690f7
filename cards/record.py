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
from datetime import UTC, date, datetime, time
from importlib import import_module
from typing import Any

from pydantic import ValidationError

from . import terminology as t

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
FIRST_DAY = date(1900, 1, 1)  # earlier dates are not plausible for this record and are read as missing
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
        parsed = date(int(year), int(month), int(day))
    except ValueError:
        return None
    return parsed if parsed >= FIRST_DAY else None


def parse_instant(value: object) -> datetime | None:
    """FHIR date/dateTime/instant -> aware datetime (clinical-rules.md §1 "Time"): a date-only value is the start
    of that day (UTC); a dateTime without a zone is read as UTC; a partial date (YYYY, YYYY-MM) its first day."""
    if not isinstance(value, str):
        return None
    try:  # the C parser first: nearly every value in a record is a full date or dateTime ("Z" included)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        day = parse_date(value)
        return datetime.combine(day, time(), UTC) if day else None
    if parsed.year < FIRST_DAY.year or len(value) < 10:
        day = parse_date(value)
        return datetime.combine(day, time(), UTC) if day else None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def as_instant(value: date | datetime) -> datetime:
    """An evaluation time given as a date means the start of that day, like a date-only value (clinical-rules.md
    §1 "Time"); a datetime is made aware (UTC)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value, time(), UTC)


def list_of(value: object) -> list:
    """A FHIR repeating element read defensively: the list, or empty when absent or mistyped."""
    return value if isinstance(value, list) else []


def _canonical_system(system: object) -> str:
    """The canonical URI of a code system written by URI, by OID or with stray spaces or a trailing slash."""
    if not isinstance(system, str):
        return ""
    known = _SYSTEMS.get(system)
    if known is not None:
        return known
    cleaned = system.strip().rstrip("/")
    return t.SYSTEM_ALIASES.get(cleaned, cleaned)


_SYSTEMS = {**{uri: uri for uri in (t.LOINC, t.SNOMED, t.ICD10CM, t.RXNORM, t.ATC, t.UCUM)}, **t.SYSTEM_ALIASES}


def codings(concept: object) -> Iterator[tuple[str, str]]:
    """(system, code) pairs of a CodeableConcept (or a list of them); systems canonical (URI or OID, WHO ICD-10
    read as ICD-10-CM), ICD-10 codes normalised ("C220" -> "C22.0")."""
    for item in concept if isinstance(concept, list) else (concept,):
        if not isinstance(item, dict):
            continue
        entries = item.get("coding")
        if not isinstance(entries, list):
            continue
        for coding in entries:
            if not isinstance(coding, dict):
                continue
            code = coding.get("code")
            if not isinstance(code, str):
                continue
            system = _canonical_system(coding.get("system"))
            code = code.strip()
            yield system, (t.normalise_icd10(code) if system in t.ICD10_SYSTEMS else code)


def _coding_keys(concept: object) -> list[tuple[str, str]]:
    """``codings(concept)`` of one CodeableConcept as a list (a pair may repeat), without the generator: it runs for
    every Observation of a 2,000-Observation record."""
    entries = concept.get("coding") if isinstance(concept, dict) else None
    if not isinstance(entries, list):
        return list(codings(concept)) if isinstance(concept, list) else []
    keys = []
    for coding in entries:
        if isinstance(coding, dict):
            code = coding.get("code")
            if isinstance(code, str):
                system = coding.get("system")
                system = _SYSTEMS.get(system) or _canonical_system(system) if isinstance(system, str) else ""
                code = code.strip()
                keys.append((system, t.normalise_icd10(code) if system in t.ICD10_SYSTEMS else code))
    return keys


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


def observation_instant(obs: dict) -> datetime | None:
    """effectiveDateTime, effectivePeriod.start, effectiveInstant, then issued (clinical-rules.md §1 "Dates")."""
    instant = parse_instant(obs.get("effectiveDateTime"))  # nearly always there: the period is not looked up
    if instant is not None:
        return instant
    period = obs.get("effectivePeriod") if isinstance(obs.get("effectivePeriod"), dict) else {}
    return parse_instant(period.get("start")) or parse_instant(obs.get("effectiveInstant")) or parse_instant(
        obs.get("issued"))


def observation_date(obs: dict) -> date | None:
    instant = observation_instant(obs)
    return instant.date() if instant else None


def condition_date(cond: dict) -> date | None:
    period = cond.get("onsetPeriod") if isinstance(cond.get("onsetPeriod"), dict) else {}
    return parse_date(cond.get("onsetDateTime")) or parse_date(period.get("start")) or parse_date(
        cond.get("recordedDate"))


_HISTORY = re.compile(r"/_history/[^/]+$")


def reference_key(reference: str) -> str | None:
    """``Type/id`` of a literal reference (clinical-rules.md §1 "References"): relative, versioned
    (``Type/id/_history/n``) or absolute (``https://…/Type/id``); None for anything else."""
    parts = _HISTORY.sub("", reference.strip().rstrip("/")).split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-1]:
        return f"{parts[-2]}/{parts[-1]}"
    return None


def reference_id(reference: object, resource_type: str) -> str | None:
    """``{"reference": "Type/id"}`` (versioned, absolute or ``urn:uuid:id``) -> id."""
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return None
    ref = reference["reference"].strip()
    if ref.startswith("urn:uuid:"):
        return ref[len("urn:uuid:"):] or None
    key = reference_key(ref)
    if key and key.split("/", 1)[0] == resource_type:
        return key.split("/", 1)[1]
    return None


def _belongs_to(resource: dict, patient_id: str, own: str) -> bool:
    """False when the resource's subject/patient reference names another patient (or a non-patient subject).

    ``Patient/x``, ``Patient/x/_history/n``, an absolute URL ending in ``Patient/x`` and ``urn:uuid:x`` (a
    Bundle's fullUrl for the Patient whose id is x, as Synthea writes it) all mean patient x.
    """
    if resource["resourceType"] == "Patient":
        return resource.get("id") == patient_id
    for name in ("subject", "patient"):
        reference = resource.get(name)
        if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
            ref = reference["reference"]
            if ref == own:  # the usual case, without parsing
                return True
            ref = ref.strip()
            if ref.startswith("urn:uuid:"):
                return ref[len("urn:uuid:"):] == patient_id
            return reference_key(ref) == f"Patient/{patient_id}"
    return True  # no subject (e.g. Medication): not patient-specific


_UNDATED = datetime.min.replace(tzinfo=UTC)
_VALUE_ELEMENTS = ("valueQuantity", "valueCodeableConcept", "valueString", "valueInteger", "dataAbsentReason")


def _panel_results(panel: dict) -> list[dict]:
    """The lab results a panel Observation holds as components (e.g. a hepatic function panel with albumin and
    bilirubin), each as an Observation of its own: the panel's id, status, subject and dates, the component's
    code and value. Only components coded with a result the rules read; lesion components (TumorSize) stay put."""
    results = []
    for index, component in enumerate(panel["component"]):
        if not isinstance(component, dict):
            continue
        if not any(s == t.LOINC and c in t.PANEL_RESULT_CODES for s, c in codings(component.get("code"))):
            continue
        result = {k: v for k, v in panel.items() if k not in ("component", "code", "id", *_VALUE_ELEMENTS)}
        result.update({k: v for k, v in component.items() if k == "code" or k in _VALUE_ELEMENTS})
        result["id"] = f"{panel.get('id', 'panel')}-component-{index + 1}"
        results.append(result)
    return results
# Elements the rules read, by type: a malformed one of these makes the resource unusable; any other malformed
# element is named and the resource is still read (defensively, from the raw JSON).
_NEEDED = {
    "Observation": {"code", "status", "subject", "effectiveDateTime", "effectivePeriod", "effectiveInstant",
                    "issued", "valueQuantity", "valueInteger", "valueCodeableConcept", "valueString",
                    "interpretation", "component", "focus", "dataAbsentReason"},
    "Condition": {"code", "subject", "verificationStatus", "clinicalStatus", "onsetDateTime", "onsetPeriod",
                  "recordedDate", "severity", "bodySite"},
    "MedicationRequest": {"medicationCodeableConcept", "medicationReference", "status", "intent", "subject",
                          "authoredOn", "statusReason", "dosageInstruction", "dispenseRequest"},
    "MedicationStatement": {"medicationCodeableConcept", "medicationReference", "status", "subject",
                            "effectiveDateTime", "effectivePeriod", "dateAsserted", "statusReason"},
    "MedicationAdministration": {"medicationCodeableConcept", "medicationReference", "status", "subject",
                                 "effectiveDateTime", "effectivePeriod", "statusReason"},
    "Medication": {"code", "ingredient"},
    "AdverseEvent": {"event", "subject", "date", "detected", "suspectEntity", "severity", "actuality"},
    "BodyStructure": {"location", "patient"},
    "Patient": {"id", "birthDate", "deceasedBoolean", "deceasedDateTime"},
}


def _model(resource_type: str):  # type: ignore[no-untyped-def]
    """The fhir.resources R4B model class of a type the core reads, or None."""
    module = _MODEL_MODULES.get(resource_type)
    return getattr(import_module(f"fhir.resources.R4B.{module}"), resource_type) if module else None


def load_models() -> None:
    """Import every model now (a server's start-up) instead of on first use."""
    for resource_type in _MODEL_MODULES:
        _model(resource_type)


def _invalid_elements(model, resource: dict) -> set[str]:  # type: ignore[no-untyped-def]
    """Top-level element names that fail R4 validation (empty when valid; {"resource"} when it cannot be told)."""
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        names = {str(err["loc"][0]) for err in exc.errors() if err.get("loc")}
        if not names:
            return {"resource"}
        # fhir.resources reports a choice element by its base name or the typed one; keep both spellings.
        return names
    except (ValueError, TypeError, OverflowError, RecursionError):
        return {"resource"}
    return set()


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
        by_type: dict[str, list[dict]] = defaultdict(list)
        by_ref: dict[str, dict] = {}
        self._by_type, self._by_ref = by_type, by_ref
        # Observations by (system, code), each with its (defensively read) date: one pass, then cheap lookups.
        by_code: dict[tuple[str, str], list[tuple[datetime, dict]]] = defaultdict(list)
        self._observations_by_code = by_code
        panel_of: dict[int, dict] = {}  # a component read as its own result -> the panel Observation
        self._panel_of = panel_of
        self.other_patient: list[str] = []
        own = f"Patient/{patient_id}"
        for resource in resources:
            rtype = resource.get("resourceType") if isinstance(resource, dict) else None
            if not isinstance(rtype, str):
                continue
            subject = resource.get("subject")
            if patient_id is not None and not (rtype != "Patient" and isinstance(subject, dict)
                                               and subject.get("reference") == own) \
                    and not _belongs_to(resource, patient_id, own):  # a Patient belongs by its id alone
                self.other_patient.append(f"{rtype}/{resource.get('id', '?')}")
                continue
            rid = resource.get("id", "")
            if rid != "":
                ref = f"{rtype}/{rid}"
                if ref in by_ref:  # the same resource from prefetch and a FHIR page
                    continue
                by_ref[ref] = resource
            by_type[rtype].append(resource)
            if rtype == "Observation":  # indexed in the same pass
                when = observation_instant(resource) or _UNDATED
                for key in _coding_keys(resource.get("code")):
                    by_code[key].append((when, resource))
                if isinstance(resource.get("component"), list):
                    for part in _panel_results(resource):
                        panel_of[id(part)] = resource
                        for key in _coding_keys(part.get("code")):
                            by_code[key].append((when, part))
        self._validity: dict[int, bool] = {}
        self.skipped: list[SkippedResource] = []
        self.malformed: list[SkippedResource] = []  # kept, with the named elements not read
        self._candidates: dict[tuple[str, frozenset[str]], tuple[tuple[datetime, dict], ...]] = {}

    # -- validation -------------------------------------------------------------------------------
    def valid(self, resource: dict) -> bool:
        """Validate with the fhir.resources R4 model once (clinical-rules.md §1 "One bad element never drops the
        resource"): a resource whose malformed elements are not ones the rules read is kept and the element is
        named (``malformed``); one whose needed elements are malformed is skipped and named (``skipped``). A panel
        component read as its own result is as valid as its panel Observation."""
        panel = self._panel_of.get(id(resource))
        if panel is not None:
            return self.valid(panel)
        known = self._validity.get(id(resource))
        if known is not None:
            return known
        rtype = resource.get("resourceType", "")
        model = _model(rtype)
        ok = True
        if model is not None:
            candidate = resource
            if rtype == "Observation" and "status" not in resource:
                # clinical-rules.md §1: an absent Observation status counts like "final"
                candidate = {**resource, "status": "final"}
            bad = _invalid_elements(model, candidate)
            if bad:
                rid = str(resource.get("id", "?"))
                needed = sorted(bad & _NEEDED.get(rtype, set()))
                if needed or "resource" in bad:
                    ok = False
                    where = needed[0] if needed else "resource"
                    self.skipped.append(SkippedResource(rtype, rid, f"invalid R4 at {where}"))
                else:
                    self.malformed.append(SkippedResource(rtype, rid, ", ".join(sorted(bad))))
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
        key = reference_key(ref)
        target = self._by_ref.get(key) if key else None
        if target is None and ref.startswith("urn:uuid:"):
            target = next((r for r in self._by_ref.values() if r.get("id") == ref[len("urn:uuid:"):]), None)
        return target if target is not None and self.valid(target) else None

    def countable(self, obs: dict) -> bool:
        """A valid Observation whose status counts: final, amended, corrected or absent (clinical-rules.md §1)."""
        return self.valid(obs) and obs.get("status", "final") in _OBSERVATION_OK

    def observation_candidates(self, codes: Iterable[str], system: str = t.LOINC) -> tuple[tuple[datetime, dict], ...]:
        """(instant, Observation) with one of the codes, each once, newest first by full instant (time of day
        counts) — NOT yet validated (see ``countable``); undated ones last. Sorted once per set of codes: ALBI,
        Child-Pugh and the trend ask for the same albumin and bilirubin history."""
        wanted = frozenset(codes)
        cached = self._candidates.get((system, wanted))
        if cached is not None:
            return cached
        found: dict[int, tuple[datetime, dict]] = {}
        for code in wanted:
            for item in self._observations_by_code.get((system, code), ()):
                found[id(item[1])] = item
        candidates = tuple(sorted(found.values(), key=lambda item: item[0], reverse=True))
        self._candidates[(system, wanted)] = candidates
        return candidates

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
