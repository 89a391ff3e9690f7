"""Prior adverse events of first-line therapy (clinical-rules.md §2 "irAE", §3 R3 and R4).

irAE: a manifestation code with onset between ICI start and ICI end + 90 days, or one recorded with a
T45.1X5- (adverse effect of antineoplastic drug) Condition, or an AdverseEvent whose suspectEntity is an ICI.
Severe: Condition.severity SNOMED 24484000, AdverseEvent severity "severe" or grade ≥ 3, or the ICI stopped as
not tolerated (407563006).
Bevacizumab-type event: GI or variceal bleeding, arterial thromboembolism or GI perforation during bevacizumab
exposure + 90 days (first line containing bevacizumab), or an AdverseEvent whose suspectEntity is bevacizumab.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from . import terminology as t
from .measurements import Problem
from .medications import FirstLine, identify_drugs
from .policy import Policy, default_policy
from .record import PatientRecord, codings, concept_text, condition_date, parse_date


@dataclass(frozen=True)
class AdverseEventFinding:
    code: str
    label: str
    date: date | None
    severe: bool
    source: str


@dataclass(frozen=True)
class AdverseEvents:
    immune_related: tuple[AdverseEventFinding, ...]
    bevacizumab_related: tuple[AdverseEventFinding, ...]
    problems: tuple[Problem, ...] = ()


def _irae_label(code: str) -> str | None:
    return t.IRAE_ICD10.get(code)


def _bev_label(code: str) -> str | None:
    if code in t.BEV_EVENT_ICD10:
        return t.BEV_EVENT_ICD10[code]
    return next((label for prefix, label in t.BEV_EVENT_ICD10_PREFIXES.items() if code.startswith(prefix)), None)


def _manifestation(concept: object, labeller) -> tuple[str, str] | None:  # type: ignore[no-untyped-def]
    for system, code in codings(concept):
        if system == t.ICD10CM and (label := labeller(code)):
            return code, label
    return None


def _linked_drug_effect(when: date | None, ici_start: date, effect_dates: list[date | None], days: int) -> bool:
    """A dated manifestation after ICI start with a T45.1X5- Condition within ``days`` of it [derived link]."""
    return when is not None and when >= ici_start and any(
        d is not None and abs((d - when).days) <= days for d in effect_dates)


def _within(when: date | None, start: date | None, end: date | None, now: date, tail_days: int) -> bool:
    if when is None or start is None:
        return False
    return start <= when <= (end or now) + timedelta(days=tail_days)


def _suspect_drugs(record: PatientRecord, event: dict) -> set[str]:
    names: set[str] = set()
    for suspect in event.get("suspectEntity") or ():
        instance = suspect.get("instance") if isinstance(suspect, dict) else None
        target = record.resolve(instance, event)
        display = instance.get("display", "") if isinstance(instance, dict) else ""
        if target is not None:
            concept = target.get("medicationCodeableConcept") or target.get("code")
            names |= {d.name for d in identify_drugs(concept, display)}
        else:
            names |= {d.name for d in identify_drugs(None, display)}
    return names


def _ae_severe(event: dict) -> bool:
    for _system, code in codings(event.get("severity")):
        if code in {"severe", t.SEVERE_SNOMED}:
            return True
    for extension in event.get("extension") or ():
        if isinstance(extension, dict) and "grade" in str(extension.get("url", "")).lower():
            grade = extension.get("valueInteger")
            if grade is None:
                grade = next((int(c) for _s, c in codings(extension.get("valueCodeableConcept")) if c.isdigit()), None)
            if isinstance(grade, int) and grade >= 3:
                return True
    return False


def assess_adverse_events(record: PatientRecord, line: FirstLine, now: date,
                          policy: Policy | None = None) -> AdverseEvents:
    policy = policy or default_policy()
    ici_tail, bev_tail, link = (policy.irae_days_after_ici_end, policy.bevacizumab_days_after_end,
                                policy.drug_effect_link_days)
    irae: list[AdverseEventFinding] = []
    bev: list[AdverseEventFinding] = []
    problems: list[Problem] = []
    conditions = record.conditions()
    drug_effect_dates = [condition_date(cond) for cond in conditions for system, code in codings(cond.get("code"))
                         if system == t.ICD10CM and code.startswith(t.DRUG_ADVERSE_EFFECT_ICD10_PREFIX)]
    for cond in conditions:
        when = condition_date(cond)
        severe_coded = any(code == t.SEVERE_SNOMED for _s, code in codings(cond.get("severity")))
        source = f"Condition/{cond.get('id', '?')}"
        if found := _manifestation(cond.get("code"), _irae_label):
            code, label = found
            if _within(when, line.start, line.ici_end, now, ici_tail) or _linked_drug_effect(
                    when, line.start, drug_effect_dates, link):
                irae.append(AdverseEventFinding(code, label, when, severe_coded or line.stopped_for_toxicity, source))
            elif when is None:
                problems.append(Problem("adverse-event", "undated",
                                        f"a diagnosis of {label} has no onset date: not counted as an "
                                        "immune-related adverse event"))
        if line.has_bevacizumab and (found := _manifestation(cond.get("code"), _bev_label)):
            code, label = found
            if _within(when, line.bevacizumab_start, line.bevacizumab_end, now, bev_tail):
                bev.append(AdverseEventFinding(code, label, when, severe_coded, source))
            elif when is None:
                problems.append(Problem("adverse-event", "undated",
                                        f"a diagnosis of {label} has no onset date: not counted as a "
                                        "bevacizumab-type event"))
    for event in record.adverse_events():
        suspects = _suspect_drugs(record, event)
        when = parse_date(event.get("date")) or parse_date(event.get("detected"))
        concept = event.get("event")
        codes = [code for _s, code in codings(concept)]
        code = codes[0] if codes else "unspecified"
        label = _irae_label(code) or _bev_label(code) or concept_text(concept) or "adverse event"
        source = f"AdverseEvent/{event.get('id', '?')}"
        severe = _ae_severe(event)
        # A bleed, thrombosis or perforation on a bevacizumab combination is a bevacizumab-type event even when
        # the ICI is listed as a co-suspect (combination regimens are recorded that way).
        if line.has_bevacizumab and _manifestation(concept, _bev_label) and (
                "bevacizumab" in suspects
                or _within(when, line.bevacizumab_start, line.bevacizumab_end, now, bev_tail)):
            bev.append(AdverseEventFinding(code, label, when, severe, source))
        elif (suspects & t.ICI_NAMES and not _manifestation(concept, _bev_label)) or (
                _manifestation(concept, _irae_label) and _within(when, line.start, line.ici_end, now, ici_tail)):
            irae.append(AdverseEventFinding(code, label, when, severe or line.stopped_for_toxicity, source))
    return AdverseEvents(tuple(_dedupe(irae)), tuple(_dedupe(bev)), tuple(problems))


def _dedupe(findings: list[AdverseEventFinding]) -> list[AdverseEventFinding]:
    """One finding per code, the severe one kept, ordered by date."""
    best: dict[str, AdverseEventFinding] = {}
    for finding in findings:
        kept = best.get(finding.code)
        if kept is None or (finding.severe and not kept.severe):
            best[finding.code] = finding
    return sorted(best.values(), key=lambda f: (f.date or date.min, f.code))
