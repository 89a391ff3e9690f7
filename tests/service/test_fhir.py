"""service.fhir against real HTTP servers on 127.0.0.1 (see fhir_test_servers.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from fhirclient.models.observation import Observation

from service.config import Settings
from service.discovery import PREFETCH
from service.fhir import FetchOutcome, fetch, is_allowed, substitute
from tests.service.fhir_test_servers import FakeFHIR, HungServer, closed_port_url

TOKEN = "s3cr3t-access-token-5b1d"
FAST = Settings(fhir_allowlist=("*",), fhir_connect_timeout=0.5, fhir_read_timeout=1.0, fhir_deadline=3.0)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[FakeFHIR, FakeFHIR]]:
    main, other = FakeFHIR().start(), FakeFHIR().start()
    yield main, other
    main.stop()
    other.stop()


@pytest.fixture
def ehr(_servers: tuple[FakeFHIR, FakeFHIR]) -> FakeFHIR:
    _servers[0].clear()
    return _servers[0]


@pytest.fixture
def other(_servers: tuple[FakeFHIR, FakeFHIR]) -> FakeFHIR:
    _servers[1].clear()
    return _servers[1]


def ids(resources: list[dict]) -> list[str]:
    return [r["id"] for r in resources]


ALL_OBSERVATIONS = ["obs-1-1", "obs-1-2", "obs-2-1", "obs-2-2", "p1", "obs-3-1", "obs-3-2", "obs-3-nomode"]


# --- paging, headers, entry filtering ----------------------------------------------------------------------


def test_follows_all_pages_with_token_on_every_request(ehr: FakeFHIR) -> None:
    out = fetch({"observations": "Observation?patient=p1"}, ehr.fhir_base, TOKEN, FAST)

    assert out.failures == {}
    # pages concatenated in order; OperationOutcome (mode "outcome") dropped; "include" and no mode kept
    assert ids(out.resources["observations"]) == ALL_OBSERVATIONS
    assert [(r.path, r.query) for r in ehr.requests] == [
        ("/fhir/Observation", "patient=p1"),
        ("/fhir/Observation", "patient=p1&page=2"),
        ("/fhir/Observation", "patient=p1&page=3"),
    ]
    assert {r.authorization for r in ehr.requests} == {f"Bearer {TOKEN}"}
    assert {r.accept for r in ehr.requests} == {"application/fhir+json"}


def test_no_authorization_header_without_token(ehr: FakeFHIR) -> None:
    queries = {"observations": "Observation?patient=p1", "patient": "Patient/p1"}
    out = fetch(queries, ehr.fhir_base, None, FAST)

    assert out.failures == {}
    assert len(ehr.requests) == 4
    assert all(r.authorization is None for r in ehr.requests)


def test_read_returns_the_resource_and_trailing_slash_base_works(ehr: FakeFHIR) -> None:
    out = fetch({"patient": "Patient/p1"}, ehr.fhir_base + "/", TOKEN, FAST)

    assert out == FetchOutcome({"patient": [{"resourceType": "Patient", "id": "p1"}]}, {})
    assert ehr.requests[0].path == "/fhir/Patient/p1"


def test_relative_next_link_is_resolved(ehr: FakeFHIR) -> None:
    out = fetch({"conditions": "Condition?patient=p1"}, ehr.fhir_base, TOKEN, FAST)

    assert ids(out.resources["conditions"]) == ["cond-1", "cond-2"]
    assert ehr.requests[1].path == "/fhir/Condition"
    assert ehr.requests[1].authorization == f"Bearer {TOKEN}"


def test_continues_from_an_absolute_next_url(ehr: FakeFHIR) -> None:
    # gather.py passes a prefetch Bundle's next link to get the rest
    next_url = f"{ehr.fhir_base}/Observation?patient=p1&page=2"
    out = fetch({"observations": next_url}, ehr.fhir_base, TOKEN, FAST)

    assert ids(out.resources["observations"]) == ALL_OBSERVATIONS[2:]
    assert len(ehr.requests) == 2


def test_hapi_style_getpages_paging_with_fhirclient_models(ehr: FakeFHIR) -> None:
    out = fetch({"observations": "Observation?patient=p1&_count=2"}, ehr.base_url + "/baseR4", TOKEN, FAST)

    assert out.failures == {}
    assert ids(out.resources["observations"]) == [f"hapi-{n}" for n in range(5)]
    assert [r.path for r in ehr.requests] == ["/baseR4/Observation", "/baseR4", "/baseR4"]
    assert "_getpages=4f1c-aa&_getpagesoffset=4" in ehr.requests[2].query
    assert {r.authorization for r in ehr.requests} == {f"Bearer {TOKEN}"}
    for resource in out.resources["observations"]:  # what came back is valid R4 for fhirclient
        assert Observation(resource, strict=True).subject.reference == "Patient/p1"


def test_page_limit(ehr: FakeFHIR) -> None:
    settings = Settings(fhir_allowlist=("*",), fhir_max_pages=2)
    out = fetch({"observations": "Observation?patient=p1"}, ehr.fhir_base, TOKEN, settings)

    assert out.failures == {"observations": "too many pages"}
    assert len(ehr.requests) == 2


def test_empty_queries() -> None:
    assert fetch({}, "http://127.0.0.1:9/fhir", TOKEN, FAST) == FetchOutcome({}, {})


# --- concurrency, timeouts, deadline -----------------------------------------------------------------------


def test_keys_run_concurrently(ehr: FakeFHIR) -> None:
    queries = {f"k{i}": f"Patient/p{i}?_delay=0.5" for i in range(3)}
    start = time.monotonic()
    out = fetch(queries, ehr.fhir_base, TOKEN, FAST)
    elapsed = time.monotonic() - start

    assert out.failures == {}
    assert sorted(out.resources) == ["k0", "k1", "k2"]
    assert elapsed < 1.2, elapsed


def test_slow_server_read_timeout(ehr: FakeFHIR) -> None:
    settings = Settings(fhir_allowlist=("*",), fhir_read_timeout=0.3, fhir_deadline=3.0)
    start = time.monotonic()
    out = fetch({"slow": "slow?s=1.5", "fast": "Patient/p1"}, ehr.fhir_base, TOKEN, settings)

    assert out.failures == {"slow": "timed out"}
    assert ids(out.resources["fast"]) == ["p1"]
    assert time.monotonic() - start < 1.0


def test_hung_server_deadline_holds() -> None:
    hung = HungServer().start()
    try:
        # read timeout longer than the deadline: only the deadline can end this
        settings = Settings(fhir_allowlist=("*",), fhir_connect_timeout=0.5, fhir_read_timeout=10.0,
                            fhir_deadline=1.0)
        queries = {f"k{i}": f"Observation?patient=p{i}" for i in range(10)}  # more keys than workers
        start = time.monotonic()
        out = fetch(queries, hung.base_url, TOKEN, settings)
        elapsed = time.monotonic() - start
    finally:
        hung.stop()

    assert out.resources == {}
    assert out.failures == dict.fromkeys(queries, "timed out")
    assert elapsed < settings.fhir_deadline + 0.5, elapsed


def test_drip_fed_body_stops_at_deadline(ehr: FakeFHIR) -> None:
    settings = Settings(fhir_allowlist=("*",), fhir_read_timeout=0.5, fhir_deadline=1.0)
    start = time.monotonic()
    out = fetch({"drip": "drip"}, ehr.fhir_base, TOKEN, settings)

    assert out.failures == {"drip": "timed out"}
    assert time.monotonic() - start < settings.fhir_deadline + 0.5


def test_unreachable() -> None:
    out = fetch({"k": "Patient/p1"}, closed_port_url(), TOKEN, FAST)
    assert out.failures == {"k": "unreachable"}


# --- failures ----------------------------------------------------------------------------------------------


def test_http_errors_and_bad_bodies(ehr: FakeFHIR) -> None:
    out = fetch(
        {
            "e500": "status/500",
            "e401": "status/401",
            "e404": "Nothing?patient=p1",
            "html": "html",
            "outcome": "outcome",
            "ok": "Patient/p1",
        },
        ehr.fhir_base, TOKEN, FAST,
    )

    assert out.failures == {
        "e500": "HTTP 500",
        "e401": "HTTP 401",
        "e404": "HTTP 404",
        "html": "not JSON",
        "outcome": "server returned OperationOutcome",
    }
    assert list(out.resources) == ["ok"]


def test_redirect_not_followed(ehr: FakeFHIR, other: FakeFHIR) -> None:
    out = fetch({"k": f"redirect?to={other.fhir_base}/Patient/p1"}, ehr.fhir_base, TOKEN, FAST)

    assert out.failures == {"k": "HTTP 302"}
    assert other.requests == []


def test_next_link_on_another_host_refused(ehr: FakeFHIR, other: FakeFHIR) -> None:
    out = fetch(
        {
            "next": f"offhost?to={other.fhir_base}/Observation?patient=p1",
            "localhost": f"offhost?to={ehr.fhir_base.replace('127.0.0.1', 'localhost')}/Observation",
            "absolute": f"{other.fhir_base}/Observation?patient=p1",
        },
        ehr.fhir_base, TOKEN, FAST,
    )

    refused = "next link on another host refused"
    assert out.failures == {"next": refused, "localhost": refused, "absolute": refused}
    assert other.requests == []
    assert len(ehr.requests) == 2  # the two first pages, nothing more


@pytest.mark.parametrize("query", ["big?n=200000", "big?n=200000&length=0"], ids=["declared", "streamed"])
def test_oversized_body(ehr: FakeFHIR, query: str) -> None:
    settings = Settings(fhir_allowlist=("*",), fhir_max_bytes=50_000)
    out = fetch({"big": query}, ehr.fhir_base, TOKEN, settings)
    assert out.failures == {"big": "response too large"}

    assert ids(fetch({"small": "big?n=1000"}, ehr.fhir_base, TOKEN, settings).resources["small"]) == ["big"]


def test_byte_budget_is_shared_across_keys(ehr: FakeFHIR) -> None:
    settings = Settings(fhir_allowlist=("*",), fhir_max_bytes=50_000)
    out = fetch({"a": "big?n=30000&length=0", "b": "big?n=30000&length=0"}, ehr.fhir_base, TOKEN, settings)

    assert len(out.failures) >= 1
    assert set(out.failures.values()) == {"response too large"}


def test_server_not_on_allowlist_is_not_contacted(ehr: FakeFHIR) -> None:
    settings = Settings(fhir_allowlist=("https://ehr.example/fhir",))
    out = fetch({"k": "Patient/p1"}, ehr.fhir_base, TOKEN, settings)

    assert out.failures == {"k": "FHIR server not allowed"}
    assert ehr.requests == []


def test_token_never_in_failures_or_logs(ehr: FakeFHIR, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = Settings(fhir_allowlist=("*",), fhir_read_timeout=0.3, fhir_max_bytes=50_000)
    out = fetch(
        {"e401": "status/401", "slow": "slow?s=1", "big": "big?n=200000", "html": "html",
         "off": "http://other.invalid/fhir/Patient/1", "ok": "Observation?patient=p1"},
        ehr.fhir_base, TOKEN, settings,
    )
    unreachable = fetch({"k": "Patient/p1"}, closed_port_url(), TOKEN, settings)

    assert len(out.failures) == 5 and unreachable.failures
    assert TOKEN not in repr(out) and TOKEN not in repr(unreachable)
    assert "FHIR fetch for key e401 failed: HTTP 401" in caplog.text
    assert TOKEN not in caplog.text  # every logger, urllib3's debug output included
    ours = [record.getMessage() for record in caplog.records if record.name == "hcc_cds.fhir"]
    # no patient data, no URLs
    assert ours and not any("p1" in message or "/fhir" in message for message in ours)


# --- substitute ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "context", "expected"),
    [
        ("Observation?patient={{context.patientId}}", {"patientId": "a b"}, "Observation?patient=a%20b"),
        ("Patient/{{context.patientId}}", {"patientId": "123"}, "Patient/123"),
        ("X?p={{context.patientId}}", {"patientId": "a/b|c&d=e?#é"}, "X?p=a%2Fb%7Cc%26d%3De%3F%23%C3%A9"),
        ("X?n={{context.n}}&b={{ context.b }}", {"n": 7, "b": True}, "X?n=7&b=true"),
        ("X?p={{userPractitionerId}}", {"userId": "Practitioner/abc"}, "X?p=abc"),
        ("X?p={{userPractitionerRoleId}}", {"userId": "PractitionerRole/r1"}, "X?p=r1"),
        ("X?p={{userPatientId}}", {"userId": "Patient/p9"}, "X?p=p9"),
        ("X?p={{userRelatedPersonId}}", {"userId": "RelatedPerson/rp"}, "X?p=rp"),
        ("Condition?_count=500", {}, "Condition?_count=500"),
        # unresolvable -> None
        ("X?patient={{context.patientId}}", {}, None),
        ("X?patient={{context.patientId}}", {"patientId": None}, None),
        ("X?patient={{context.patientId}}", {"patientId": ""}, None),
        ("X?e={{context.encounter}}", {"encounter": {"id": "1"}}, None),
        ("X?m={{context.medication.id}}", {"medication": {"id": "1"}}, None),
        ("X?p={{userPractitionerId}}", {"userId": "Patient/p9"}, None),
        ("X?p={{userPractitionerId}}", {}, None),
        ("X?p={{somethingElse}}", {"somethingElse": "x"}, None),
    ],
)
def test_substitute(template: str, context: dict, expected: str | None) -> None:
    assert substitute(template, context) == expected


def test_discovery_templates_substitute_and_are_sent_as_is(ehr: FakeFHIR) -> None:
    queries = {key: substitute(template, {"patientId": "p 1"}) for key, (template, _) in PREFETCH.items()}
    assert all(q is not None and "p%201" in q and "{{" not in q for q in queries.values())

    fetch({"conditions": queries["conditions"]}, ehr.fhir_base, TOKEN, FAST)
    assert ehr.requests[0].query == "patient=p%201&_count=500"


# --- is_allowed --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://ehr.example/fhir", True),
        ("https://ehr.example/fhir/", True),
        ("https://ehr.example/fhir/r4", True),
        ("https://EHR.example:443/fhir/r4", True),
        ("https://ehr.example/fhir-evil", False),
        ("https://ehr.example.evil.com/fhir", False),
        ("https://ehr.example", False),
        ("https://ehr.example/other", False),
        ("http://ehr.example/fhir", False),
        ("https://ehr.example:8443/fhir", False),
        ("https://ehr.example/fhir/../admin", False),
        ("https://ehr.example/fhir/%2e%2e/admin", False),
        ("https://user@ehr.example/fhir", False),
        ("https://ehr.example@evil.com/fhir", False),
        ("https://ehr.example/fhir?x=1", False),
        ("http://10.0.0.5:8080/r4/base", True),
        ("http://10.0.0.5:8080/r4/base2", False),
        ("http://10.0.0.5/r4/base", False),
    ],
)
def test_is_allowed_prefix_boundaries(url: str, allowed: bool) -> None:
    settings = Settings(fhir_allowlist=("https://ehr.example/fhir/", "http://10.0.0.5:8080/r4/base"))
    assert is_allowed(url, settings) is allowed


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://localhost:8080/fhir", True),
        ("https://anything.example", True),
        ("ftp://ehr.example/fhir", False),
        ("file:///etc/passwd", False),
        ("javascript:alert(1)", False),
        ("//ehr.example/fhir", False),
        ("https://", False),
        ("https://ehr.example:99999/fhir", False),
        ("https://ehr.example/fh ir", False),
        ("", False),
    ],
)
def test_is_allowed_wildcard(url: str, allowed: bool) -> None:
    assert is_allowed(url, Settings(fhir_allowlist=("*",))) is allowed


def test_is_allowed_empty_allowlist_allows_nothing() -> None:
    assert not is_allowed("https://ehr.example/fhir", Settings(fhir_allowlist=()))


def test_next_link_outside_the_fhir_base_path_is_refused_and_never_called(ehr: FakeFHIR) -> None:
    # Same host and port, other path (another tenant): the token must not travel there.
    settings = Settings(fhir_allowlist=(ehr.fhir_base,))
    out = fetch({"k": f"offhost?to={ehr.base_url}/tenantB/admin/export"}, ehr.fhir_base, TOKEN, settings)
    assert out.failures == {"k": "next link on another host refused"}
    assert not any(r.path.startswith("/tenantB") for r in ehr.requests)


def test_every_request_asks_for_strict_search_handling(ehr: FakeFHIR) -> None:
    fetch({"k": "Observation?patient=p1"}, ehr.fhir_base, TOKEN, Settings(fhir_allowlist=("*",)))
    assert ehr.requests and {r.prefer for r in ehr.requests} == {"handling=strict"}
