"""Gather the patient's resources: prefetch first, then the EHR's FHIR server for what is missing.

CDS Hooks 2.0 prefetch semantics (service-contract.md §2, checklist P4–P8): a ``null`` value means "no data";
an absent key means "fetch it"; an OperationOutcome (or a Bundle with an outcome entry) means "fetch it"; a
Bundle with a ``next`` link means "fetch the rest". Cards must be identical whichever way the data arrive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .config import Settings
from .discovery import PREFETCH
from .errors import ServiceError
from .fhir import fetch, is_allowed, substitute

_DATA_NAMES = {
    "patient": "the Patient record (age, deceased status)",
    "conditions": "Conditions", "observations": "Observations", "medicationStatements": "MedicationStatements",
    "medicationRequests": "MedicationRequests", "medicationAdministrations": "MedicationAdministrations",
    "adverseEvents": "AdverseEvents", "bodyStructures": "BodyStructures (lesion sites)",
}


@dataclass(frozen=True)
class Gathered:
    resources: list[dict]
    unavailable: tuple[str, ...]  # optional data sets that could not be read, for the data-quality card
    fetched_keys: tuple[str, ...]  # keys read from the FHIR server (for logs)


def _bundle_resources(key: str, bundle: Mapping) -> tuple[list[dict], str | None, bool]:
    """(resources, next URL, had an outcome entry) of a prefetched searchset Bundle."""
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise ServiceError(400, f"prefetch '{key}': Bundle.entry must be a list")
    resources, outcome = [], False
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            continue
        mode = (entry.get("search") or {}).get("mode") if isinstance(entry.get("search"), dict) else None
        if resource["resourceType"] == "OperationOutcome" or mode == "outcome":
            outcome = True
            continue
        resources.append(resource)
    links = bundle.get("link") if isinstance(bundle.get("link"), list) else []
    next_url = next((link.get("url") for link in links if isinstance(link, dict)
                     and link.get("relation") == "next" and isinstance(link.get("url"), str)), None)
    return resources, next_url, outcome


def parse_prefetch(prefetch: object, context: Mapping) -> tuple[list[dict], dict[str, str]]:
    """Resources present in the prefetch, and key -> query (or next-page URL) still to fetch."""
    if prefetch is not None and not isinstance(prefetch, dict):
        raise ServiceError(400, "prefetch must be a JSON object")
    prefetch = prefetch or {}
    resources: list[dict] = []
    to_fetch: dict[str, str] = {}
    for key, (template, _required) in PREFETCH.items():
        query = substitute(template, context)
        if key not in prefetch:
            if query:
                to_fetch[key] = query
            continue
        value = prefetch[key]
        if value is None:
            continue
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            raise ServiceError(400, f"prefetch '{key}' must be a FHIR resource (an object with resourceType) or null")
        if value["resourceType"] == "OperationOutcome":
            if query:
                to_fetch[key] = query
            continue
        if value["resourceType"] != "Bundle":
            resources.append(value)
            continue
        found, next_url, outcome = _bundle_resources(key, value)
        if outcome and query:
            to_fetch[key] = query  # the client's query failed in part: run it again ourselves
            continue
        resources += found
        if next_url:
            to_fetch[key] = next_url
    return resources, to_fetch


def gather(body: Mapping, settings: Settings) -> Gathered:
    """All resources the rules need, or ServiceError(412) when required data cannot be obtained."""
    context = body["context"]
    resources, to_fetch = parse_prefetch(body.get("prefetch"), context)
    if not to_fetch:
        return Gathered(resources, (), ())
    required = [key for key in to_fetch if PREFETCH[key][1]]
    fhir_server = body.get("fhirServer")
    failures: dict[str, str] = {}
    if not isinstance(fhir_server, str):
        failures = dict.fromkeys(to_fetch, "no prefetch and no fhirServer")
    elif not is_allowed(fhir_server, settings):
        failures = dict.fromkeys(to_fetch, "fhirServer is not on HCC_CDS_FHIR_ALLOWLIST")
    else:
        auth = body.get("fhirAuthorization")
        token = auth.get("access_token") if isinstance(auth, dict) else None
        outcome = fetch(to_fetch, fhir_server, token if isinstance(token, str) else None, settings)
        for key in to_fetch:
            resources += outcome.resources.get(key, [])
        failures = outcome.failures
    missing_required = [key for key in required if key in failures]
    if missing_required:
        reasons = "; ".join(f"{_DATA_NAMES[key]}: {failures[key]}" for key in missing_required)
        raise ServiceError(412, f"required data could not be obtained from prefetch or fhirServer ({reasons})")
    unavailable = tuple(f"{_DATA_NAMES[key]} could not be read ({reason})" for key, reason in failures.items())
    return Gathered(resources, unavailable, tuple(k for k in to_fetch if k not in failures))
