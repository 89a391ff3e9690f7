"""A small, pure, in-memory FHIR R4 store behind the embedded demo server (service-contract.md §4, §8).

It holds the resources of the fixture patient Bundles (``fixtures/patients/*.json``, each a Bundle of type
``collection`` with a ``timestamp``), answers ``read`` by type and id, and answers ``search`` for the
search parameters listed in :data:`SEARCH_PARAMS` (the ones the service's prefetch templates and FHIR
queries use, plus what the SMART launcher's patient picker needs). No Flask, no I/O besides
:meth:`FhirStore.from_directory`.

Search is strict, never silently wrong: an unknown parameter, a modifier (``code:text``), a chain
(``subject.name``) or an empty value raises :class:`SearchError` (the endpoint answers 400). Result
parameters (``_count``, ``_offset``, ``_summary``, ``_format``, ``_pretty``, ``_sort``, ``_elements``,
``_total``) do not change which resources match; :meth:`FhirStore.search` accepts and ignores them, and the
endpoint applies them. ``_sort`` is applied by :func:`sort_resources` for the keys in :data:`SORT_KEYS`
(others raise :class:`SearchError`); ``_elements`` is not implemented (resources come whole).

Date shifting: with ``shift_to``, every date/dateTime/instant in a Bundle's resources moves by the whole
number of days between the Bundle's ``timestamp`` date and ``shift_to``, so the demo patients stay
"current" as the calendar moves while every interval (including age: ``birthDate`` is shifted too) stays
as written. ``meta`` (e.g. ``lastUpdated``) and narrative are left alone. Precision is preserved:
``YYYY-MM-DD`` and full dateTimes/instants shift their date part and keep time and zone verbatim;
partial dates (``YYYY``, ``YYYY-MM``) are shifted through their mid-point (2 July, the 15th) and truncated
back, so a shift of a few days leaves them unchanged.

Resources returned by :meth:`read` and :meth:`search` are the store's own objects: treat them as read-only.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("hcc_cds.fhirstore")

__all__ = [
    "RESULT_PARAMS",
    "SEARCH_PARAMS",
    "BundleInfo",
    "FhirStore",
    "FhirStoreError",
    "SearchError",
    "SearchParam",
    "shift_date_string",
    "sort_resources",
]


class FhirStoreError(ValueError):
    """A fixture Bundle cannot be loaded (not JSON, not a Bundle, resource without id, duplicate id …)."""


class SearchError(ValueError):
    """A search the store cannot answer correctly (unknown parameter, modifier, chain, empty value)."""


# --------------------------------------------------------------------------------------------------------
# Search parameter definitions
# --------------------------------------------------------------------------------------------------------

ParamKind = Literal["token", "reference", "string", "id", "self-reference"]


@dataclass(frozen=True)
class SearchParam:
    """One supported search parameter of a resource type.

    ``paths`` are dotted element paths (lists are flattened at every step). ``kind``:

    - ``token``: ``code``, ``system|code``, ``|code``, ``system|`` against code, Coding, CodeableConcept or
      Identifier values;
    - ``reference``: ``id``, ``Type/id`` or an absolute URL ending in ``Type/id``; ``target`` restricts
      the referenced type (``patient`` → Patient);
    - ``string``: case- and accent-insensitive "starts with" on any string inside the element;
    - ``id``: the resource's own id (``_id``);
    - ``self-reference``: a reference value that names the resource itself (``Patient?patient=123``).
    """

    name: str
    kind: ParamKind
    paths: tuple[str, ...] = ()
    target: str | None = None
    documentation: str = ""

    @property
    def fhir_type(self) -> str:
        """The FHIR search parameter type, for the CapabilityStatement."""
        return {"id": "token", "self-reference": "reference"}.get(self.kind, self.kind)


def _tok(name: str, *paths: str, doc: str = "") -> SearchParam:
    return SearchParam(name, "token", paths, documentation=doc)


def _str(name: str, *paths: str, doc: str = "") -> SearchParam:
    return SearchParam(name, "string", paths, documentation=doc)


_ID = SearchParam("_id", "id", documentation="Logical id of the resource (comma = OR)")
_PATIENT_VIA_SUBJECT = SearchParam(
    "patient", "reference", ("subject",), target="Patient",
    documentation="The patient (subject): id or Patient/id")
_PATIENT_VIA_PATIENT = SearchParam(
    "patient", "reference", ("patient",), target="Patient", documentation="The patient: id or Patient/id")
_SUBJECT = SearchParam("subject", "reference", ("subject",), documentation="The subject: Patient/id (or id)")
_STATUS = _tok("status", "status", doc="Status code (comma = OR)")
_CATEGORY = _tok("category", "category", doc="Category token")
_CODE = _tok("code", "code", doc="Code token: system|code, code or |code (comma = OR)")
_MED_CODE = _tok("code", "medicationCodeableConcept",
                 doc="Medication code token (medicationCodeableConcept): system|code (comma = OR)")
_INTENT = _tok("intent", "intent")


def _params(*params: SearchParam) -> dict[str, SearchParam]:
    return {param.name: param for param in (_ID, *params)}


#: Supported search parameters by resource type (FHIR R4 names and paths).
SEARCH_PARAMS: dict[str, dict[str, SearchParam]] = {
    "Patient": _params(
        SearchParam("patient", "self-reference", target="Patient",
                    documentation="Convenience: the patient itself (id or Patient/id), like _id"),
        _tok("identifier", "identifier"), _str("name", "name"), _str("family", "name.family"),
        _str("given", "name.given"), _tok("gender", "gender")),
    "Practitioner": _params(
        _tok("identifier", "identifier"), _str("name", "name"), _str("family", "name.family"),
        _str("given", "name.given")),
    "Organization": _params(_tok("identifier", "identifier"), _str("name", "name", "alias")),
    "Observation": _params(
        _PATIENT_VIA_SUBJECT, _SUBJECT, _CODE, _CATEGORY, _STATUS,
        _tok("value-concept", "valueCodeableConcept")),
    "Condition": _params(
        _PATIENT_VIA_SUBJECT, _SUBJECT, _CODE, _CATEGORY,
        _tok("clinical-status", "clinicalStatus"), _tok("verification-status", "verificationStatus")),
    "MedicationStatement": _params(_PATIENT_VIA_SUBJECT, _SUBJECT, _MED_CODE, _STATUS, _CATEGORY),
    "MedicationRequest": _params(_PATIENT_VIA_SUBJECT, _SUBJECT, _MED_CODE, _STATUS, _INTENT, _CATEGORY),
    "MedicationAdministration": _params(_PATIENT_VIA_SUBJECT, _SUBJECT, _MED_CODE, _STATUS),
    "MedicationDispense": _params(_PATIENT_VIA_SUBJECT, _SUBJECT, _MED_CODE, _STATUS),
    "Medication": _params(_CODE, _STATUS),
    "AdverseEvent": _params(
        _SUBJECT, _tok("event", "event"), _CATEGORY, _tok("seriousness", "seriousness"),
        _tok("severity", "severity"), _tok("actuality", "actuality")),
    "BodyStructure": _params(
        _PATIENT_VIA_PATIENT, _tok("morphology", "morphology"), _tok("location", "location")),
    "Procedure": _params(_PATIENT_VIA_SUBJECT, _SUBJECT, _CODE, _STATUS, _CATEGORY),
    "DiagnosticReport": _params(_PATIENT_VIA_SUBJECT, _SUBJECT, _CODE, _STATUS, _CATEGORY),
    "ServiceRequest": _params(_PATIENT_VIA_SUBJECT, _SUBJECT, _CODE, _STATUS, _INTENT, _CATEGORY),
    "ImagingStudy": _params(_PATIENT_VIA_SUBJECT, _SUBJECT, _STATUS),
    "AllergyIntolerance": _params(
        _PATIENT_VIA_PATIENT, _tok("code", "code", "reaction.substance"),
        _tok("clinical-status", "clinicalStatus"), _tok("verification-status", "verificationStatus"),
        _tok("category", "category"), _tok("criticality", "criticality")),
    "Encounter": _params(_PATIENT_VIA_SUBJECT, _SUBJECT, _STATUS, _tok("class", "class")),
    "CarePlan": _params(_PATIENT_VIA_SUBJECT, _SUBJECT, _STATUS, _CATEGORY, _INTENT),
    "ClinicalImpression": _params(_PATIENT_VIA_SUBJECT, _SUBJECT, _STATUS),
    "Immunization": _params(_PATIENT_VIA_PATIENT, _STATUS, _tok("vaccine-code", "vaccineCode")),
    "FamilyMemberHistory": _params(_PATIENT_VIA_PATIENT, _STATUS, _tok("code", "condition.code")),
    "DocumentReference": _params(
        _PATIENT_VIA_SUBJECT, _SUBJECT, _STATUS, _tok("type", "type"), _CATEGORY),
}

#: Parameters for a resource type found in the fixtures but absent from :data:`SEARCH_PARAMS`.
_FALLBACK_PARAMS: dict[str, SearchParam] = _params(
    SearchParam("patient", "reference", ("subject", "patient"), target="Patient"), _SUBJECT, _CODE, _STATUS)

#: Result parameters: accepted by :meth:`FhirStore.search`, applied (or ignored) by the endpoint.
SEARCH_CACHE_SIZE = 64  # searches whose results are kept (read-only store)
RESULT_PARAMS = frozenset({"_count", "_offset", "_summary", "_format", "_pretty", "_sort", "_elements",
                           "_total"})

#: ``_sort`` keys by resource type: element paths of date values, tried in order (FHIR R4 search parameters).
_COMMON_SORT = {"_id": ("id",), "_lastUpdated": ("meta.lastUpdated",)}
SORT_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "Observation": {"date": ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued")},
    "Condition": {"onset-date": ("onsetDateTime", "onsetPeriod.start"), "recorded-date": ("recordedDate",)},
    "MedicationStatement": {"effective": ("effectiveDateTime", "effectivePeriod.start")},
    "MedicationRequest": {"authoredon": ("authoredOn",)},
    "MedicationAdministration": {"effective-time": ("effectiveDateTime", "effectivePeriod.start")},
    "AdverseEvent": {"date": ("date",)},
    "Patient": {"birthdate": ("birthDate",)},
}

_RESOURCE_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


# --------------------------------------------------------------------------------------------------------
# Date shifting
# --------------------------------------------------------------------------------------------------------

_DATE_VALUE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(T.+)?)?)?$")
# Element names of FHIR date/dateTime/instant values that do not end in Date/DateTime/Instant.
_DATE_KEYS = frozenset({
    "date", "start", "end", "issued", "authoredOn", "recorded", "created", "started", "detected",
    "whenHandedOver", "whenPrepared", "lastOccurrence", "onset", "authored", "time", "event", "dateAsserted",
})
_DATE_SUFFIXES = ("Date", "DateTime", "Instant")  # birthDate, recordedDate, effectiveDateTime, …
_SKIP_KEYS = frozenset({"meta", "text", "id", "resourceType"})  # text: narrative


def shift_date_string(value: str, days: int) -> str:
    """Shift a FHIR date, dateTime or instant by ``days`` days, keeping its precision and format.

    ``2024-03-05T10:00:00+01:00`` +1 → ``2024-03-06T10:00:00+01:00`` (time and zone verbatim);
    ``2024-03`` and ``2024`` move through their mid-point (15th, 2 July). A value that is not a FHIR
    date is returned unchanged.
    """
    match = _DATE_VALUE_RE.match(value)
    if not match or days == 0:
        return value
    year_s, month_s, day_s, rest = match.groups()
    delta = timedelta(days=days)
    try:
        if day_s is not None:
            shifted = date(int(year_s), int(month_s), int(day_s)) + delta
            return f"{shifted.year:04d}-{shifted.month:02d}-{shifted.day:02d}{rest or ''}"
        if month_s is not None:
            shifted = date(int(year_s), int(month_s), 15) + delta
            return f"{shifted.year:04d}-{shifted.month:02d}"
        shifted = date(int(year_s), 7, 2) + delta
        return f"{shifted.year:04d}"
    except (ValueError, OverflowError):
        return value  # not a real calendar date (or out of range): leave as written


def _is_date_key(key: str) -> bool:
    return key in _DATE_KEYS or key.endswith(_DATE_SUFFIXES)


def _shift_in_place(node: Any, days: int) -> None:
    """Shift every date-valued element below ``node`` (a resource or part of one)."""
    if isinstance(node, list):
        for item in node:
            _shift_in_place(item, days)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in _SKIP_KEYS:
            continue
        if isinstance(value, str):
            if _is_date_key(key):
                node[key] = shift_date_string(value, days)
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            if _is_date_key(key):  # e.g. Timing.event
                node[key] = [shift_date_string(v, days) for v in value]
        else:
            _shift_in_place(value, days)


def _date_of(timestamp: str) -> date:
    match = _DATE_VALUE_RE.match(timestamp)
    if not match or match.group(3) is None:
        raise ValueError(timestamp)
    return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))


# --------------------------------------------------------------------------------------------------------
# Search value matching
# --------------------------------------------------------------------------------------------------------


def _split_escaped(value: str, separator: str) -> list[str]:
    """Split on ``separator`` except where escaped with a backslash (escapes are kept)."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            current.append(char + next(chars, ""))  # keep the escape for _unescape / the next split
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\([,|$\\])", r"\1", value)


def _element_values(resource: Any, path: str) -> Iterator[Any]:
    """Values at a dotted path, flattening lists at every step."""
    nodes: list[Any] = [resource]
    for step in path.split("."):
        following: list[Any] = []
        for node in nodes:
            if isinstance(node, dict) and step in node:
                value = node[step]
                following.extend(value if isinstance(value, list) else [value])
        nodes = following
    yield from nodes


@dataclass(frozen=True)
class _TokenSet:
    """The OR-alternatives of one token parameter value (``code=a|1,a|2,b|3``; one alternative is a set of one),
    as sets: one walk of the resource matches them all (a 25-code Observation query over 2,000 Observations).

    ``system|code`` needs both; ``code`` any system; ``|code`` no system; ``system|`` any code of the system. A
    plain code or boolean value has an implicit system and matches by code; an Identifier matches by its
    ``value``. A coding whose code or system is not a string matches nothing."""

    pairs: frozenset[tuple[str, str]]  # system|code
    any_system: frozenset[str]  # code (any system)
    no_system: frozenset[str]  # |code (no system)
    whole_systems: frozenset[str]  # system| (any code of the system)
    codes: frozenset[str]  # every non-empty code: what a plain code or boolean value is compared with

    @classmethod
    def of(cls, tokens: Sequence[tuple[str | None, str]]) -> _TokenSet:
        return cls(frozenset((s, c) for s, c in tokens if s and c), frozenset(c for s, c in tokens if s is None),
                   frozenset(c for s, c in tokens if s == ""), frozenset(s for s, c in tokens if s and not c),
                   frozenset(c for _s, c in tokens if c))

    def matches_coding(self, coding: Mapping[str, Any], key: str = "code") -> bool:
        """A Coding (``key="code"``) or an Identifier (``key="value"``) against every alternative."""
        code = coding.get(key)
        if not isinstance(code, str):
            code = None
        if code in self.any_system:
            return True
        if "system" not in coding:
            return code in self.no_system
        system = coding.get("system")
        return isinstance(system, str) and ((system, code) in self.pairs or system in self.whole_systems)

    def matches(self, value: Any) -> bool:
        """A token-typed element value against every alternative."""
        if isinstance(value, str):  # a FHIR code: its system is implicit
            return value in self.codes
        if isinstance(value, bool):
            return ("true" if value else "false") in self.codes
        if not isinstance(value, dict):
            return False
        if "coding" in value:  # CodeableConcept
            return any(self.matches_coding(c) for c in value.get("coding") or [] if isinstance(c, dict))
        if "value" in value and "code" not in value:  # Identifier
            return self.matches_coding(value, "value")
        return self.matches_coding(value)  # Coding


def _token_matcher(param: SearchParam, options: Sequence[str]) -> Callable[[dict[str, Any]], bool]:
    """A predicate: true when a value at one of ``param``'s paths matches one of the token ``options``."""
    tokens = _TokenSet.of([_parse_token(option) for option in options])
    return lambda resource: any(tokens.matches(value) for path in param.paths
                                for value in _element_values(resource, path))


def _parse_token(raw: str) -> tuple[str | None, str]:
    pieces = _split_escaped(raw, "|")
    if len(pieces) == 1:
        return None, _unescape(pieces[0])
    if len(pieces) == 2:
        return _unescape(pieces[0]), _unescape(pieces[1])
    raise SearchError(f"malformed token {raw!r}: more than one unescaped '|'")


def _parse_reference(raw: str) -> tuple[str | None, str] | None:
    """``123`` → (None, 123); ``Patient/123`` or ``http://x/fhir/Patient/123[/_history/1]`` → (Patient, 123).

    Returns None for references that cannot name a stored resource (``#contained``, ``urn:…``).
    """
    ref = raw.strip()
    if not ref or ref.startswith(("#", "urn:")):
        return None
    ref = ref.split("/_history/", 1)[0].rstrip("/")
    parts = ref.split("/")
    if len(parts) == 1:
        return None, parts[0]
    return parts[-2], parts[-1]


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in ("extension", "period", "use", "system"):
                yield from _strings(item)


# --------------------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleInfo:
    """What was loaded from one fixture Bundle."""

    source: str  # file name, or "bundle[i]" for from_bundles
    bundle_id: str | None
    timestamp: str | None  # the Bundle timestamp after date shifting (as served "now" of the fixture)
    original_timestamp: str | None
    shift_days: int
    patient_ids: tuple[str, ...]


class FhirStore:
    """Resources by type and id, in load order, with FHIR-style read and search."""

    def __init__(self) -> None:
        self._resources: dict[str, dict[str, dict[str, Any]]] = {}
        self._bundles: list[BundleInfo] = []
        # results of recent searches (the store only changes while loading, which empties it): paging through
        # 2,000 Observations re-runs the same search for every page
        self._searches: OrderedDict[tuple, tuple[dict[str, Any], ...]] = OrderedDict()

    # ---- loading -------------------------------------------------------------------------------------

    @classmethod
    def from_bundles(cls, bundles: Iterable[Mapping[str, Any]], *, shift_to: date | None = None) -> FhirStore:
        """Load Bundles (JSON objects); a type/id twice (in one Bundle or across) → :class:`FhirStoreError`.

        With ``shift_to``, each Bundle's resources are date-shifted by ``shift_to - timestamp.date()``
        (whole days); the Bundle then needs a ``timestamp``.
        """
        store = cls()
        for index, bundle in enumerate(bundles):
            store._load_bundle(bundle, f"bundle[{index}]", shift_to)
        store._check_demo_requirements()
        return store

    @classmethod
    def from_directory(cls, path: str | Path, shift_to: date | None = None) -> FhirStore:
        """Load every ``*.json`` Bundle in ``path`` (e.g. ``fixtures/patients/``), in file-name order.

        A missing directory, a file that is not JSON or not a Bundle → :class:`FhirStoreError`.
        """
        directory = Path(path)
        if not directory.is_dir():
            raise FhirStoreError(f"fixture directory not found: {directory}")
        store = cls()
        for file in sorted(directory.glob("*.json")):
            try:
                bundle = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise FhirStoreError(f"{file.name}: not readable JSON ({exc})") from exc
            store._load_bundle(bundle, file.name, shift_to)
        store._check_demo_requirements()
        return store

    def _load_bundle(self, bundle: Any, source: str, shift_to: date | None) -> None:
        if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
            raise FhirStoreError(f"{source}: not a FHIR Bundle")
        if bundle.get("type") != "collection":
            log.warning("fixture %s: Bundle.type is %r, expected 'collection'", source, bundle.get("type"))
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            raise FhirStoreError(f"{source}: Bundle.entry is not a list")
        original_ts = bundle.get("timestamp")
        if original_ts is not None and not isinstance(original_ts, str):
            raise FhirStoreError(f"{source}: Bundle.timestamp is not a string")
        shift_days = 0
        if shift_to is not None:
            if not original_ts:
                raise FhirStoreError(f"{source}: date shifting needs Bundle.timestamp")
            try:
                shift_days = (shift_to - _date_of(original_ts)).days
            except ValueError as exc:
                raise FhirStoreError(f"{source}: Bundle.timestamp {original_ts!r} is not an instant") from exc

        resources: list[dict[str, Any]] = []
        full_urls: dict[str, str] = {}
        for position, entry in enumerate(entries):
            resource = entry.get("resource") if isinstance(entry, Mapping) else None
            if not isinstance(resource, Mapping):
                raise FhirStoreError(f"{source}: entry {position} has no resource")
            rtype, rid = resource.get("resourceType"), resource.get("id")
            if not isinstance(rtype, str) or not _RESOURCE_TYPE_RE.match(rtype):
                raise FhirStoreError(f"{source}: entry {position} has no valid resourceType")
            if not isinstance(rid, str) or not _ID_RE.match(rid):
                raise FhirStoreError(f"{source}: {rtype} at entry {position} has no valid id")
            copy = json.loads(json.dumps(resource))  # own, plain-JSON copy
            if shift_days:
                _shift_in_place(copy, shift_days)
            resources.append(copy)
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str) and full_url:
                full_urls[full_url] = f"{rtype}/{rid}"

        for resource in resources:  # bundle-local references (urn:uuid:…) → Type/id, as a server serves them
            if full_urls:
                _rewrite_references(resource, full_urls)
            self._add(resource, source)

        self._bundles.append(BundleInfo(
            source=source,
            bundle_id=bundle.get("id") if isinstance(bundle.get("id"), str) else None,
            timestamp=shift_date_string(original_ts, shift_days) if original_ts else None,
            original_timestamp=original_ts,
            shift_days=shift_days,
            patient_ids=tuple(r["id"] for r in resources if r["resourceType"] == "Patient"),
        ))

    def _add(self, resource: dict[str, Any], source: str) -> None:
        by_id = self._resources.setdefault(resource["resourceType"], {})
        if resource["id"] in by_id:
            raise FhirStoreError(f"{source}: duplicate {resource['resourceType']}/{resource['id']}")
        by_id[resource["id"]] = resource
        self._searches.clear()

    def add(self, resource: Mapping[str, Any]) -> None:
        """Add one resource (e.g. the demo server's default Practitioner). Duplicate → FhirStoreError."""
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if not isinstance(rtype, str) or not _RESOURCE_TYPE_RE.match(rtype):
            raise FhirStoreError("resource has no valid resourceType")
        if not isinstance(rid, str) or not _ID_RE.match(rid):
            raise FhirStoreError(f"{rtype} has no valid id")
        self._add(json.loads(json.dumps(resource)), "add()")

    def _check_demo_requirements(self) -> None:
        """Warn about what breaks real clients (§8): Patients without name[0].given."""
        for patient in self._resources.get("Patient", {}).values():
            if not patient_has_given_name(patient):
                log.warning("fixture Patient/%s has no name[0].given (the SMART launcher needs it)",
                            patient["id"])

    # ---- queries -------------------------------------------------------------------------------------

    @property
    def bundles(self) -> list[BundleInfo]:
        """One :class:`BundleInfo` per loaded Bundle, in load order."""
        return list(self._bundles)

    def timestamp_for(self, patient_id: str) -> str | None:
        """The (shifted) timestamp of the Bundle that holds ``Patient/patient_id``."""
        for info in self._bundles:
            if patient_id in info.patient_ids:
                return info.timestamp
        return None

    def resource_types(self) -> list[str]:
        """Types that can be read and searched: those in :data:`SEARCH_PARAMS` and those loaded."""
        return sorted(set(SEARCH_PARAMS) | set(self._resources))

    def supports(self, resource_type: str) -> bool:
        """Whether ``resource_type`` is served (searching it gives a Bundle, maybe empty)."""
        return resource_type in SEARCH_PARAMS or resource_type in self._resources

    def search_params(self, resource_type: str) -> dict[str, SearchParam]:
        """The search parameters supported for ``resource_type``."""
        return SEARCH_PARAMS.get(resource_type, _FALLBACK_PARAMS)

    def patients(self) -> list[dict[str, Any]]:
        """All Patients, in load order."""
        return list(self._resources.get("Patient", {}).values())

    def count(self, resource_type: str | None = None) -> int:
        """Number of resources (of one type, or all)."""
        if resource_type is not None:
            return len(self._resources.get(resource_type, {}))
        return sum(len(by_id) for by_id in self._resources.values())

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The resource ``resource_type/resource_id`` or None."""
        return self._resources.get(resource_type, {}).get(resource_id)

    def search(self, resource_type: str, params: Mapping[str, Sequence[str] | str]) -> list[dict[str, Any]]:
        """Resources of ``resource_type`` matching every parameter, in load order.

        ``params`` maps a parameter name to its values (a repeated parameter = AND); within one value a
        comma means OR (``code=http://loinc.org|1742-6,http://loinc.org|1751-7``). Unsupported type,
        parameter, modifier or chain, or an empty value → :class:`SearchError`.
        """
        if not self.supports(resource_type):
            raise SearchError(f"resource type {resource_type!r} is not supported")
        supported = self.search_params(resource_type)
        criteria: list[tuple[SearchParam, list[list[str]]]] = []
        for name, raw_values in params.items():
            values = [raw_values] if isinstance(raw_values, str) else list(raw_values)
            if name in RESULT_PARAMS:
                continue
            if ":" in name:
                raise SearchError(f"search modifiers are not supported: {name!r}")
            if "." in name:
                raise SearchError(f"chained search parameters are not supported: {name!r}")
            param = supported.get(name)
            if param is None:
                names = ", ".join(sorted(supported) + sorted(RESULT_PARAMS))
                raise SearchError(
                    f"unknown search parameter {name!r} for {resource_type} (supported: {names})")
            alternatives: list[list[str]] = []
            for value in values:
                options = _split_escaped(value, ",")
                if not value or any(not part.strip() for part in options):
                    raise SearchError(f"search parameter {name!r} has an empty value")
                alternatives.append(options)
            criteria.append((param, alternatives))

        key = (resource_type, tuple((param.name, tuple(map(tuple, ands))) for param, ands in criteria))
        cached = self._searches.get(key)
        if cached is not None:
            self._searches.move_to_end(key)
            return list(cached)
        matchers = [self._any_matcher(param, ors) for param, ands in criteria for ors in ands]
        results = [resource for resource in self._resources.get(resource_type, {}).values()
                   if all(match(resource) for match in matchers)]
        self._searches[key] = tuple(results)
        if len(self._searches) > SEARCH_CACHE_SIZE:
            self._searches.popitem(last=False)
        return results

    def _any_matcher(self, param: SearchParam, options: list[str]) -> Callable[[dict[str, Any]], bool]:
        """A predicate for one parameter value: true when any of its OR-alternatives matches."""
        if param.kind == "token":
            return _token_matcher(param, options)
        matchers = [self._matcher(param, option) for option in options]
        return lambda resource: any(match(resource) for match in matchers)

    @staticmethod
    def _matcher(param: SearchParam, raw: str) -> Callable[[dict[str, Any]], bool]:
        """A predicate for one OR-alternative of one parameter value."""
        if param.kind == "id":
            wanted = _unescape(raw)
            return lambda resource: resource.get("id") == wanted
        if param.kind in ("reference", "self-reference"):
            parsed = _parse_reference(_unescape(raw))
            if parsed is None:
                raise SearchError(f"{param.name}: {raw!r} is not a resolvable reference")
            wanted_type, wanted_id = parsed
            if param.target and wanted_type not in (None, param.target):
                raise SearchError(f"{param.name} must reference a {param.target}, not {wanted_type}")
            if param.kind == "self-reference":
                return lambda resource: resource.get("id") == wanted_id
            target = param.target

            def match_reference(resource: dict[str, Any]) -> bool:
                for path in param.paths:
                    for value in _element_values(resource, path):
                        ref = value.get("reference") if isinstance(value, dict) else None
                        parsed_ref = _parse_reference(ref) if isinstance(ref, str) else None
                        if parsed_ref is None:
                            continue
                        ref_type, ref_id = parsed_ref
                        required_type = wanted_type or target  # Patient/1, or the param's target
                        if ref_id == wanted_id and required_type in (None, ref_type):
                            return True
                return False

            return match_reference
        if param.kind == "token":
            return _token_matcher(param, [raw])
        # string: starts-with, case and accent insensitive
        prefix = _fold(_unescape(raw).strip())
        return lambda resource: any(
            _fold(text).startswith(prefix) or any(_fold(word).startswith(prefix) for word in text.split())
            for path in param.paths for value in _element_values(resource, path) for text in _strings(value))


def _sort_value(resource: Mapping[str, Any], paths: tuple[str, ...]) -> str | None:
    """The first value found along ``paths``, normalised so that strings compare in time order (UTC)."""
    for path in paths:
        for value in _element_values(resource, path):
            if isinstance(value, str) and value:
                return _sortable(value)
    return None


def _sortable(value: str) -> str:
    """A dateTime as a UTC ISO string (date-only: start of day); ids and other strings unchanged."""
    if _DATE_VALUE_RE.match(value) is None:
        return value
    text = value.replace("Z", "+00:00") + {4: "-01-01", 7: "-01"}.get(len(value), "")  # YYYY, YYYY-MM
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def sort_resources(resources: list[dict[str, Any]], resource_type: str, sort: str) -> list[dict[str, Any]]:
    """``resources`` ordered by a FHIR ``_sort`` value (``date``, ``-date``, ``_id,-_lastUpdated`` …).

    Resources without a value for a key come after those with one, whatever the direction; ties keep
    load order. An unsupported key raises :class:`SearchError`.
    """
    keys = [part.strip() for part in sort.split(",")]
    supported = {**_COMMON_SORT, **SORT_KEYS.get(resource_type, {})}
    if not keys or any(not key for key in keys):
        raise SearchError("_sort has an empty key")
    ordered = list(resources)
    for key in reversed(keys):  # stable sorts, last key first
        descending = key.startswith("-")
        paths = supported.get(key.lstrip("-"))
        if paths is None:
            raise SearchError(f"_sort key {key.lstrip('-')!r} is not supported for {resource_type} "
                              f"(supported: {', '.join(sorted(supported))})")
        present = [r for r in ordered if _sort_value(r, paths) is not None]
        absent = [r for r in ordered if _sort_value(r, paths) is None]
        present.sort(key=lambda r, p=paths: _sort_value(r, p) or "", reverse=descending)
        ordered = present + absent
    return ordered


def patient_has_given_name(patient: Mapping[str, Any]) -> bool:
    """Whether ``name[0].given`` holds a non-empty string (the SMART launcher shows it)."""
    names = patient.get("name")
    if not isinstance(names, list) or not names or not isinstance(names[0], dict):
        return False
    given = names[0].get("given")
    return isinstance(given, list) and any(isinstance(g, str) and g.strip() for g in given)


def _rewrite_references(node: Any, full_urls: Mapping[str, str]) -> None:
    if isinstance(node, list):
        for item in node:
            _rewrite_references(item, full_urls)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in full_urls:
                node[key] = full_urls[value]
            else:
                _rewrite_references(value, full_urls)
