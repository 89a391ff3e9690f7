"""The embedded demo FHIR R4 endpoint at ``{base}/fhir`` (service-contract.md §4, §8).

Read-only and open (no authorization): ``GET metadata``, ``GET {Type}/{id}``, ``GET {Type}?…`` and
``POST {Type}/_search`` (form body merged with the query string) over the fixture patients, loaded once
(and date-shifted to "today" by default, see :mod:`service.fhirstore`) when the blueprint is created.

What real clients need and get here:

- JSON (``application/fhir+json``) always, whatever the Accept header; errors are OperationOutcomes
  (400 bad search, 404 unknown type/id/path, 405 write attempts, 406 ``_format`` other than JSON);
- ``_sort`` on ``_id``, ``_lastUpdated`` and each type's date (``date``, ``onset-date``, ``authoredon`` …),
  ``-`` for descending; another key is 400 under ``Prefer: handling=strict`` and otherwise left out of the
  ``self`` link (so a client can see it was not applied);
- searchset Bundles with ``total``, ``self``/``first``/``previous``/``next`` links and ``fullUrl``\\ s built
  from the URL the request reached (host *and* path prefix), so a proxy such as the SMART launcher,
  which rewrites only the base it was given, keeps working. Paging by ``_count`` (default 50, at most
  1000) and ``_offset``; results are in a stable load order, so pages never overlap or skip;
- ``Access-Control-Allow-Origin: *`` on every response (errors too) and a token-free 204 to every
  CORS preflight, from this blueprint alone;
- at least one Practitioner (a default one is added when the fixtures have none).

Every request under the prefix is routed to this blueprint (catch-all rules with all methods), so its
``after_request`` (CORS) and its JSON errors apply to unknown paths and wrong methods too.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import orjson
from flask import Blueprint, Response, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from .fhirstore import FhirStore, SearchError, sort_resources

log = logging.getLogger("hcc_cds.demo_fhir")

FHIR_JSON = "application/fhir+json"
FHIR_VERSION = "4.0.1"
DEFAULT_COUNT = 50
MAX_COUNT = 1000
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
CORS_ALLOW_METHODS = "GET, POST, OPTIONS"
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Accept"

DEFAULT_PRACTITIONER: dict[str, Any] = {
    "resourceType": "Practitioner",
    "id": "demo-practitioner",
    "active": True,
    "name": [{"use": "official", "family": "Demo", "given": ["Dana"], "prefix": ["Dr."]}],
    "qualification": [{"code": {"text": "Medical oncologist (demo)"}}],
}

_ISSUE_CODES = {400: "invalid", 404: "not-found", 405: "not-supported", 406: "not-supported",
                413: "too-costly", 415: "not-supported"}
_SUMMARY_VALUES = frozenset({"true", "false", "text", "data", "count"})
_IGNORED_RESULT_PARAMS = frozenset({"_elements", "_total"})  # accepted, not applied


class _FhirHttpError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def resolve_shift(shift_to: date | str | None) -> date | None:
    if shift_to is None or isinstance(shift_to, date):
        return shift_to
    if shift_to == "today":
        return datetime.now(UTC).date()
    return date.fromisoformat(shift_to)


def load_store(fixtures_dir: Path, shift_to: date | None) -> FhirStore:
    """The demo store: the fixture Bundles (empty when the directory is missing) plus a Practitioner."""
    if Path(fixtures_dir).is_dir():
        store = FhirStore.from_directory(fixtures_dir, shift_to=shift_to)
    else:
        log.warning("demo FHIR fixtures directory %s not found: serving no patients", fixtures_dir)
        store = FhirStore()
    if store.count("Practitioner") == 0:
        store.add(DEFAULT_PRACTITIONER)
    if not store.patients():
        log.warning("demo FHIR server has no Patient resources (fixtures in %s)", fixtures_dir)
    return store


def create_blueprint(
    fixtures_dir: Path,
    *,
    shift_to: date | str | None = "today",
    url_prefix: str = "/fhir",
    store: FhirStore | None = None,
    token_check: Callable[[str], str | None] | None = None,
) -> Blueprint:
    """The ``/fhir`` blueprint serving ``fixtures_dir`` (or a ready ``store``).

    ``shift_to``: ``"today"`` (UTC date at creation, the default), an ISO date string, a ``date``, or
    ``None`` for the fixtures' dates as written. ``token_check`` (the demo SMART authorization server's):
    a request that carries a bearer token is answered only when it returns None for it (else 401); a
    request without one stays open.
    """
    served = store if store is not None else load_store(Path(fixtures_dir), resolve_shift(shift_to))
    prefix = "/" + url_prefix.strip("/")
    bp = Blueprint("demo_fhir", __name__, url_prefix=prefix)

    def base_url() -> str:
        """The FHIR base as the client reached it (scheme, host, script root and prefix)."""
        return request.url_root.rstrip("/") + prefix

    # ---- responses -------------------------------------------------------------------------------------

    def fhir_response(body: Mapping[str, Any], status: int = 200,
                      headers: Mapping[str, str] | None = None) -> Response:
        pretty = request.args.get("_pretty") == "true"
        try:  # orjson: a 1,000-resource page in a fifth of the time; the standard library for what it refuses
            text: bytes | str = orjson.dumps(body, option=orjson.OPT_INDENT_2 if pretty else None)
        except (TypeError, orjson.JSONEncodeError):
            text = json.dumps(body, ensure_ascii=False, indent=2 if pretty else None,
                              separators=None if pretty else (",", ":"))
        response = Response(text, status=status, mimetype=FHIR_JSON)
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    def outcome(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
        body = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": _ISSUE_CODES.get(status, "exception"),
                       "diagnostics": message}],
        }
        return fhir_response(body, status, headers)

    @bp.errorhandler(_FhirHttpError)
    def _fhir_error(exc: _FhirHttpError) -> Response:
        return outcome(exc.status, exc.message, exc.headers)

    @bp.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:  # e.g. 413 while parsing a form body
        return outcome(exc.code or 500, exc.description or exc.name)

    def not_allowed(allowed: str) -> _FhirHttpError:
        return _FhirHttpError(405, f"{request.method} is not supported: this demo FHIR server is read-only",
                              {"Allow": allowed})

    def check_type(resource_type: str) -> None:
        if not served.supports(resource_type):
            raise _FhirHttpError(404, f"unknown or unsupported resource type: {resource_type}")

    def check_format(params: MultiDict[str, str]) -> None:
        for value in params.getlist("_format"):
            if "json" not in value.lower():
                raise _FhirHttpError(406, f"_format {value!r} is not supported: this server speaks JSON only")

    # ---- CORS ------------------------------------------------------------------------------------------

    @bp.before_request
    def _preflight() -> Response | None:
        if request.method == "OPTIONS":
            return Response(status=204)
        header = request.headers.get("Authorization")
        if header is not None and token_check is not None:
            scheme, _, token = header.partition(" ")
            problem = ("Authorization must be 'Bearer <token>'" if scheme.lower() != "bearer" or not token.strip()
                       else token_check(token.strip()))
            if problem:
                raise _FhirHttpError(401, problem, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return None

    @bp.after_request
    def _cors(response: Response) -> Response:
        response.headers["Access-Control-Allow-Origin"] = "*"
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = CORS_ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response.headers["Access-Control-Expose-Headers"] = "Location, Content-Location, ETag"
        return response

    # ---- routes ----------------------------------------------------------------------------------------

    @bp.route("/metadata", methods=ALL_METHODS)
    def metadata() -> Response:
        if request.method not in ("GET", "HEAD"):
            raise not_allowed("GET, OPTIONS")
        return fhir_response(capability_statement(served, base_url()))

    @bp.route("/<resource_type>", methods=ALL_METHODS)
    def type_level(resource_type: str) -> Response:
        check_type(resource_type)
        if request.method not in ("GET", "HEAD"):
            raise not_allowed("GET, OPTIONS")
        return search(resource_type, MultiDict(request.args))

    @bp.route("/<resource_type>/_search", methods=ALL_METHODS)
    def type_search(resource_type: str) -> Response:
        check_type(resource_type)
        if request.method not in ("GET", "HEAD", "POST"):
            raise not_allowed("GET, POST, OPTIONS")
        params: MultiDict[str, str] = MultiDict(request.args)
        if request.method == "POST":
            if request.mimetype not in ("", "application/x-www-form-urlencoded"):
                raise _FhirHttpError(415, "POST _search takes an application/x-www-form-urlencoded body")
            # Without a Content-Type Werkzeug parses no form: read the body as one, never silently ignore it.
            if request.mimetype:
                pairs = list(request.form.items(multi=True))
            else:
                pairs = parse_qsl(request.get_data(as_text=True), keep_blank_values=True)
            for key, value in pairs:
                params.add(key, value)
        return search(resource_type, params)

    @bp.route("/<resource_type>/<resource_id>", methods=ALL_METHODS)
    def instance(resource_type: str, resource_id: str) -> Response:
        check_type(resource_type)
        if request.method not in ("GET", "HEAD"):
            raise not_allowed("GET, OPTIONS")
        check_format(MultiDict(request.args))
        resource = served.read(resource_type, resource_id)
        if resource is None:
            raise _FhirHttpError(404, f"{resource_type}/{resource_id} not found")
        location = f"{base_url()}/{resource_type}/{resource_id}"
        return fhir_response(resource, headers={"Content-Location": location})

    @bp.route("/", methods=ALL_METHODS, strict_slashes=False)
    @bp.route("/<path:rest>", methods=ALL_METHODS)
    def other(rest: str = "") -> Response:
        if request.method not in ("GET", "HEAD"):
            raise not_allowed("GET, OPTIONS")
        raise _FhirHttpError(404, "not supported by this demo FHIR server: use metadata, {Type}/{id}, "
                                  "{Type}?params or {Type}/_search")

    # ---- search ----------------------------------------------------------------------------------------

    def search(resource_type: str, params: MultiDict[str, str]) -> Response:
        check_format(params)
        count = _int_param(params, "_count", DEFAULT_COUNT)
        count = min(count, MAX_COUNT)
        offset = _int_param(params, "_offset", 0)
        summary = params.get("_summary")
        if summary is not None and summary not in _SUMMARY_VALUES:
            raise _FhirHttpError(400, f"_summary {summary!r} is not supported")
        criteria = {key: params.getlist(key) for key in params}
        try:
            matches = served.search(resource_type, criteria)
        except SearchError as exc:
            raise _FhirHttpError(400, str(exc)) from exc
        sort = ",".join(params.getlist("_sort"))
        if sort:
            try:
                matches = sort_resources(matches, resource_type, sort)
            except SearchError as exc:
                if _strict():
                    raise _FhirHttpError(400, str(exc)) from exc
                params = MultiDict([(k, v) for k, v in params.items(multi=True) if k != "_sort"])  # not applied

        total = len(matches)
        page = [] if summary == "count" or count == 0 else matches[offset:offset + count]
        kept = [(key, value) for key, value in params.items(multi=True)
                if key not in ("_count", "_offset") and key not in _IGNORED_RESULT_PARAMS]
        type_url = f"{base_url()}/{resource_type}"

        def link(relation: str, page_offset: int) -> dict[str, str]:
            query = [*kept, ("_count", str(count))]
            if page_offset:
                query.append(("_offset", str(page_offset)))
            encoded = urlencode(query, quote_via=quote, safe="/:,")
            return {"relation": relation, "url": f"{type_url}?{encoded}"}

        links = [link("self", offset), link("first", 0)]
        if count and summary != "count":
            if offset > 0:
                links.append(link("previous", max(0, offset - count)))
            if offset + count < total:
                links.append(link("next", offset + count))
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"lastUpdated": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")},
            "type": "searchset",
            "total": total,
            "link": links,
        }
        if page:
            bundle["entry"] = [
                {"fullUrl": f"{type_url}/{resource['id']}", "resource": resource, "search": {"mode": "match"}}
                for resource in page
            ]
        return fhir_response(bundle)

    bp.record_once(lambda state: state.app.extensions.setdefault("hcc_cds_demo_fhir_store", served))
    return bp


def _strict() -> bool:
    """``Prefer: handling=strict`` (FHIR R4 search §3.1.1.5.1): refuse what cannot be applied."""
    preferences = re.split(r"[;,]", request.headers.get("Prefer", ""))
    return any(part.strip().lower() == "handling=strict" for part in preferences)


def _int_param(params: MultiDict[str, str], name: str, default: int) -> int:
    values = params.getlist(name)
    if not values:
        return default
    if len(set(values)) > 1:
        raise _FhirHttpError(400, f"{name} given more than once with different values")
    try:
        number = int(values[0])
    except ValueError:
        number = -1
    if number < 0:
        raise _FhirHttpError(400, f"{name} must be a non-negative integer, not {values[0]!r}")
    return number


def capability_statement(store: FhirStore, base: str) -> dict[str, Any]:
    """The server's CapabilityStatement (R4): open server, JSON, read + search-type per resource type."""
    resources = []
    for resource_type in store.resource_types():
        params = store.search_params(resource_type)
        resources.append({
            "type": resource_type,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": p.name, "type": p.fhir_type,
                 **({"documentation": p.documentation} if p.documentation else {})}
                for p in params.values()
            ],
        })
    return {
        "resourceType": "CapabilityStatement",
        "id": "hcc-cds-demo-fhir",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "publisher": "hcc-second-line-cds",
        "kind": "instance",
        "software": {"name": "hcc-second-line-cds embedded demo FHIR server"},
        "implementation": {
            "description": "Fixture patients for the HCC second-line CDS Hooks demo (read-only)",
            "url": base,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["json", FHIR_JSON],
        "rest": [{
            "mode": "server",
            "documentation": "Read-only. Search results page with _count (default 50, max 1000) and _offset.",
            "security": {"cors": True, "description": "Open demo server: requests without a token are answered; "
                         "a bearer token, when sent, must come from .well-known/smart-configuration"},
            "resource": resources,
        }],
    }
