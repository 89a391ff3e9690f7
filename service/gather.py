"""Gather the patient's resources: prefetch first, then the EHR's FHIR server for what is missing.

CDS Hooks 2.0 prefetch semantics (service-contract.md §2, checklist P4–P8): a ``null`` value means "no data";
an absent key means "fetch it"; an OperationOutcome means "fetch it"; a Bundle with a ``next`` link means "fetch
the rest". An OperationOutcome entry inside a searchset Bundle whose issues are all information or warning
(Epic's "no results", code 4101) means "no data"; one with an error or fatal issue means "fetch it". Cards must
be identical whichever way the data arrive. Medications that medication records reference but that neither
prefetch nor the searches returned are read from ``fhirServer`` (clinical-rules.md §1, Exposure).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from .config import Settings
from .discovery import PREFETCH
from .errors import ServiceError
from .fhir import SearchsetError, fetch, is_allowed, read_searchset, substitute

_DATA_NAMES = {
    "patient": "the Patient record (age, deceased status)",
    "conditions": "Conditions", "observations": "Observations", "medicationStatements": "MedicationStatements",
    "medicationRequests": "MedicationRequests", "medicationAdministrations": "MedicationAdministrations",
    "adverseEvents": "AdverseEvents", "bodyStructures": "BodyStructures (lesion sites)",
}
MEDICATION_RECORD_TYPES = frozenset({"MedicationRequest", "MedicationStatement", "MedicationAdministration"})
# Medication/{id}, optionally versioned, relative or at the end of an absolute URL (FHIR R4 §2.3.0 references)
_MEDICATION_REFERENCE = re.compile(r"(?:^|/)Medication/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


@dataclass(frozen=True)
class Gathered:
    resources: list[dict]
    unavailable: tuple[str, ...]  # optional data sets that could not be read, for the data-quality card
    fetched_keys: tuple[str, ...]  # keys read from the FHIR server (for logs)


@dataclass(frozen=True)
class MedicationFetch:
    """Medications read from ``fhirServer`` for medication records that reference them, and what failed."""

    medications: list[dict]
    unavailable: tuple[str, ...]


@dataclass(frozen=True)
class Prefetched:
    resources: list[dict]
    to_fetch: dict[str, str]  # key -> query (or next-page URL) still to fetch
    bundles: tuple[dict, ...]  # the prefetched searchset Bundles

    def full_urls(self) -> Iterator[str]:
        """The Bundle entries' fullUrls, read only when a medication reference needs them."""
        for bundle in self.bundles:
            for entry in bundle.get("entry", ()):
                if isinstance(entry, dict) and isinstance(entry.get("fullUrl"), str):
                    yield entry["fullUrl"]


def parse_prefetch(prefetch: object, context: Mapping) -> Prefetched:
    """Resources present in the prefetch, the keys still to fetch, and the searchset Bundles they came in."""
    if prefetch is not None and not isinstance(prefetch, dict):
        raise ServiceError(400, "prefetch must be a JSON object")
    prefetch = prefetch or {}
    resources: list[dict] = []
    to_fetch: dict[str, str] = {}
    bundles: list[dict] = []
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
        if not isinstance(value.get("entry", []), list):
            raise ServiceError(400, f"prefetch '{key}': Bundle.entry must be a list")
        try:
            found, next_url = read_searchset(value)
        except SearchsetError:
            if query:
                to_fetch[key] = query  # the client's query failed: run it again ourselves
            continue
        resources += found
        bundles.append(value)
        if next_url:
            to_fetch[key] = next_url
    return Prefetched(resources, to_fetch, tuple(bundles))


def medication_ids_to_fetch(records: Iterable[Mapping], present: Iterable[Mapping], full_urls: Iterable[str] = (),
                            fhir_server: str | None = None) -> list[str]:
    """Ids of the Medications that ``records`` reference and that are neither contained (``#id``), nor among
    ``present`` (as ``Medication/{id}``), nor a fullUrl of ``full_urls``, in first-reference order.

    Only references that name ``Medication/{id}`` relatively, versioned, or absolutely under ``fhir_server``
    are fetchable; a ``urn:uuid`` not in the request, or a URL on another server, is left to the core (which
    names the record it cannot identify) — the access token never goes to another server.
    """
    base = fhir_server.rstrip("/") + "/" if isinstance(fhir_server, str) else None
    known: set[str] | None = None  # the fullUrls and the Medications present: read at the first reference
    have: set[str] = set()
    wanted: list[str] = []
    for record in records:
        if not isinstance(record, dict) or record.get("resourceType") not in MEDICATION_RECORD_TYPES:
            continue
        reference = record.get("medicationReference")
        ref = reference.get("reference") if isinstance(reference, dict) else None
        if not isinstance(ref, str) or not ref or ref.startswith("#"):
            continue
        if known is None:
            known = set(full_urls)
            have = {r["id"] for r in present if isinstance(r, dict) and r.get("resourceType") == "Medication"
                    and isinstance(r.get("id"), str)}
        if ref in known:
            continue
        match = _MEDICATION_REFERENCE.search(ref)
        if match is None or ("://" in ref and (base is None or not ref.startswith(base))):
            continue
        if match.group(1) not in have and match.group(1) not in wanted:
            wanted.append(match.group(1))
    return wanted


def fetch_referenced_medications(
    resources: list[dict], fhir_server: object, access_token: str | None, settings: Settings, *,
    full_urls: Iterable[str] = (), extra_records: Iterable[Mapping] = (), deadline: float | None = None,
) -> MedicationFetch:
    """Read ``Medication/{id}`` from ``fhir_server`` for every medication record (in ``resources`` or
    ``extra_records``, e.g. draft orders) whose ``medicationReference`` is not resolvable from the request.

    Optional data: the reads run concurrently under the same bounds as every other fetch (:func:`service.fhir.
    fetch`), by ``deadline`` (a ``time.monotonic()`` instant) when given; a failure is named in ``unavailable``,
    never raised. Used by the hooks (:func:`gather`) and reusable by the pathway app.
    """
    records = [*resources, *extra_records]
    ids = medication_ids_to_fetch(records, resources, full_urls,
                                  fhir_server if isinstance(fhir_server, str) else None)
    if not ids:
        return MedicationFetch([], ())
    what = f"{len(ids)} Medication{'s' if len(ids) > 1 else ''} referenced by medication records could not be read"
    if not isinstance(fhir_server, str):
        return MedicationFetch([], (f"{what} (no fhirServer)",))
    if not is_allowed(fhir_server, settings):
        return MedicationFetch([], (f"{what} (fhirServer is not on HCC_CDS_FHIR_ALLOWLIST)",))
    if deadline is not None:
        settings = dataclasses.replace(settings, fhir_deadline=max(deadline - time.monotonic(), 0.0))
    queries = {f"medication-{n}": f"Medication/{quote(mid, safe='')}" for n, mid in enumerate(ids)}
    outcome = fetch(queries, fhir_server, access_token, settings)
    medications: list[dict] = []
    reasons: dict[str, int] = {}
    for key, mid in zip(queries, ids, strict=True):
        found = [r for r in outcome.resources.get(key, ()) if isinstance(r, dict)
                 and r.get("resourceType") == "Medication" and r.get("id") == mid]
        if found:
            medications.append(found[0])
            continue
        reason = outcome.failures.get(key, "not the requested Medication")
        reasons[reason] = reasons.get(reason, 0) + 1
    unavailable = tuple(
        f"{count} Medication{'s' if count > 1 else ''} referenced by medication records could not be read ({reason})"
        for reason, count in reasons.items())
    return MedicationFetch(medications, unavailable)


def _draft_order_resources(context: Mapping) -> list[Mapping]:
    bundle = context.get("draftOrders")
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    return [entry["resource"] for entry in entries or () if isinstance(entry, dict)
            and isinstance(entry.get("resource"), dict)] if isinstance(entries, list) else []


def gather(body: Mapping, settings: Settings) -> Gathered:
    """All resources the rules need, or ServiceError(412) when required data cannot be obtained."""
    deadline = time.monotonic() + settings.fhir_deadline
    context = body["context"]
    prefetched = parse_prefetch(body.get("prefetch"), context)
    resources, to_fetch = prefetched.resources, prefetched.to_fetch
    fhir_server = body.get("fhirServer")
    auth = body.get("fhirAuthorization")
    token = auth.get("access_token") if isinstance(auth, dict) else None
    token = token if isinstance(token, str) else None
    failures: dict[str, str] = {}
    fetched: tuple[str, ...] = ()
    if to_fetch:
        if not isinstance(fhir_server, str):
            failures = dict.fromkeys(to_fetch, "no prefetch and no fhirServer")
        elif not is_allowed(fhir_server, settings):
            failures = dict.fromkeys(to_fetch, "fhirServer is not on HCC_CDS_FHIR_ALLOWLIST")
        else:
            outcome = fetch(to_fetch, fhir_server, token, settings)
            for key in to_fetch:
                resources += outcome.resources.get(key, [])
            failures = outcome.failures
        required = [key for key in to_fetch if PREFETCH[key][1]]
        missing_required = [key for key in required if key in failures]
        if missing_required:
            reasons = "; ".join(f"{_DATA_NAMES[key]}: {failures[key]}" for key in missing_required)
            raise ServiceError(412, f"required data could not be obtained from prefetch or fhirServer ({reasons})")
        fetched = tuple(k for k in to_fetch if k not in failures)
    unavailable = tuple(f"{_DATA_NAMES[key]} could not be read ({reason})" for key, reason in failures.items())
    medications = fetch_referenced_medications(resources, fhir_server, token, settings,
                                               full_urls=prefetched.full_urls(),
                                               extra_records=_draft_order_resources(context), deadline=deadline)
    return Gathered(resources + medications.medications, unavailable + medications.unavailable, fetched)
