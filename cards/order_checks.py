"""Order-entry checks for order-select and order-sign (clinical-rules.md §4; service-contract.md §1, §3).

For a patient where R0 holds, the draft MedicationRequests of ``context.draftOrders`` are checked against the
same Assessment the patient-view card uses:

- ``irae-ici``: an ICI ordered after an immune-related adverse event (§3 R3) → ``warning``;
- ``bev-event-antivegf``: an anti-VEGF TKI, bevacizumab or ramucirumab after a bevacizumab-type event (§3 R4)
  → ``warning``;
- ``poor-status``: any recognised systemic therapy with current ECOG ≥ 2 or current ALBI grade 3 (§3 R1/R2)
  → ``warning`` to weigh best supportive care;
- ``ramucirumab-afp``: ramucirumab with a current AFP < 400 ng/mL, or none (§3 R7) → ``warning``;
- ``lenvatinib-dose``: lenvatinib whose daily dose does not match the current weight (8 mg < 60 kg, 12 mg
  ≥ 60 kg) → ``info`` with one suggestion whose ``update`` action rewrites that draft (a valid R4
  MedicationRequest); without a current weight an ``info`` card says the dose could not be checked;
- ``prior-ctla4``: nivolumab + ipilimumab (any anti-CTLA-4) ordered when first line already contained
  anti-CTLA-4 → ``info``: the retrial evidence (after anti-PD-(L)1 only) does not cover it.

Draft orders are read leniently from the raw dicts (the CDS Hooks sandbox sends drafts that are not valid R4:
``category``/``reasonCode`` objects, no ``intent``, no medication until the form is complete); other order types
(ServiceRequest, NutritionOrder, …) are ignored. Every card carries ``overrideReasons`` and the
``hcc-cds.orderCheck`` extension (``check``, ``draftOrder``). Pure: no Flask, HTTP or clock.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from . import terminology as t
from .assessment import DEFAULT_CURRENT_DAYS, Assessment, assess
from .evidence import QUOTES, SHORT_CITATION
from .markers import AFP_RAMUCIRUMAB_THRESHOLD_NG_ML
from .medications import identify_drugs
from .record import PatientRecord, concept_text
from .render import UuidFactory, first_line_text, md, new_uuid, source, summarise, when
from .rules import (
    ALBI_POOR_GRADE,
    ECOG_POOR,
    LENVATINIB_LOW_MG,
    Recommendation,
    applicable,
    lenvatinib_mg,
    recommend,
)

ORDER_CHECK_EXTENSION = "hcc-cds.orderCheck"
CHECKS = ("irae-ici", "bev-event-antivegf", "poor-status", "ramucirumab-afp", "prior-ctla4", "lenvatinib-dose")
ORAL_ROUTE = ("26643006", "Oral route")
_EXCLUDED_STATUS = {"cancelled", "entered-in-error", "stopped", "completed"}
_INDICATOR_RANK = {"critical": 0, "warning": 1, "info": 2}

# Wong et al. as summarised by the paper (verbatim from shared/reference/hwang-2023-second-line-after-ici-hcc.txt);
# not (yet) in cards.evidence.QUOTES.
# R4 MedicationRequest elements that are lists (0..*): a single object or string sent instead is wrapped.
_LIST_ELEMENTS = ("identifier", "instantiatesCanonical", "instantiatesUri", "basedOn", "category", "reasonCode",
                  "reasonReference", "supportingInformation", "note", "detectedIssue", "eventHistory", "insurance",
                  "contained", "extension", "modifierExtension")
_ESSENTIAL = {"resourceType", "id", "status", "intent", "subject", "medicationCodeableConcept",
              "medicationReference", "dosageInstruction"}
_MR_STATUS = {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"}
_MR_PRIORITY = ("routine", "urgent", "asap", "stat")
_MR_INTENT = {"proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order",
              "option"}

_MG = re.compile(r"(?<![\d.,])(\d+(?:[.,]\d+)?)\s*(?:mg|milligrams?)\b(?!/)", re.IGNORECASE)
_COUNT_UNITS = {"{pill}", "{pills}", "{capsule}", "{capsules}", "{cap}", "{tablet}", "{tablets}", "{tbl}", "1",
                "pill", "pills", "capsule", "capsules", "cap", "caps", "tablet", "tablets", "tab", "tabs"}
_MG_UNITS = {"mg", "milligram", "milligrams"}
_PERIOD_DAYS = {"h": 1 / 24, "d": 1.0, "wk": 7.0}
_TEXT_FREQUENCY = (
    (re.compile(r"\b(every other day|alternate days?|every 2 days|q\.?o\.?d\.?|q48h)\b", re.IGNORECASE), 0.5),
    (re.compile(r"\b(four times (a |per )?day|q\.?i\.?d\.?|every 6 ?h(ours)?|q6h)\b", re.IGNORECASE), 4.0),
    (re.compile(r"\b(three times (a |per )?day|t\.?i\.?d\.?|every 8 ?h(ours)?|q8h)\b", re.IGNORECASE), 3.0),
    (re.compile(r"\b(twice (a |per )?day|twice daily|b\.?i\.?d\.?|2 ?x ?(daily|a day)|every 12 ?h(ours)?|q12h)\b",
                re.IGNORECASE), 2.0),
)


class OrderContextError(ValueError):
    """``draftOrders`` or ``selections`` cannot be used (the service edge answers HTTP 400).

    Raised when draftOrders is not a Bundle or its ``entry`` is not a list, when ``selections`` is not a list of
    ``Type/id`` strings, or when a selection names a resource that is not in draftOrders (Inferno: selections ⊆
    draftOrders). Messages never echo patient data.
    """


@dataclass(frozen=True)
class OrderCheckResult:
    cards: list[dict]
    assessment: Assessment
    recommendation: Recommendation


@dataclass(frozen=True)
class Dose:
    daily_mg: float
    text: str  # how the order reads, e.g. "12 mg once daily" / "3 × 4 mg"


@dataclass(frozen=True)
class DraftOrder:
    """One draft MedicationRequest reduced to what the checks need (read leniently from the raw dict)."""

    resource: dict
    reference: str | None  # "MedicationRequest/<id>", None when the draft has no usable id
    drugs: frozenset[t.Drug]
    label: str  # the medication as the user sees it (record text: escape before showing)
    dose: Dose | None


# -- reading draft orders --------------------------------------------------------------------------
def _draft_resources(draft_orders: object) -> list[dict]:
    if not isinstance(draft_orders, dict) or draft_orders.get("resourceType") != "Bundle":
        raise OrderContextError("context.draftOrders must be a FHIR Bundle")
    entries = draft_orders.get("entry", [])
    if not isinstance(entries, list):
        raise OrderContextError("context.draftOrders.entry must be a list")
    resources = []
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            resources.append(resource)
    return resources


def _reference(resource: dict) -> str | None:
    rid = resource.get("id")
    if isinstance(rid, str) and rid.strip():
        return f"{resource['resourceType']}/{rid}"
    return None


def _selected(resources: list[dict], selections: object) -> list[dict]:
    """order-select: only the selected drafts; every selection must name a draft order."""
    if not isinstance(selections, list) or not all(isinstance(s, str) for s in selections):
        raise OrderContextError("context.selections must be a list of 'Type/id' references")
    by_ref: dict[str, list[dict]] = {}
    for resource in resources:
        ref = _reference(resource)
        if ref:
            by_ref.setdefault(ref, []).append(resource)
    missing = [s for s in selections if s not in by_ref]
    if missing:
        raise OrderContextError(f"context.selections: {len(missing)} selection(s) not found in "
                                "context.draftOrders")
    wanted = set(selections)
    return [r for r in resources if _reference(r) in wanted]


def _medication(resource: dict, drafts: list[dict], record: PatientRecord) -> tuple[set[t.Drug], str, list[str]]:
    """(drugs, label, texts naming the product strength) from medicationCodeableConcept or medicationReference."""
    concept = _clean_concept(resource.get("medicationCodeableConcept"))
    if concept is not None:
        return identify_drugs(concept), concept_text(concept), _concept_texts(concept)
    reference = resource.get("medicationReference")
    if not isinstance(reference, dict):
        return set(), "", []
    display = reference.get("display") if isinstance(reference.get("display"), str) else ""
    medication = _resolve_medication(reference, resource, drafts, record)
    if medication is None:
        return identify_drugs(None, display), display, [display]
    code = _clean_concept(medication.get("code"))
    drugs = identify_drugs(code, display)
    ingredients = medication.get("ingredient")
    for ingredient in ingredients if isinstance(ingredients, list) else ():
        if isinstance(ingredient, dict):
            drugs |= identify_drugs(_clean_concept(ingredient.get("itemCodeableConcept")))
    return drugs, concept_text(code) or display, [*_concept_texts(code), display]


def _resolve_medication(reference: dict, resource: dict, drafts: list[dict],
                        record: PatientRecord) -> dict | None:
    ref = reference.get("reference")
    if not isinstance(ref, str):
        return None
    if ref.startswith("#"):
        contained = resource.get("contained")
        for item in contained if isinstance(contained, list) else [contained]:
            if isinstance(item, dict) and item.get("resourceType") == "Medication" and item.get("id") == ref[1:]:
                return item
        return None
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Medication":
        for draft in drafts:
            if draft.get("resourceType") == "Medication" and draft.get("id") == parts[-1]:
                return draft
        return record.resolve({"reference": f"Medication/{parts[-1]}"})
    return None


def _clean_concept(concept: object) -> dict | None:
    """A CodeableConcept reduced to well-typed text and codings (drafts are not validated)."""
    if not isinstance(concept, dict):
        return None
    clean: dict = {}
    if isinstance(concept.get("text"), str):
        clean["text"] = concept["text"]
    codings = concept.get("coding")
    if isinstance(codings, list):
        clean["coding"] = [{key: c[key] for key in ("system", "code", "display") if isinstance(c.get(key), str)}
                           for c in codings if isinstance(c, dict)]
    return clean


def _concept_texts(concept: object) -> list[str]:
    if not isinstance(concept, dict):
        return []
    texts = [concept["text"]] if isinstance(concept.get("text"), str) else []
    texts += [c["display"] for c in concept.get("coding") or () if isinstance(c, dict)
              and isinstance(c.get("display"), str)]
    return texts


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


def _strength_mg(texts: Iterable[str]) -> float | None:
    """The product strength named by RxNorm-style names ("lenvatinib 4 MG Oral Capsule"), if exactly one."""
    found = {float(m.group(1).replace(",", ".")) for text in texts for m in _MG.finditer(text)}
    return found.pop() if len(found) == 1 else None


def _daily_factor(dosage: dict) -> float | None:
    """Administrations per day from timing.repeat, else from the dosage text, else once daily."""
    timing = dosage.get("timing")
    repeat = timing.get("repeat") if isinstance(timing, dict) else None
    if isinstance(repeat, dict) and ("frequency" in repeat or "period" in repeat):
        frequency = _number(repeat.get("frequency", 1))
        period = _number(repeat.get("period", 1))
        unit = repeat.get("periodUnit", repeat.get("periodUnits", "d"))
        if frequency is None or period is None or not isinstance(unit, str) or unit not in _PERIOD_DAYS:
            return None
        return frequency / (period * _PERIOD_DAYS[unit])
    text = dosage.get("text") if isinstance(dosage.get("text"), str) else ""
    for pattern, factor in _TEXT_FREQUENCY:
        if pattern.search(text):
            return factor
    return 1.0


def read_dose(resource: dict, product_texts: Iterable[str] = ()) -> Dose | None:
    """The ordered daily dose in mg from ``dosageInstruction[0]``, or None when it cannot be read.

    ``doseAndRate[0].doseQuantity`` in mg (or a pill count times the one strength in the product name), else
    one "N mg" in ``dosageInstruction[0].text``; multiplied by the administrations per day.
    """
    dosages = resource.get("dosageInstruction")
    if not isinstance(dosages, list) or not dosages or not isinstance(dosages[0], dict):
        return None
    dosage = dosages[0]
    rates = dosage.get("doseAndRate")
    quantity = rates[0].get("doseQuantity") if isinstance(rates, list) and rates and isinstance(
        rates[0], dict) else dosage.get("doseQuantity")  # STU3 drafts put doseQuantity on the Dosage
    per_dose = None
    shown = ""
    if isinstance(quantity, dict) and (value := _number(quantity.get("value"))) is not None:
        units = {str(quantity.get(k, "")).strip() for k in ("code", "unit")} - {""}
        if {u.lower() for u in units} & _MG_UNITS:
            per_dose, shown = value, f"{value:g} mg"
        elif {u.lower() for u in units} & _COUNT_UNITS and (strength := _strength_mg(product_texts)):
            per_dose, shown = value * strength, f"{value:g} × {strength:g} mg"
    if per_dose is None:
        text = dosage.get("text") if isinstance(dosage.get("text"), str) else ""
        amounts = {float(m.group(1).replace(",", ".")) for m in _MG.finditer(text)}
        if len(amounts) != 1:
            return None
        per_dose = amounts.pop()
        shown = f"{per_dose:g} mg"
    factor = _daily_factor(dosage)
    if factor is None:
        return None
    daily = per_dose * factor
    how = "once daily" if factor == 1 else f"{factor:g} times daily" if factor > 1 else "every other day"
    return Dose(daily, f"{shown} {how}")


def read_draft_orders(resources: list[dict], evaluated: list[dict], record: PatientRecord) -> list[DraftOrder]:
    """The evaluated draft MedicationRequests with a recognised drug; everything else is ignored."""
    orders: list[DraftOrder] = []
    seen: set[str] = set()
    for resource in evaluated:
        status = resource.get("status")
        if resource.get("resourceType") != "MedicationRequest" or (isinstance(status, str)
                                                                   and status in _EXCLUDED_STATUS):
            continue
        reference = _reference(resource)
        if reference and reference in seen:
            continue
        drugs, label, texts = _medication(resource, resources, record)
        if not drugs:
            continue
        if reference:
            seen.add(reference)
        orders.append(DraftOrder(resource, reference, frozenset(drugs), label or _names(drugs),
                                 read_dose(resource, texts)))
    return orders


# -- the checks ------------------------------------------------------------------------------------
def _names(drugs: Iterable[t.Drug]) -> str:
    return " + ".join(sorted(d.name for d in drugs))


def _title(drugs: Iterable[t.Drug]) -> str:
    text = _names(drugs)
    return text[:1].upper() + text[1:]


def _plain(text: object) -> str:
    """Record text for a summary (plain text, not Markdown): one line, no HTML angle brackets."""
    return " ".join(str(text).replace("<", " ").replace(">", " ").split())


def _quote(key: str) -> str:
    return f"> “{QUOTES[key]}” ({SHORT_CITATION})"


@dataclass
class _Finding:
    check: str
    indicator: str
    summary: str
    reason: str
    data: list[str]
    quotes: list[str]  # rendered quote lines
    caveats: list[str]
    suggestion: dict | None = None


def _first_line_line(a: Assessment) -> str:
    assert a.first_line is not None
    return f"First line: {first_line_text(a.first_line)}"


def _irae_ici(a: Assessment, order: DraftOrder, evaluated: list[DraftOrder]) -> _Finding | None:
    """R3: an ICI ordered after an immune-related adverse event of first-line ICI therapy."""
    icis = [d for d in order.drugs if d.ici]
    irae = a.adverse_events.immune_related if a.adverse_events else ()
    if not icis or not irae:
        return None
    first = next((f for f in irae if f.code in t.IRAE_ICD10), irae[0])  # a coded event names it best
    severe = any(f.severe for f in irae)
    data = [f"Immune-related adverse event: {md(f.label)} ({md(f.code)}{', severe' if f.severe else ''}), "
            f"{when(f.date)} ({md(f.source)})" for f in irae]
    data.append(_first_line_line(a))
    quotes = [_quote("R3")]
    if any(d.anti_ctla4 for o in evaluated for d in o.drugs):
        quotes.append(_quote("ici-combination"))
    return _Finding(
        "irae-ici", "warning",
        f"{_title(icis)} ordered after {'severe ' if severe else ''}immune-related {_plain(first.label)} "
        f"({_plain(first.code)}) on "
        f"first-line ICI: a switch to TKI is preferred (R3)",
        f"An immune checkpoint inhibitor is ordered although the patient had an immune-related adverse event on "
        f"first-line ICI-based therapy. The paper prefers a switch to a TKI (lenvatinib first) and advises "
        f"against ICI retrial{' (severe event: strongly)' if severe else ''}.",
        data, quotes, [])


def _bev_event(a: Assessment, order: DraftOrder) -> _Finding | None:
    """R4: an anti-VEGF TKI, bevacizumab or ramucirumab ordered after a bevacizumab-type event."""
    vegf = [d for d in order.drugs if d.anti_vegf]
    events = a.adverse_events.bevacizumab_related if a.adverse_events else ()
    if not vegf or not events:
        return None
    line = a.first_line
    assert line is not None
    data = [f"Bevacizumab-type event: {md(f.label)} ({md(f.code)}{', severe' if f.severe else ''}), "
            f"{when(f.date)} ({md(f.source)})" for f in events]
    data.append(_first_line_line(a))
    bev = (f"Bevacizumab exposure: {when(line.bevacizumab_start)} → "
           f"{line.bevacizumab_end.isoformat() if line.bevacizumab_end else 'ongoing or end not recorded'}")
    data.append(bev)
    grade = a.albi.current_grade
    data.append(f"ALBI: {a.albi.score:.2f}, grade {a.albi.grade}, {when(a.albi.date)} ({a.albi.status})"
                if a.albi.score is not None else f"ALBI: {a.albi.status}")
    if line.anti_ctla4:
        alternative = ("The first line already contained anti-CTLA-4, so the ipilimumab-retrial evidence does not "
                       "cover the usual alternative; discuss local therapy, supportive care or a trial.")
    elif grade == 1:
        alternative = ("ALBI grade 1 (good liver function reserve [derived]): retrial of ICI-based therapy without "
                       "TKI (nivolumab + ipilimumab) is the paper's preferred second-line choice.")
    else:
        alternative = ("Retrial of ICI-based therapy without TKI is the paper's alternative, but only with good "
                       "liver function reserve (ALBI grade 1 [derived]); "
                       + (f"current ALBI grade is {grade}." if grade else "no current ALBI."))
    event = next((f for f in events if f.code in t.BEV_EVENT_ICD10
                  or f.code.startswith(tuple(t.BEV_EVENT_ICD10_PREFIXES))), events[0])
    return _Finding(
        "bev-event-antivegf", "warning",
        f"{_title(vegf)} ordered after {_plain(event.label)} ({_plain(event.code)}) on bevacizumab: anti-VEGF "
        "bleeding risk"
        + (", ICI retrial without TKI preferred (R4)" if grade == 1 and not line.anti_ctla4 else " (R4)"),
        f"An anti-VEGF agent is ordered although the patient had a bevacizumab-type event (bleeding, thrombosis "
        f"or perforation) during first-line {line.regimen}; anti-VEGF TKIs and antibodies carry the same risk. "
        f"{alternative}",
        data, [_quote("R4"), _quote("R4-liver")], [])


def _poor_status(a: Assessment, order: DraftOrder) -> _Finding | None:
    """R1/R2: systemic therapy ordered with current ECOG ≥ 2 or current ALBI grade 3 [derived thresholds]."""
    ecog = a.performance.current_value
    grade = a.albi.current_grade
    poor_ecog = ecog is not None and ecog >= ECOG_POOR
    poor_albi = grade is not None and grade >= ALBI_POOR_GRADE
    if not (poor_ecog or poor_albi):
        return None
    data, quotes, problems = [], [], []
    perf = a.performance
    if perf.value is not None:
        origin = f" (Karnofsky {perf.karnofsky} mapped to ECOG)" if perf.source == "karnofsky" else ""
        data.append(f"Performance status: ECOG {perf.value}{origin}, {when(perf.date)} ({perf.status})")
    if a.albi.score is not None:
        data.append(f"ALBI: {a.albi.score:.2f}, grade {a.albi.grade} (bilirubin {a.albi.bilirubin_umol_per_l:.1f} "
                    f"µmol/L, albumin {a.albi.albumin_g_per_l:.1f} g/L), {when(a.albi.date)} ({a.albi.status})")
    if poor_ecog:
        problems.append(f"ECOG {ecog}")
        quotes.append(_quote("R1"))
    if poor_albi:
        problems.append(f"ALBI grade {grade}")
        quotes.append(_quote("R2"))
    found = " and ".join(problems)
    why = []
    if poor_ecog:
        why.append("poor performance status (ECOG ≥ 2) carried HR 2.04 for OS")
    if poor_albi:
        why.append("poor liver function (ALBI grade 3) carried HR 1.51 for OS (univariate only)")
    return _Finding(
        "poor-status", "warning",
        f"{_title(order.drugs)} ordered with {found}: weigh best supportive care against further treatment "
        f"({'/'.join(r for r, p in (('R1', poor_ecog), ('R2', poor_albi)) if p)})",
        f"Systemic therapy is ordered with {found} at progression after ICI failure: {'; '.join(why)}. Weigh "
        "the risk-benefit balance of further treatment against best supportive care.",
        data, quotes,
        ["Thresholds ECOG ≥ 2 and ALBI grade 3 are [derived]: not stated as cut-offs in the paper; configurable."])


def _ramucirumab_afp(a: Assessment, order: DraftOrder) -> _Finding | None:
    """R7: ramucirumab only if AFP ≥ 400 ng/mL (REACH-2); warn when the current AFP is lower or missing."""
    if not any(d.name == "ramucirumab" for d in order.drugs):
        return None
    afp = a.afp
    value = afp.current_value
    if value is not None and value >= AFP_RAMUCIRUMAB_THRESHOLD_NG_ML:
        return None
    if value is not None:
        shown = f"AFP {value:g} ng/mL (< 400)"
        data = [f"AFP: {value:g} ng/mL, {when(afp.date)} (current)"]
    else:
        shown = "no current AFP in ng/mL"
        if afp.status == "not-evaluated":
            data = [f"AFP: latest result ({when(afp.date)}) is in IU/mL: not evaluated against 400 ng/mL "
                    "(no conversion is assumed)"]
        elif afp.ng_per_ml is not None:
            data = [f"AFP: {afp.ng_per_ml:g} ng/mL, {when(afp.date)} ({afp.status}: not current)"]
        else:
            data = [f"AFP: {afp.status}"]
    return _Finding(
        "ramucirumab-afp", "warning",
        f"Ramucirumab ordered with {shown}: survival benefit shown only for AFP ≥ 400 ng/mL (REACH-2)",
        "Ramucirumab prolonged survival only in patients with AFP ≥ 400 ng/mL (REACH-2); "
        + ("this patient's current AFP is below that." if value is not None
           else "the record has no current AFP in ng/mL to confirm it. Order an AFP (ng/mL) before signing."),
        data, [_quote("R7-ramucirumab")],
        [f"'Current' means dated within {a.current_days} days [derived, configurable]."])


def _prior_ctla4(a: Assessment, order: DraftOrder, all_orders: list[DraftOrder]) -> _Finding | None:
    """R4 ambiguity (c): anti-CTLA-4 retrial after a first line that already contained anti-CTLA-4."""
    line = a.first_line
    assert line is not None
    ctla4 = [d for d in order.drugs if d.anti_ctla4]
    if not ctla4 or not line.anti_ctla4:
        return None
    partners = sorted({d.name for o in all_orders for d in o.drugs if d.ici and not d.anti_ctla4})
    regimen = " + ".join([*partners, *sorted(d.name for d in ctla4)])
    regimen = regimen[:1].upper() + regimen[1:]
    prior = ", ".join(d.name for d in t.DRUGS if d.anti_ctla4 and d.name in line.drugs)
    return _Finding(
        "prior-ctla4", "info",
        f"{regimen} after first-line anti-CTLA-4 ({line.regimen}): retrial evidence (after anti-PD-(L)1 only) "
        "does not apply",
        f"The evidence for ipilimumab-based ICI retrial comes from patients whose first line was anti-PD-(L)1 only "
        f"(Wong et al., Roessler et al.); this patient's first line already contained anti-CTLA-4 ({prior}), so "
        "that rationale does not apply. Consider TKI, local therapy or a clinical trial.",
        [_first_line_line(a)], [_quote("R4-wong"), _quote("R4-liver")], [])


def _lenvatinib_dose(a: Assessment, order: DraftOrder, patient_id: str, new_id: UuidFactory) -> _Finding | None:
    """Lenvatinib dose against the current weight; an ``update`` suggestion rewrites the draft's dose."""
    if not any(d.name == "lenvatinib" for d in order.drugs):
        return None
    weight = a.weight
    ordered = f"{order.dose.daily_mg:g} mg/day ({order.dose.text})" if order.dose else "dose not readable"
    caveats = ["Doses come from the product label and REFLECT (not from the paper); adjust for toxicity and "
               "local protocols."]
    if weight.current_kg is None:
        last = (f"last weight {weight.kg:g} kg on {when(weight.date)} ({weight.status})" if weight.kg is not None
                else f"weight {weight.status}")
        return _Finding(
            "lenvatinib-dose", "info",
            "Lenvatinib dose not checked: no current body weight (8 mg if < 60 kg, 12 mg if ≥ 60 kg)",
            "The lenvatinib dose depends on body weight (8 mg once daily < 60 kg, 12 mg once daily ≥ 60 kg), and "
            f"the record has no weight from the last {a.current_days} days. Record the weight and check the dose.",
            [f"Body weight: {last}", f"Ordered: {ordered}"], [_quote("R7")], caveats)
    if order.dose is None:
        return None
    expected = lenvatinib_mg(weight.current_kg)
    if abs(order.dose.daily_mg - expected) < 0.01:
        return None
    band = "< 60 kg" if expected == LENVATINIB_LOW_MG else "≥ 60 kg"
    description = (f"Change the lenvatinib dose of {order.reference} from {order.dose.daily_mg:g} mg/day to "
                   f"{expected} mg orally once daily (weight {weight.current_kg:g} kg {band}).")
    suggestion = None
    updated = updated_order(order.resource, patient_id, expected) if order.reference else None
    if updated is not None:
        suggestion = {"label": f"Change lenvatinib to {expected} mg once daily", "uuid": new_id(),
                      "isRecommended": True,
                      "actions": [{"type": "update", "description": description, "resource": updated}]}
    else:
        caveats.append("The draft order could not be rewritten automatically: change the dose by hand.")
    return _Finding(
        "lenvatinib-dose", "info",
        f"Lenvatinib {order.dose.daily_mg:g} mg/day ordered for {weight.current_kg:g} kg: weight-based dose is "
        f"{expected} mg once daily ({band})",
        f"Lenvatinib is dosed by body weight: 8 mg once daily below 60 kg, 12 mg once daily from 60 kg. The draft "
        f"orders {order.dose.daily_mg:g} mg/day; the current weight gives {expected} mg once daily. Keep a lower "
        "dose only if it is an intended dose reduction.",
        [f"Body weight: {weight.current_kg:g} kg, {when(weight.date)} (current)", f"Ordered: {ordered}"],
        [_quote("R7")], caveats, suggestion)


# -- the update action's resource ------------------------------------------------------------------
def lenvatinib_dosage(mg: int) -> dict:
    """A valid R4 Dosage: ``mg`` orally once daily."""
    return {
        "text": f"{mg} mg orally once daily",
        "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
        "route": {"coding": [{"system": t.SNOMED, "code": ORAL_ROUTE[0], "display": ORAL_ROUTE[1]}]},
        "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg", "system": t.UCUM, "code": "mg"}}],
    }


def _r4_errors(resource: dict) -> list[str] | None:
    """Top-level elements of a MedicationRequest that fail R4 validation ([] = valid, None = not fixable)."""
    from fhir.resources.R4B.medicationrequest import MedicationRequest

    try:
        MedicationRequest.model_validate(resource)
    except ValidationError as exc:
        elements = []
        for error in exc.errors():
            loc = error.get("loc") or ()
            if not loc or not isinstance(loc[0], str) or loc[0] == "__root__":
                return None
            elements.append(loc[0])
        return list(dict.fromkeys(elements))
    except Exception:  # any other failure of the model library: no automatic rewrite
        return None
    return []


def _pruned(value: object) -> object:
    """The value without null or empty members (FHIR JSON and CDS Hooks 2.0 §Use of JSON allow neither).

    A primitive-extension array (``_given``) that holds a null placeholder is dropped whole: removing the
    placeholder would shift it onto the wrong value.
    """
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if key.startswith("_") and isinstance(item, list) and None in item:
                continue
            pruned = _pruned(item)
            if pruned is not None:
                result[key] = pruned
        return result or None
    if isinstance(value, list):
        items = [p for p in (_pruned(item) for item in value) if p is not None]
        return items or None
    if value is None or value == "":
        return None
    return value


def updated_order(draft: dict, patient_id: str, mg: int) -> dict | None:
    """The whole draft MedicationRequest with the dose rewritten, repaired to validate as R4 (or None).

    Keeps id, subject, status, intent and the medication; wraps objects sent where R4 has a list (the sandbox's
    ``category``/``reasonCode``), adds ``intent`` "order" and ``subject`` when missing, replaces
    ``dosageInstruction`` with ``mg`` orally once daily. Null and empty members are removed; other elements
    that still fail R4 are dropped.
    """
    resource = _pruned(copy.deepcopy(draft))
    if not isinstance(resource, dict):
        return None
    for key in _LIST_ELEMENTS:
        if key in resource and not isinstance(resource[key], list):
            resource[key] = [resource[key]]
    if not isinstance(resource.get("status"), str) or resource["status"] not in _MR_STATUS:
        resource["status"] = "draft"
    if not isinstance(resource.get("intent"), str) or resource["intent"] not in _MR_INTENT:
        resource["intent"] = "order"
    if "priority" in resource and resource["priority"] not in _MR_PRIORITY:  # required binding, unchecked by the model
        del resource["priority"]
    subject = resource.get("subject")
    if not isinstance(subject, dict) or not isinstance(subject.get("reference"), str):
        resource["subject"] = {"reference": f"Patient/{patient_id}"}
    resource["dosageInstruction"] = [lenvatinib_dosage(mg)]
    first = ("resourceType", "id", "status", "intent")
    resource = {**{key: resource[key] for key in first if key in resource},
                **{key: value for key, value in resource.items() if key not in first}}
    for _attempt in range(20):
        errors = _r4_errors(resource)
        if errors is None:
            return None
        if not errors:
            return resource
        if set(errors) & _ESSENTIAL:
            return None
        for element in errors:
            resource.pop(element, None)
    return None


# -- cards -----------------------------------------------------------------------------------------
def _override_reasons() -> list[dict]:
    return [{"system": t.OVERRIDE_REASON_SYSTEM, "code": code, "display": display}
            for code, display in t.OVERRIDE_REASONS]


def _card(finding: _Finding, order: DraftOrder, a: Assessment, new_id: UuidFactory) -> dict:
    target = order.reference or "MedicationRequest (no id)"
    lines = [f"**Order check: {md(finding.check)}** — draft {md(target)}: {md(order.label)}",
             f"**Why:** {finding.reason}",
             "**Patient data**\n" + "\n".join(f"- {line}" for line in finding.data),
             "**Evidence**\n\n" + "\n\n".join(finding.quotes)]
    caveats = [*finding.caveats]
    if a.unavailable:
        caveats.append("Not readable from the EHR: " + md(", ".join(a.unavailable)) + "; a check may be missing.")
    caveats.append(f"Evaluated {a.now.date().isoformat()} (clinical-rules.md §4). Override with a reason if the "
                   "order is intended.")
    lines.append("**Caveats**\n" + "\n".join(f"- {c}" for c in caveats))
    extension = {"check": finding.check}
    if order.reference:
        extension["draftOrder"] = order.reference
    card: dict = {
        "uuid": new_id(),
        "summary": summarise(finding.summary),
        "indicator": finding.indicator,
        "detail": "\n\n".join(lines),
        "source": source("order-check"),
    }
    if finding.suggestion:
        card["suggestions"] = [finding.suggestion]
        card["selectionBehavior"] = "at-most-one"
    card["overrideReasons"] = _override_reasons()
    card["extension"] = {ORDER_CHECK_EXTENSION: extension}
    return card


def check_order_context(draft_orders: object, selections: object | None) -> None:
    """Raise OrderContextError when draftOrders is unusable or a selection is not among the draft orders.

    Cheap: the service edge calls it before reading any data from the EHR.
    """
    drafts = _draft_resources(draft_orders)
    if selections is not None:
        _selected(drafts, selections)


def evaluate_orders(resources: Iterable[dict], now: datetime, patient_id: str, draft_orders: dict,
                    selections: list[str] | None, *, current_days: int = DEFAULT_CURRENT_DAYS,
                    unavailable: tuple[str, ...] = (), new_id: UuidFactory = new_uuid) -> OrderCheckResult:
    """Order-entry cards (clinical-rules.md §4) for the draft orders of order-sign (``selections`` None: all)
    or order-select (only the selected ``Type/id``s). ``[]`` when R0 does not hold or nothing applies.

    Raises OrderContextError for an unusable draftOrders Bundle or a selection that is not a draft order.
    """
    drafts = _draft_resources(draft_orders)
    evaluated = drafts if selections is None else _selected(drafts, selections)
    record = PatientRecord(resources, patient_id)
    assessment = assess(record, now, current_days=current_days, unavailable=tuple(unavailable))
    rec = recommend(assessment)
    if not applicable(assessment):
        return OrderCheckResult([], assessment, rec)
    orders = read_draft_orders(drafts, evaluated, record)
    all_orders = read_draft_orders(drafts, drafts, record)
    found: list[tuple[int, int, int, dict]] = []
    for number, order in enumerate(orders):
        findings = [
            _irae_ici(assessment, order, orders),
            _bev_event(assessment, order),
            _poor_status(assessment, order),
            _ramucirumab_afp(assessment, order),
            _prior_ctla4(assessment, order, all_orders),
            _lenvatinib_dose(assessment, order, patient_id, new_id),
        ]
        for finding in findings:
            if finding is not None:
                card = _card(finding, order, assessment, new_id)
                found.append((_INDICATOR_RANK[finding.indicator], number, CHECKS.index(finding.check), card))
    found.sort(key=lambda item: item[:3])
    return OrderCheckResult([card for *_key, card in found], assessment, rec)


__all__ = ["CHECKS", "ORDER_CHECK_EXTENSION", "Dose", "DraftOrder", "OrderCheckResult", "OrderContextError",
           "check_order_context", "evaluate_orders", "lenvatinib_dosage", "read_dose", "read_draft_orders",
           "updated_order"]
