"""Systemic therapy: drug recognition, exposure, lines of therapy, failed drugs (clinical-rules.md §1–§2).

Drugs are recognised from RxNorm ingredient *and* product codes, ATC (current and legacy), then the generic or
brand name in text/display (clinical-codes.md §4), also through a referenced Medication and its ingredients.
Exposure means given: planned or proposed orders, entered-in-error and not-taken records are not exposure.
Courses: a drug started within the policy's course-join window of a course's first start joins it; a drug
already in the latest course continues it (the same ICI resumed); anything later opens a new line. Line 1 is the
earliest course. Stop reason from ``statusReason`` (mCODE TreatmentTerminationReasonVS): 266721009 no response →
progression, 407563006 not tolerated → toxicity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from . import terminology as t
from .record import PatientRecord, codings, concept_text, list_of, parse_date

ADMINISTRATION_ACTIVE_WINDOW = timedelta(days=42)  # a course given by administrations is open this long after
_NAME_PATTERN = {drug.name: re.compile(r"\b(" + "|".join(map(re.escape, drug.names)) + r")\b", re.IGNORECASE)
                 for drug in t.DRUGS}
# Exposure (clinical-rules.md §1 "Exposure"): what a record must not be to mean "given".
_NOT_GIVEN_STATUS = {
    "MedicationRequest": {"entered-in-error", "cancelled", "draft"},
    "MedicationStatement": {"entered-in-error", "not-taken", "intended"},
    "MedicationAdministration": {"entered-in-error", "not-done"},
}
_ORDER_INTENTS = {"order", "original-order", "reflex-order", "filler-order", "instance-order"}
_ACTIVE_STATUS = {"active", "in-progress", "on-hold"}
_HCC_OR_POSSIBLE = {"C22.0", "C22.8", "C22.9"}


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


def resource_drugs(record: PatientRecord, resource: dict) -> tuple[set[t.Drug], bool]:
    """(drugs, identified): the drugs a medication record names, and False when the record names no drug we can
    read at all (an unresolvable ``medicationReference`` without a display, or a Medication without code/text)."""
    if isinstance(resource.get("medicationCodeableConcept"), dict):
        concept = resource["medicationCodeableConcept"]
        drugs = identify_drugs(concept)
        return drugs, bool(drugs or concept_text(concept) or list(codings(concept)))
    reference = resource.get("medicationReference")
    display = reference.get("display", "") if isinstance(reference, dict) else ""
    medication = record.resolve(reference, resource)
    if medication is None:
        drugs = identify_drugs(None, display if isinstance(display, str) else "")
        return drugs, bool(drugs)
    drugs = identify_drugs(medication.get("code"), display if isinstance(display, str) else "")
    for ingredient in list_of(medication.get("ingredient")):
        if isinstance(ingredient, dict):
            drugs |= identify_drugs(ingredient.get("itemCodeableConcept"))
    named = bool(drugs or concept_text(medication.get("code")) or list(codings(medication.get("code"))))
    return drugs, named


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


def _given(resource: dict) -> bool:
    """Exposure means given (clinical-rules.md §1): order intents only for requests; no not-given statuses."""
    rtype = resource["resourceType"]
    if resource.get("status", "") in _NOT_GIVEN_STATUS[rtype]:
        return False
    return rtype != "MedicationRequest" or resource.get("intent") in _ORDER_INTENTS


def _other_malignancy(record: PatientRecord, resource: dict) -> bool:
    """A course given for a malignancy other than HCC (ICD-10-CM C00–C96 except C22.0/C22.8/C22.9)."""
    concepts = list_of(resource.get("reasonCode"))
    for reference in list_of(resource.get("reasonReference")):
        target = record.resolve(reference, resource)
        if target is not None:
            concepts.append(target.get("code"))
    for system, code in codings(concepts):
        if system != t.ICD10CM or not re.fullmatch(r"C[0-9]{2}(\..*)?", code) or code[:5] in _HCC_OR_POSSIBLE:
            continue
        # C77–C80 name secondary or unspecified sites (an HCC course may be given for them): not another cancer.
        if int(code[1:3]) <= 96 and not 77 <= int(code[1:3]) <= 80:
            return True
    return False


@dataclass(frozen=True)
class UnidentifiedMedication:
    """A medication record whose drug cannot be identified (named on the data-quality card, never dropped)."""

    source: str  # Type/id
    date: date | None


def medication_uses(record: PatientRecord, now: date) -> list[MedicationUse]:
    """Every recognised drug exposure from MedicationStatement, MedicationRequest, MedicationAdministration."""
    return medication_records(record, now)[0]


def medication_records(record: PatientRecord, now: date) -> tuple[list[MedicationUse], list[UnidentifiedMedication]]:
    """(exposures to drugs of the drug table, given records whose drug cannot be identified)."""
    uses: list[MedicationUse] = []
    unidentified: list[UnidentifiedMedication] = []
    for rtype in ("MedicationStatement", "MedicationRequest", "MedicationAdministration"):
        for resource in record.all(rtype):
            if not _given(resource):
                continue
            drugs, identified = resource_drugs(record, resource)
            start, end = _dates(resource)
            source = f"{rtype}/{resource.get('id', '?')}"
            if not identified:
                unidentified.append(UnidentifiedMedication(source, start))
                continue
            if not drugs or _other_malignancy(record, resource):
                continue
            status = resource.get("status", "")
            reasons = frozenset(code for _s, code in codings(resource.get("statusReason")))
            if rtype == "MedicationAdministration":
                active = status in _ACTIVE_STATUS or (end is not None and now - end <= ADMINISTRATION_ACTIVE_WINDOW
                                                      and not reasons)
            else:
                active = status in _ACTIVE_STATUS and (end is None or end >= now)
            for drug in drugs:
                uses.append(MedicationUse(drug, start, end, active, reasons, source))
    return uses, unidentified


REGIMENS = (
    ({"atezolizumab", "bevacizumab"}, "atezolizumab-bevacizumab"),
    ({"durvalumab", "tremelimumab"}, "durvalumab-tremelimumab"),
    ({"nivolumab", "ipilimumab"}, "nivolumab-ipilimumab"),
    ({"camrelizumab", "rivoceranib"}, "camrelizumab-rivoceranib"),
    ({"lenvatinib", "pembrolizumab"}, "lenvatinib-pembrolizumab"),
)
COURSE_PARTNERS = frozenset({"bevacizumab", "rivoceranib"})  # regimen partners that may join the ICI course late


@dataclass(frozen=True)
class FirstLine:
    """One course (line) of systemic therapy. The name is historical: every line of the history is one."""

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
    line: int = 1
    ici_active: bool = False  # an ICI of the course is still being given
    last_ici_date: date | None = None  # the latest dated ICI exposure (start or end), for resumption

    @property
    def has_bevacizumab(self) -> bool:
        return "bevacizumab" in self.drugs

    @property
    def has_ici(self) -> bool:
        return bool(set(self.drugs) & t.ICI_NAMES)

    @property
    def ici_drugs(self) -> tuple[str, ...]:
        return tuple(d for d in self.drugs if d in t.ICI_NAMES)


def regimen_name(drugs: set[str]) -> str:
    """The regimen of clinical-rules.md §2; a course without an ICI is named by its drugs."""
    for members, name in REGIMENS:
        if members <= drugs:
            return name
    icis = drugs & t.ICI_NAMES
    if not icis:
        return "-".join(sorted(drugs))
    if icis == {"durvalumab"} and drugs == icis:
        return "durvalumab"
    if icis == {"tislelizumab"} and drugs == icis:
        return "tislelizumab"
    return "other-ici"


def _exposure_end(uses: list[MedicationUse]) -> date | None:
    """Last date of exposure, or None while open: a use that is active or has no recorded end keeps it open."""
    if not uses or any(u.active or u.end is None for u in uses):
        return None
    return max(u.end for u in uses if u.end)


def _continues(use: MedicationUse, course: list[MedicationUse], window: timedelta) -> bool:
    """A further record of a drug already in the course continues it: the same ICI resumed at any time; any other
    drug while its exposure is open or within the join window of its last end (refills, cycles of infusions)."""
    same = [u for u in course if u.drug.name == use.drug.name]
    if not same:
        return False
    if use.drug.ici:
        return True
    last_end = _exposure_end(same)
    return last_end is None or (use.start is not None and use.start - last_end <= window)


def _group(uses: list[MedicationUse], join_days: int) -> list[list[MedicationUse]]:
    """Uses grouped into courses in order of start (clinical-rules.md §2 "Treatment history")."""
    window = timedelta(days=join_days)
    courses: list[list[MedicationUse]] = []
    for use in sorted((u for u in uses if u.start), key=lambda u: (u.start, u.drug.name)):
        assert use.start is not None
        if courses:
            latest = courses[-1]
            first = min(u.start for u in latest if u.start)
            ici_open = _exposure_end([u for u in latest if u.drug.ici]) or use.start
            partner = (use.drug.name in COURSE_PARTNERS and any(u.drug.ici for u in latest)
                       and use.start <= ici_open)
            if use.start - first <= window or partner or _continues(use, latest, window):
                latest.append(use)
                continue
        courses.append([use])
    # Undated records join the latest course that has the same drug.
    for use in (u for u in uses if not u.start):
        for course in reversed(courses):
            if any(u.drug.name == use.drug.name for u in course):
                course.append(use)
                break
    return courses


def _course(uses: list[MedicationUse], number: int) -> FirstLine:
    names = {u.drug.name for u in uses}
    start = min(u.start for u in uses if u.start)
    ici = [u for u in uses if u.drug.ici]
    active = any(u.active for u in uses)
    reasons = frozenset().union(*(u.stop_reasons for u in uses))
    ici_reasons = frozenset().union(*(u.stop_reasons for u in ici)) if ici else reasons
    progression = t.STOP_NO_RESPONSE in reasons
    toxicity = t.STOP_NOT_TOLERATED in ici_reasons
    if progression:
        stop_reason: str | None = "progression"
    elif toxicity and not any(u.active for u in ici):
        stop_reason = "toxicity"
    elif active:
        stop_reason = None
    else:
        stop_reason = "other" if reasons else "unknown"
    progression_dates = [u.end or u.start for u in uses if t.STOP_NO_RESPONSE in u.stop_reasons and (u.end or u.start)]
    ends = [u.end for u in uses if u.end]
    bev = [u for u in uses if u.drug.name == "bevacizumab"]
    bev_starts = [u.start for u in bev if u.start]
    ici_dates = [d for u in ici for d in (u.start, u.end) if d]
    return FirstLine(
        regimen=regimen_name(names),
        drugs=tuple(sorted(names)),
        start=start,
        end=None if active or not ends else max(ends),
        active=active,
        stop_reason=stop_reason,
        progression_stop_date=max(progression_dates) if progression_dates else None,
        stopped_for_progression=progression,
        stopped_for_toxicity=toxicity and not any(u.active for u in ici),
        ici_end=_exposure_end(ici),
        bevacizumab_start=min(bev_starts) if bev_starts else None,
        bevacizumab_end=_exposure_end(bev),
        anti_ctla4=any(u.drug.anti_ctla4 for u in uses),
        sources=tuple(sorted({u.source for u in uses})),
        line=number,
        ici_active=any(u.active for u in ici),
        last_ici_date=max(ici_dates) if ici_dates else None,
    )


def treatment_history(uses: list[MedicationUse], join_days: int = 28) -> tuple[FirstLine, ...]:
    """Every line of systemic therapy, earliest first (line 1 is the earliest course)."""
    return tuple(_course(course, number) for number, course in enumerate(_group(uses, join_days), 1))


def first_line(uses: list[MedicationUse], join_days: int = 28) -> FirstLine | None:
    """Line 1 of the treatment history when it contains an ICI, else None."""
    lines = treatment_history(uses, join_days)
    return lines[0] if lines and lines[0].has_ici else None


def failed_drugs(line: FirstLine | None, progressed: bool) -> tuple[str, ...]:
    """The drugs of line 1 when it progressed (clinical-rules.md §2 "Failed drugs")."""
    return line.drugs if line is not None and progressed else ()
