"""Systemic therapy: drug recognition, first-line ICI-based course, regimen name and stop reason.

clinical-rules.md §2 "First-line ICI-based therapy": the earliest course containing an ICI; start = earliest
ICI record; end = latest end/stop date, or open while active. Drugs are recognised from RxNorm ingredient *and*
product codes, ATC (current and legacy), then the generic or brand name in text/display (clinical-codes.md §4).
Stop reason from ``statusReason`` (mCODE TreatmentTerminationReasonVS): 266721009 no response → progression,
407563006 not tolerated → toxicity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from . import terminology as t
from .record import PatientRecord, codings, concept_text, list_of, parse_date

REGIMEN_WINDOW = timedelta(days=28)  # partners starting within 4 weeks of the first ICI belong to the course
ADMINISTRATION_ACTIVE_WINDOW = timedelta(days=42)  # a course given by administrations is open this long after
_NAME_PATTERN = {drug.name: re.compile(r"\b(" + "|".join(map(re.escape, drug.names)) + r")\b", re.IGNORECASE)
                 for drug in t.DRUGS}
_EXCLUDED_STATUS = {"entered-in-error", "not-taken", "cancelled", "draft", "intended", "not-done", "unknown"}
_ACTIVE_STATUS = {"active", "in-progress", "on-hold"}


def identify_drugs(concept: object, text: str = "") -> set[t.Drug]:
    """Drugs named by a medication CodeableConcept (codes first, then names in text/display)."""
    found: set[t.Drug] = set()
    for system, code in codings(concept):
        if system == t.RXNORM and code in t.DRUG_BY_RXNORM:
            found.add(t.DRUG_BY_RXNORM[code])
        elif system == t.ATC and code.upper() in t.DRUG_BY_ATC:
            found.add(t.DRUG_BY_ATC[code.upper()])
    if found:
        return found
    words = " ".join(filter(None, [text, concept_text(concept), *_displays(concept)]))
    return {t.DRUGS_BY_NAME[name] for name, pattern in _NAME_PATTERN.items() if pattern.search(words)}


def _displays(concept: object) -> list[str]:
    if not isinstance(concept, dict):
        return []
    return [c["display"] for c in list_of(concept.get("coding"))
            if isinstance(c, dict) and isinstance(c.get("display"), str)]


@dataclass(frozen=True)
class MedicationUse:
    """One medication record reduced to what the rules need."""

    drug: t.Drug
    start: date | None
    end: date | None
    active: bool
    stop_reasons: frozenset[str]
    source: str  # Type/id


def _resource_drugs(record: PatientRecord, resource: dict) -> set[t.Drug]:
    if "medicationCodeableConcept" in resource:
        return identify_drugs(resource["medicationCodeableConcept"])
    reference = resource.get("medicationReference")
    medication = record.resolve(reference, resource)
    display = reference.get("display", "") if isinstance(reference, dict) else ""
    if medication is None:
        return identify_drugs(None, display)
    drugs = identify_drugs(medication.get("code"), display)
    for ingredient in medication.get("ingredient") or ():
        if isinstance(ingredient, dict):
            drugs |= identify_drugs(ingredient.get("itemCodeableConcept"))
    return drugs


def _period(resource: dict, name: str) -> tuple[date | None, date | None]:
    period = resource.get(name)
    if not isinstance(period, dict):
        return None, None
    return parse_date(period.get("start")), parse_date(period.get("end"))


def _dates(resource: dict) -> tuple[date | None, date | None]:
    """(start, end) by resource type (clinical-rules.md §1 "Dates")."""
    rtype = resource["resourceType"]
    if rtype == "MedicationStatement":
        start, end = _period(resource, "effectivePeriod")
        start = start or parse_date(resource.get("effectiveDateTime")) or parse_date(resource.get("dateAsserted"))
        return start, end
    if rtype == "MedicationAdministration":
        start, end = _period(resource, "effectivePeriod")
        when = parse_date(resource.get("effectiveDateTime"))
        return start or when, end or when
    # MedicationRequest: dosage bounds, then validity period, then authoredOn
    start = end = None
    for dosage in resource.get("dosageInstruction") or ():
        repeat = ((dosage or {}).get("timing") or {}).get("repeat") or {} if isinstance(dosage, dict) else {}
        start, end = _period(repeat, "boundsPeriod") if isinstance(repeat, dict) else (None, None)
        if start or end:
            break
    dispense = resource.get("dispenseRequest") if isinstance(resource.get("dispenseRequest"), dict) else {}
    v_start, v_end = _period(dispense, "validityPeriod")
    return start or v_start or parse_date(resource.get("authoredOn")), end or v_end


def medication_uses(record: PatientRecord, now: date) -> list[MedicationUse]:
    """Every recognised drug exposure from MedicationStatement, MedicationRequest, MedicationAdministration."""
    uses = []
    for rtype in ("MedicationStatement", "MedicationRequest", "MedicationAdministration"):
        for resource in record.all(rtype):
            status = resource.get("status", "")
            if status in _EXCLUDED_STATUS:
                continue
            drugs = _resource_drugs(record, resource)
            if not drugs:
                continue
            start, end = _dates(resource)
            reasons = frozenset(code for _s, code in codings(resource.get("statusReason")))
            if rtype == "MedicationAdministration":
                active = status in _ACTIVE_STATUS or (end is not None and now - end <= ADMINISTRATION_ACTIVE_WINDOW
                                                      and not reasons)
            else:
                active = status in _ACTIVE_STATUS and (end is None or end >= now)
            for drug in drugs:
                uses.append(MedicationUse(drug, start, end, active, reasons, f"{rtype}/{resource.get('id', '?')}"))
    return uses


REGIMENS = (
    ({"atezolizumab", "bevacizumab"}, "atezolizumab-bevacizumab"),
    ({"durvalumab", "tremelimumab"}, "durvalumab-tremelimumab"),
    ({"nivolumab", "ipilimumab"}, "nivolumab-ipilimumab"),
    ({"camrelizumab", "rivoceranib"}, "camrelizumab-rivoceranib"),
)


@dataclass(frozen=True)
class FirstLine:
    regimen: str
    drugs: tuple[str, ...]
    start: date
    end: date | None  # None while the course is open
    active: bool
    stop_reason: str | None  # progression | toxicity | other | unknown; None while active
    progression_stop_date: date | None
    stopped_for_progression: bool
    stopped_for_toxicity: bool
    ici_end: date | None  # last ICI exposure (irAE window); None while open or when no end is recorded
    bevacizumab_start: date | None
    bevacizumab_end: date | None  # None while open or when no end is recorded
    anti_ctla4: bool
    sources: tuple[str, ...]

    @property
    def has_bevacizumab(self) -> bool:
        return "bevacizumab" in self.drugs


def regimen_name(drugs: set[str]) -> str:
    for members, name in REGIMENS:
        if members <= drugs:
            return name
    icis = drugs & t.ICI_NAMES
    if icis == {"durvalumab"}:
        return "durvalumab"
    if icis == {"tislelizumab"}:
        return "tislelizumab"
    return "other-ici"


COURSE_PARTNERS = frozenset({"bevacizumab", "rivoceranib"})  # regimen partners that may join the ICI course late


def _exposure_end(uses: list[MedicationUse]) -> date | None:
    """Last date of exposure, or None while open: a use that is active or has no recorded end keeps it open."""
    if not uses or any(u.active or u.end is None for u in uses):
        return None
    return max(u.end for u in uses if u.end)


def first_line(uses: list[MedicationUse]) -> FirstLine | None:
    """The earliest ICI-containing course, or None when the record shows no dated ICI.

    ICIs starting within 4 weeks of the first ICI form the course; bevacizumab or rivoceranib given at any time
    during it belong to the regimen, other drugs only when started within 4 weeks of the first ICI.
    """
    ici_starts = [u.start for u in uses if u.drug.ici and u.start]
    if not ici_starts:
        return None
    start = min(ici_starts)
    ici_names = {u.drug.name for u in uses if u.drug.ici and u.start and abs(u.start - start) <= REGIMEN_WINDOW}
    ici = [u for u in uses if u.drug.name in ici_names and (u.start is None or u.start >= start - REGIMEN_WINDOW)]
    ici_end = _exposure_end(ici)
    names = set(ici_names)
    for u in uses:
        if u.drug.ici or not u.start or u.start < start - REGIMEN_WINDOW:
            continue
        during = u.drug.name in COURSE_PARTNERS and (ici_end is None or u.start <= ici_end)
        if during or u.start - start <= REGIMEN_WINDOW:
            names.add(u.drug.name)
    course = [u for u in uses if u.drug.name in names and (u.start is None or u.start >= start - REGIMEN_WINDOW)]
    active = any(u.active for u in ici)
    ends = [u.end for u in ici if u.end]
    reasons = frozenset().union(*(u.stop_reasons for u in ici))
    progression = t.STOP_NO_RESPONSE in reasons
    toxicity = t.STOP_NOT_TOLERATED in reasons
    if progression:
        stop_reason: str | None = "progression"
    elif toxicity:
        stop_reason = "toxicity"
    elif active:
        stop_reason = None
    else:
        stop_reason = "other" if reasons else "unknown"
    progression_dates = [u.end or u.start for u in ici if t.STOP_NO_RESPONSE in u.stop_reasons and (u.end or u.start)]
    bev = [u for u in course if u.drug.name == "bevacizumab"]
    bev_starts = [u.start for u in bev if u.start]
    return FirstLine(
        regimen=regimen_name(names),
        drugs=tuple(sorted(names)),
        start=start,
        end=None if active or not ends else max(ends),
        active=active,
        stop_reason=stop_reason,
        progression_stop_date=max(progression_dates) if progression_dates else None,
        stopped_for_progression=progression,
        stopped_for_toxicity=toxicity,
        ici_end=ici_end,
        bevacizumab_start=min(bev_starts) if bev_starts else None,
        bevacizumab_end=_exposure_end(bev),
        anti_ctla4=any(u.drug.anti_ctla4 for u in course),
        sources=tuple(sorted({u.source for u in course})),
    )
