"""Draft orders of order-select and order-sign, read leniently (clinical-rules.md §4; service-contract.md §1).

The CDS Hooks sandbox sends drafts that are not valid R4 (``category``/``reasonCode`` objects, no ``intent``, no
medication until the form is complete), so drafts are read from the raw dicts: only MedicationRequests with a
recognised drug are kept, with their ordered daily dose when it can be read. Pure: no Flask, HTTP or clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from . import terminology as t
from .medications import identify_drugs
from .record import PatientRecord, concept_text, reference_key

_EXCLUDED_STATUS = {"cancelled", "entered-in-error", "stopped", "completed"}
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
class OrderedDose:
    daily_mg: float
    text: str  # how the order reads, e.g. "12 mg once daily" / "3 × 4 mg"


@dataclass(frozen=True)
class DraftOrder:
    """One draft MedicationRequest reduced to what the checks need (read leniently from the raw dict)."""

    resource: dict
    reference: str | None  # "MedicationRequest/<id>", None when the draft has no usable id
    drugs: frozenset[t.Drug]
    label: str  # the medication as the user sees it (record text: escape before showing)
    dose: OrderedDose | None



def draft_resources(draft_orders: object) -> list[dict]:
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


def selected(resources: list[dict], selections: object) -> list[dict]:
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
    key = reference_key(ref)
    if key and key.startswith("Medication/"):
        for draft in drafts:
            if draft.get("resourceType") == "Medication" and f"Medication/{draft.get('id')}" == key:
                return draft
        return record.resolve({"reference": key})
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


def read_dose(resource: dict, product_texts: Iterable[str] = ()) -> OrderedDose | None:
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
    return OrderedDose(daily, f"{shown} {how}")


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
        orders.append(DraftOrder(resource, reference, frozenset(drugs), label or names(drugs),
                                 read_dose(resource, texts)))
    return orders



def check_order_context(draft_orders: object, selections: object | None) -> None:
    """Raise OrderContextError when draftOrders is unusable or a selection is not among the draft orders.

    Cheap: the service edge calls it before reading any data from the EHR.
    """
    drafts = draft_resources(draft_orders)
    if selections is not None:
        selected(drafts, selections)


def names(drugs: Iterable[t.Drug]) -> str:
    return " + ".join(sorted(d.name for d in drugs))
