"""service.fhir's transport bounds against real servers on 127.0.0.1 (fhir_test_servers.py): the %2F allowlist
trick, the outbound request budget, the streaming byte limit, the per-host bulkhead and a deadline counted from
the request's arrival.

Issue 10 #5 and #8: before, a next loop made 350 outbound requests per call, one 16.9 MB response took a worker to
221 MiB, a %2F-encoded path passed the allowlist, and a hung FHIR server held every thread it was given.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from service import create_app
from service.config import Settings
from service.fhir import BUSY, FetchOutcome, fetch, is_allowed
from tests.service.fhir_test_servers import FakeFHIR, HungServer
from tests.service.support import fixture_request

TOKEN = "transport-token-77e1"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def ehr() -> Iterator[FakeFHIR]:
    server = FakeFHIR().start()
    yield server
    server.stop()


@pytest.mark.parametrize("url", [
    "https://ehr.example/fhir/..%2Fadmin",
    "https://ehr.example/fhir/%2e%2e/admin",
    "https://ehr.example/fhir/x%5C..%5Cadmin",
    "https://ehr.example/fhir%2F..%2Fadmin",
])
def test_encoded_separators_never_pass_the_allowlist(url: str) -> None:
    settings = Settings(fhir_allowlist=("https://ehr.example/fhir/",))
    assert is_allowed("https://ehr.example/fhir/r4", settings)
    assert not is_allowed(url, settings)


def test_a_next_loop_stops_at_the_request_budget(ehr: FakeFHIR) -> None:
    ehr.clear()
    settings = Settings(fhir_allowlist=("*",), fhir_max_requests=20)
    queries = {f"k{i}": "loop" for i in range(7)}
    out = fetch(queries, ehr.fhir_base, TOKEN, settings)
    assert set(out.failures.values()) <= {"too many requests", "too many pages"}
    assert len(out.failures) == 7
    assert len(ehr.requests) <= 20  # before: 7 keys x 50 pages = 350


def test_the_default_request_budget_bounds_a_call(ehr: FakeFHIR) -> None:
    ehr.clear()
    fetch({f"k{i}": "loop" for i in range(7)}, ehr.fhir_base, TOKEN, Settings(fhir_allowlist=("*",)))
    assert len(ehr.requests) <= Settings().fhir_max_requests


def test_one_huge_response_is_cut_off_while_streaming(ehr: FakeFHIR) -> None:
    settings = Settings(fhir_allowlist=("*",))
    tracemalloc.start()
    try:
        out = fetch({"huge": "stream?mb=16.9"}, ehr.fhir_base, TOKEN, settings)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.failures == {"huge": "response too large"}
    assert peak < 2.5 * settings.fhir_max_response_bytes  # before: the whole 17 MB body, then its parse


def test_a_hung_host_gets_one_probe_at_a_time_and_other_hosts_go_on(ehr: FakeFHIR) -> None:
    hung = HungServer().start()
    settings = Settings(fhir_allowlist=("*",), fhir_host_concurrency=2, fhir_connect_timeout=0.5,
                        fhir_read_timeout=0.5, fhir_deadline=2.0)
    try:
        first = fetch({"k": "Observation"}, hung.base_url, TOKEN, settings)  # times out: the host is in trouble
        assert first.failures == {"k": "timed out"}
        probe = threading.Thread(target=fetch, args=({"k": "Observation"}, hung.base_url, TOKEN, settings))
        probe.start()
        time.sleep(0.1)
        started = time.monotonic()
        shed = [fetch({"k": "Observation"}, hung.base_url, TOKEN, settings) for _ in range(3)]
        elapsed = time.monotonic() - started
        other = fetch({"k": "Patient/p1"}, ehr.fhir_base, TOKEN, settings)
        probe.join(5)
    finally:
        hung.stop()
    assert [out.failures for out in shed] == [{"k": BUSY}] * 3
    assert elapsed < 0.3  # shed at once, not after the 2 s deadline
    assert other.resources["k"][0]["id"] == "p1"


def test_a_healthy_host_queues_calls_for_its_slots(ehr: FakeFHIR) -> None:
    settings = Settings(fhir_allowlist=("*",), fhir_host_concurrency=1)
    results: list[FetchOutcome] = []
    threads = [threading.Thread(target=lambda: results.append(
        fetch({"k": "slow?s=0.3"}, ehr.fhir_base, TOKEN, settings))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert [out.failures for out in results] == [{}] * 4  # one at a time, 1.2 s in all, none shed


def test_deadline_counts_time_queued_before_the_app(tmp_path) -> None:
    hung = HungServer().start()
    settings = Settings(auth_mode="off", feedback_db=f"sqlite:///{tmp_path}/q.sqlite3", fhir_allowlist=("*",))
    client = create_app(settings).test_client()
    body = dict(fixture_request("systemic-atezo-bev"), prefetch={}, fhirServer=hung.base_url)
    try:
        started = time.monotonic()
        response = client.post("/cds-services/hcc-second-line-patient-view", json=body,
                               headers={"X-Request-Start": f"t={time.time() - 3.8:.3f}"})  # queued 3.8 s in nginx
        elapsed = time.monotonic() - started
    finally:
        hung.stop()
    assert response.status_code == 412
    assert elapsed < 1.0  # what was left of the 4 s budget, not another 4 s
