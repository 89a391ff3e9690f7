"""The FHIR write-back of a lenvatinib dose update: the whole draft MedicationRequest, repaired to valid R4.

The ``update`` action of a dose suggestion replaces the draft the clinician is signing (CDS Hooks 2.0 §Action),
so the resource must be complete and valid; null and empty members are removed (CDS Hooks 2.0 §Use of JSON).
"""

from __future__ import annotations

import copy

from pydantic import ValidationError

from . import terminology as t

ORAL_ROUTE = ("26643006", "Oral route")
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

