"""Outbound FHIR client: prefetch-token substitution, the ``fhirServer`` allowlist, and bounded fetches.

The transport is :mod:`service.transport` (the standard library's ``http.client`` with kept-alive connections):
fhirclient 4.x's ``FHIRServer._get`` calls ``session.get(url, headers=headers)`` with no timeout and no
streaming, and ``request_json`` reads the whole body, so neither timeouts nor a byte bound can be set per request
through it; why not requests or urllib3 is in that module.

Every request carries ``Accept: application/fhir+json``, ``Prefer: handling=strict`` (a server must not ignore a
search parameter it does not support and return other patients' data) and, when a token is given,
``Authorization: Bearer``.
Redirects are not followed (a 3xx is reported as ``HTTP 3xx``), so the token only goes to the allowed origin.
Neither the token nor URLs (which hold patient ids) are logged or put into failure reasons.
"""

from __future__ import annotations

import http.client
import logging
import re
import ssl
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

from flask import g, has_request_context, request

from service import jsonparse, metrics, transport
from service.config import Settings

log = logging.getLogger("hcc_cds.fhir")

FHIR_JSON = "application/fhir+json"
MAX_WORKERS = 8
_CHUNK = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}
_KEEP_MODES = {None, "match", "include"}
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c|2e)", re.IGNORECASE)
_UNSAFE_URL_CHARACTER = re.compile(r"[\s\x00-\x1f\\]")  # whitespace (as str.isspace), control characters, a backslash


@dataclass
class FetchOutcome:
    """What :func:`fetch` got: resources per key, or a short clinician-safe reason per failed key."""

    resources: dict[str, list[dict]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


# --- prefetch tokens -------------------------------------------------------------------------------------


def _encode(value: str) -> str:
    """URL-encode like JavaScript's ``encodeURIComponent`` (what the CDS Hooks sandbox does)."""
    return quote(value, safe="-_.!~*'()")


def _token_value(token: str, context: Mapping[str, object]) -> str | None:
    if token.startswith("context."):
        name = token[len("context."):]
        if not name or "." in name:
            return None
        value = context.get(name)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value) if isinstance(value, str | int | float) else None
    resource_type = _USER_TOKENS.get(token)
    user_id = context.get("userId")
    if resource_type is None or not isinstance(user_id, str):
        return None
    parts = user_id.rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] != resource_type or not parts[-1]:
        return None
    return parts[-1]


def substitute(template: str, context: Mapping[str, object]) -> str | None:
    """Fill CDS Hooks prefetch tokens in ``template`` from the hook ``context``, URL-encoding each value.

    ``{{context.x}}`` takes a root-level primitive context field; ``{{userPractitionerId}}``,
    ``{{userPractitionerRoleId}}``, ``{{userPatientId}}`` and ``{{userRelatedPersonId}}`` take the id from
    ``context.userId`` (``Practitioner/abc`` -> ``abc``). Returns None when any token cannot be resolved.
    """
    unresolved = False

    def replace(match: re.Match[str]) -> str:
        nonlocal unresolved
        value = _token_value(match.group(1), context)
        if value is None or value == "":
            unresolved = True
            return ""
        return _encode(value)

    result = _TOKEN.sub(replace, template)
    return None if unresolved or "{{" in result or "}}" in result else encode_query(result)


_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


def encode_query(query: str) -> str:
    """Percent-encode every search parameter value of ``query`` (``Type?name=value&...``), so that
    ``code=http://loinc.org|1751-7`` goes out as ``code=http%3A%2F%2Floinc.org%7C1751-7`` and survives proxies
    that mangle a bare ``|`` (service-contract.md §2; FHIR R4 search §3.1.1.4: values are URL-encoded).

    A raw ``,`` stays the FHIR OR-separator; a ``%2C`` (a comma inside a value) stays encoded. Already-encoded
    values are decoded first, so encoding twice gives the same string.
    """
    path, sep, params = query.partition("?")
    if not sep:
        return query
    encoded = []
    for pair in params.split("&"):
        name, eq, value = pair.partition("=")
        if not eq:
            encoded.append(pair)
            continue
        parts = _UNESCAPED_COMMA.split(value)
        encoded.append(name + "=" + ",".join(quote(unquote(part), safe="") for part in parts))
    return path + "?" + "&".join(encoded)


# --- allowlist ---------------------------------------------------------------------------------------------


def _parse_base(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path without trailing "/") of an http(s) base URL, or None if unusable."""
    if not isinstance(url, str) or _UNSAFE_URL_CHARACTER.search(url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    if parts.query or parts.fragment or "@" in parts.netloc:
        return None
    path = parts.path.rstrip("/")
    if _ENCODED_SEPARATOR.search(path):  # %2F, %5C or %2E: a server may decode them into another path
        return None
    if any(unquote(segment) in {".", ".."} for segment in path.split("/")):
        return None
    return scheme, parts.hostname.lower().rstrip("."), port or _DEFAULT_PORTS[scheme], path


def _under_base(url: str, fhir_server: str) -> bool:
    """True when ``url`` (query allowed) is on the FHIR server's scheme, host and port and under its base path,
    so paging never carries the access token outside the server the client named (or the allowlisted path)."""
    base = _parse_base(fhir_server)
    parts = urlsplit(url)
    target = _parse_base(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    if base is None or target is None or base[:3] != target[:3]:
        return False
    return target[3] == base[3] or target[3].startswith(base[3] + "/")


def is_allowed(fhir_server: str, settings: Settings) -> bool:
    """True when ``fhir_server`` is an http(s) URL under one of ``settings.fhir_allowlist``'s prefixes.

    Prefixes match on scheme, host and port exactly and on the path at a "/" boundary; ``("*",)`` allows
    any http(s) URL.
    """
    target = _parse_base(fhir_server)
    if target is None:
        return False
    if "*" in settings.fhir_allowlist:
        return True
    for prefix in settings.fhir_allowlist:
        allowed = _parse_base(prefix)
        if allowed is None or allowed[:3] != target[:3]:
            continue
        if target[3] == allowed[3] or target[3].startswith(allowed[3] + "/"):
            return True
    return False


# --- fetching ----------------------------------------------------------------------------------------------


class _Failure(Exception):
    """A key failed; ``str(exc)`` is the clinician-safe reason."""


class _ByteBudget:
    """Bytes left for all keys of one :func:`fetch` call (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self._left = limit
        self._lock = threading.Lock()

    def left(self) -> int:
        with self._lock:
            return self._left

    def take(self, n: int) -> None:
        with self._lock:
            self._left -= n
            if self._left < 0:
                raise _Failure("response too large")


_HEADERS = {"Accept": FHIR_JSON, "Prefer": "handling=strict"}


def _headers(token: str | None) -> dict[str, str]:
    return {**_HEADERS, "Authorization": f"Bearer {token}"} if token else _HEADERS


@dataclass
class _Call:
    """Shared state of one :func:`fetch` call."""

    headers: dict[str, str]
    settings: Settings
    deadline: float
    budget: _ByteBudget
    stop: threading.Event
    requests_left: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0 or self.stop.is_set():
            raise _Failure("timed out")
        return left

    def take_request(self) -> None:
        """Count one outbound request against the call's budget (all keys and pages together)."""
        with self._lock:
            self.requests_left -= 1
            if self.requests_left < 0:
                raise _Failure("too many requests")


def _reason(exc: BaseException) -> str:
    """A clinician-safe reason for a network exception (never its message: that may hold the URL)."""
    if isinstance(exc, ssl.SSLError):  # certificate verification failures included
        return "TLS error"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, zlib.error):
        return "not JSON"
    return "unreachable"


def _get_json(url: str, call: _Call) -> object:
    left = call.remaining()
    call.take_request()
    limit = call.settings.fhir_max_response_bytes
    try:
        with transport.get(url, call.headers, connect_timeout=min(call.settings.fhir_connect_timeout, left),
                           read_timeout=min(call.settings.fhir_read_timeout, left)) as r:
            if not 200 <= r.status < 300:
                raise _Failure(f"HTTP {r.status}")
            length = r.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > min(call.budget.left(), limit):  # gzip: decoded is larger still
                raise _Failure("response too large")
            # read1 returns as soon as any bytes arrive, so a drip-fed body still meets the deadline
            body = bytearray()
            while chunk := r.read1(_CHUNK):
                call.remaining()
                call.budget.take(len(chunk))
                body += chunk
                if len(body) > limit:  # streaming limit: one response never grows past it in memory
                    raise _Failure("response too large")
    except (OSError, http.client.HTTPException, zlib.error) as exc:
        raise _Failure(_reason(exc)) from exc
    try:
        return jsonparse.loads(body)
    except ValueError as exc:
        raise _Failure("not JSON") from exc


def next_link(bundle: Mapping) -> str | None:
    """The ``next`` link URL of a searchset Bundle, or None."""
    links = bundle.get("link")
    for link in links if isinstance(links, list) else ():
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


# --- reading search results ------------------------------------------------------------------------------

_BENIGN_SEVERITIES = {"information", "warning"}


class SearchsetError(Exception):
    """A searchset Bundle that reports a failed search; ``str(exc)`` is the clinician-safe reason."""


def is_benign_outcome(resource: Mapping) -> bool:
    """True for an OperationOutcome whose issues are all ``information`` or ``warning``: a search that ran and
    found nothing (Epic's "no results", code 4101; FHIR R4 ``bundle-search-warning`` example), not a failure."""
    issues = resource.get("issue")
    return (isinstance(issues, list) and bool(issues)
            and all(isinstance(issue, dict) and isinstance(issue.get("severity"), str)
                    and issue["severity"] in _BENIGN_SEVERITIES for issue in issues))


def read_searchset(bundle: Mapping) -> tuple[list[dict], str | None]:
    """(resources, next URL) of one searchset page (FHIR R4 §3.1.1.4.10 search modes).

    Entries with search mode ``match``, ``include`` or none are kept. OperationOutcome entries (and any entry
    of mode ``outcome``) are dropped when all their issues are information or warning; an outcome with an
    ``error`` or ``fatal`` issue (or none at all) means the search failed and raises :class:`SearchsetError`.
    """
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise SearchsetError("malformed Bundle")
    resources = []
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(rtype, str):
            continue
        if rtype == "OperationOutcome":
            if not is_benign_outcome(resource):
                raise SearchsetError("server returned OperationOutcome")
            continue
        search = entry.get("search")
        mode = search.get("mode") if isinstance(search, dict) else None
        if not isinstance(mode, str):
            mode = None  # a malformed mode is no mode: the entry was returned by the search
        if mode in _KEEP_MODES:
            resources.append(resource)
    return resources, next_link(bundle)


def _fetch_key(query: str, fhir_server: str, call: _Call) -> list[dict]:
    """All resources for one query: a read, or every page of a search."""
    resources: list[dict] = []
    url = query if urlsplit(query).scheme else fhir_server.rstrip("/") + "/" + query.lstrip("/")
    for _page in range(max(call.settings.fhir_max_pages, 1)):
        if not _under_base(url, fhir_server):
            raise _Failure("next link on another host refused")
        data = _get_json(url, call)
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            raise _Failure("not a FHIR resource")
        if data["resourceType"] == "OperationOutcome":
            raise _Failure("server returned OperationOutcome")
        if data["resourceType"] != "Bundle":
            return [data]
        try:
            page, next_url = read_searchset(data)
        except SearchsetError as exc:
            raise _Failure(str(exc)) from exc
        resources += page
        if next_url is None:
            return resources
        url = urljoin(url, next_url)
    raise _Failure("too many pages")


def fetch(
    queries: Mapping[str, str], fhir_server: str, access_token: str | None, settings: Settings
) -> FetchOutcome:
    """Run ``queries`` (key -> relative query, or an absolute ``next`` URL on ``fhir_server``'s origin)
    concurrently against ``fhir_server`` and return what came back.

    Follows Bundle ``next`` links on the same origin (at most ``settings.fhir_max_pages`` pages per key),
    bounds each request by the connect/read timeouts, the whole call by ``settings.fhir_deadline`` seconds
    counted from the request's arrival (:func:`call_deadline`), its requests by ``settings.fhir_max_requests``,
    each body by ``settings.fhir_max_response_bytes`` and all bodies together by ``settings.fhir_max_bytes``;
    calls to one host pass its bulkhead (:func:`host_slot`). Never raises for network problems: a key that
    fails is in ``failures`` with a short reason, never the token. A ``fhir_server`` that
    :func:`is_allowed` refuses is not contacted (every key fails with "FHIR server not allowed").
    """
    deadline = call_deadline(settings)
    outcome = FetchOutcome()
    if not queries:
        return outcome
    if not is_allowed(fhir_server, settings):
        outcome.failures = dict.fromkeys(queries, "FHIR server not allowed")
        return outcome
    started = time.monotonic()
    with host_slot(fhir_server, settings, deadline) as busy:
        if busy:
            outcome.failures = dict.fromkeys(queries, busy)
        else:
            futures = _run_keys(queries, fhir_server, access_token, settings, deadline)
    if not busy:
        _collect(futures, outcome)
        note_host_outcome(fhir_server, settings, outcome)
    metrics.FHIR_FETCHES.labels(outcome="failed" if outcome.failures else "ok").observe(time.monotonic() - started)
    for key, reason in outcome.failures.items():
        metrics.FHIR_FAILURES.labels(reason=_metric_reason(reason)).inc()
        log.info("FHIR fetch for key %s failed: %s", key, reason)
    return outcome


# --- transport bulkheads: deadline from arrival, per-host concurrency, request budget (issue 10 #5, #8) -------


def call_deadline(settings: Settings) -> float:
    """The monotonic time by which this hook call's FHIR fetches must end: ``fhir_deadline`` seconds after the
    request *arrived*, so time spent queued in nginx and gunicorn counts too. Arrival is the earlier of when the
    app received the request and nginx's ``X-Request-Start: t=<epoch seconds>`` (deploy/nginx sets it). The header
    can only shorten the caller's own deadline, so it needs no trust."""
    now = time.monotonic()
    if not has_request_context():
        return now + settings.fhir_deadline
    waited = 0.0
    started = g.get("request_started")  # perf_counter() when the app got the request (service/logs.py)
    if isinstance(started, float):
        waited = max(waited, time.perf_counter() - started)
    match = re.fullmatch(r"t=(\d{9,11}(?:\.\d{1,6})?)", request.headers.get("X-Request-Start", "").strip())
    if match:
        waited = max(waited, min(time.time() - float(match.group(1)), 3600.0))
    return now - waited + settings.fhir_deadline


SLOT_RESERVE = 1.0  # seconds of the deadline a call keeps for its own fetch: it waits for a slot until then
TROUBLE_SECONDS = 10.0  # a host that timed out is "in trouble" this long


@dataclass
class _Host:
    slots: threading.BoundedSemaphore
    probe: threading.Lock = field(default_factory=threading.Lock)
    trouble_until: float = float("-inf")

    def in_trouble(self) -> bool:
        return time.monotonic() < self.trouble_until


_HOSTS: dict[tuple[str, str, int], _Host] = {}
_HOSTS_LOCK = threading.Lock()
BUSY = "FHIR server busy (it timed out recently and is being probed)"


def _host(fhir_server: str, settings: Settings) -> _Host:
    base = _parse_base(fhir_server)
    key = base[:3] if base else ("", fhir_server, 0)
    with _HOSTS_LOCK:
        host = _HOSTS.get(key)
        if host is None:
            host = _HOSTS[key] = _Host(threading.BoundedSemaphore(settings.fhir_host_concurrency))
        return host


@contextmanager
def host_slot(fhir_server: str, settings: Settings, deadline: float) -> Iterator[str | None]:
    """A bulkhead per FHIR host and worker process (Nygard, *Release It!*): yields None when the call may fetch,
    else the failure reason.

    A healthy host serves at most ``settings.fhir_host_concurrency`` calls of this process at once; others queue
    for a slot while their deadline allows. A host whose requests timed out within ``TROUBLE_SECONDS`` gets one
    call at a time (a probe) and every other call is shed at once, so a hung host holds one thread per worker,
    not all of them; the first probe that does not time out ends the trouble.
    """
    host = _host(fhir_server, settings)
    left = deadline - time.monotonic()
    if left <= 0:
        yield "timed out (queued too long)"
        return
    probing = host.in_trouble()
    if probing and not host.probe.acquire(blocking=False):
        yield BUSY
        return
    try:
        if not host.slots.acquire(timeout=max(left - SLOT_RESERVE, 0.0) if not probing else 0.05):
            yield "timed out (waiting for the FHIR server)"
            return
        try:
            if not probing and host.in_trouble():  # it timed out while this call waited: shed it
                yield BUSY
                return
            yield None
        finally:
            host.slots.release()
    finally:
        if probing:
            host.probe.release()


def note_host_outcome(fhir_server: str, settings: Settings, outcome: FetchOutcome) -> None:
    """A call whose every query timed out (a hung host, not merely a slow page) puts the host in trouble; a call
    that got data takes it out."""
    host = _host(fhir_server, settings)
    if outcome.failures and not outcome.resources and set(outcome.failures.values()) == {"timed out"}:
        host.trouble_until = time.monotonic() + TROUBLE_SECONDS
    elif outcome.resources:
        host.trouble_until = float("-inf")


def _run_keys(queries: Mapping[str, str], fhir_server: str, access_token: str | None, settings: Settings,
              deadline: float) -> dict[str, Future]:
    """Fetch every key concurrently until done or ``deadline``; the futures (unfinished ones are abandoned)."""
    budget = _ByteBudget(settings.fhir_max_bytes)
    call = _Call(_headers(access_token), settings, deadline, budget, threading.Event(),
                 requests_left=settings.fhir_max_requests)
    pool = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(queries)), thread_name_prefix="fhir-fetch")
    futures = {key: pool.submit(_fetch_key, query, fhir_server, call) for key, query in queries.items()}
    try:
        wait(futures.values(), timeout=max(deadline - time.monotonic(), 0))
    finally:
        call.stop.set()  # unfinished workers stop at their next check; their sockets time out by the deadline
        pool.shutdown(wait=False, cancel_futures=True)
    return futures


def _metric_reason(reason: str) -> str:
    """A fixed label for a failure reason (``HTTP 503`` -> ``http``)."""
    return "http" if reason.startswith("HTTP ") else reason.split(" (")[0][:40]


def _collect(futures: dict[str, Future], outcome: FetchOutcome) -> None:
    for key, future in futures.items():
        if not future.done() or future.cancelled():
            outcome.failures[key] = "timed out"
            continue
        try:
            outcome.resources[key] = future.result()
        except _Failure as exc:
            outcome.failures[key] = str(exc)
        except Exception as exc:  # a bug must not break the hook call; no message (it could hold data)
            log.error("FHIR fetch for key %s failed unexpectedly: %s", key, type(exc).__name__)
            outcome.failures[key] = "request failed"
