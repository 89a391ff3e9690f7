"""Prefetch parity against a real FHIR server process (the embedded demo endpoint), and the 412 paths.

CDS Hooks 2.0: cards must be identical whether data arrive by prefetch, by FHIR queries, or by a mix; when
required data cannot be obtained, answer 412 — within 5 s even when the server hangs.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from service import create_app
from service.cli import mask_uuids
from service.config import Settings
from service.discovery import PREFETCH
from tests.service.fhir_test_servers import HungServer, closed_port_url
from tests.service.support import REQUESTS_DIR, evaluated_at, fixture_request

pytestmark = pytest.mark.integration
PATIENT_VIEW = "/cds-services/hcc-second-line-patient-view"
NAMES = sorted(p.name.removesuffix(".patient-view.json") for p in REQUESTS_DIR.glob("*.patient-view.json"))
TOKEN = "parity-secret-token-9f2c"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def fhir_server(tmp_path_factory):
    """The demo FHIR endpoint in its own process; yields (base URL, auth log path)."""
    port = _free_port()
    auth_log = tmp_path_factory.mktemp("fhir") / "auth.log"
    script = Path(__file__).with_name("demo_fhir_process.py")
    process = subprocess.Popen([sys.executable, str(script), str(port), str(auth_log)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=Path(__file__).resolve().parents[2])
    base = f"http://127.0.0.1:{port}/fhir"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/metadata", timeout=0.5).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("demo FHIR server process did not start")
    yield base, auth_log
    process.terminate()
    process.wait(timeout=10)


def _client(tmp_path, request: dict):
    settings = Settings(auth_mode="off", feedback_db=f"sqlite:///{tmp_path}/db.sqlite3", fhir_allowlist=("*",))
    now = evaluated_at(request)
    return create_app(settings, clock=lambda: now).test_client()


def _cards(client, request: dict) -> dict:
    response = client.post(PATIENT_VIEW, json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    return mask_uuids(response.get_json())


@pytest.mark.parametrize("name", NAMES)
def test_cards_identical_for_full_none_and_partial_prefetch(name, fhir_server, tmp_path) -> None:
    base, _log = fhir_server
    full = fixture_request(name)
    client = _client(tmp_path, full)
    expected = _cards(client, full)
    variants = {"none": {}}
    for key in PREFETCH:
        variants[f"without-{key}"] = {k: v for k, v in full["prefetch"].items() if k != key}
        variants[f"only-{key}"] = {key: full["prefetch"][key]}
    for label, prefetch in variants.items():
        request = dict(full, prefetch=prefetch, fhirServer=base)
        assert _cards(client, request) == expected, f"{name}: {label} differs from full prefetch"


@pytest.mark.parametrize("name", ["oligoprogression", "systemic-atezo-bev", "implausible-and-malformed"])
def test_paged_prefetch_bundles_are_completed_from_the_server(name, fhir_server, tmp_path) -> None:
    base, _log = fhir_server
    full = fixture_request(name)
    client = _client(tmp_path, full)
    patient = full["context"]["patientId"]
    first_pages = {}
    for key, (template, _required) in PREFETCH.items():
        query = template.replace("{{context.patientId}}", patient).split("&_count=")[0]
        first_pages[key] = requests.get(f"{base}/{query}&_count=1", timeout=5).json()
    assert any(link["relation"] == "next" for page in first_pages.values() for link in page.get("link", []))
    paged = dict(full, prefetch=first_pages, fhirServer=base)
    assert _cards(client, paged) == _cards(client, full)


def test_access_token_is_sent_on_every_fhir_call(fhir_server, tmp_path) -> None:
    base, auth_log = fhir_server
    full = fixture_request("oligoprogression")
    client = _client(tmp_path, full)
    auth_log.write_text("")
    request = dict(full, prefetch={}, fhirServer=base, fhirAuthorization={
        "access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read",
        "subject": "hcc-cds"})
    _cards(client, request)
    lines = [line.split("\t") for line in auth_log.read_text().splitlines()]
    assert len(lines) == len(PREFETCH)
    assert all(header == f"Bearer {TOKEN}" for _path, header in lines)


def test_without_fhir_authorization_the_server_is_called_unauthenticated(fhir_server, tmp_path) -> None:
    base, auth_log = fhir_server
    full = fixture_request("oligoprogression")
    auth_log.write_text("")
    _cards(_client(tmp_path, full), dict(full, prefetch={}, fhirServer=base))
    assert {line.split("\t")[1] for line in auth_log.read_text().splitlines()} == {"-"}


class _StatusServer:
    """A FHIR server answering every request with one HTTP status."""

    def __init__(self, status: int) -> None:
        app = lambda environ, start: Response('{"resourceType":"OperationOutcome"}', status)(environ, start)  # noqa: E731
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_port}/fhir"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


@pytest.mark.parametrize("status", [500, 503, 401])
def test_failing_fhir_server_gives_412(status, tmp_path) -> None:
    full = fixture_request("systemic-atezo-bev")
    with _StatusServer(status) as base:
        response = _client(tmp_path, full).post(PATIENT_VIEW, json=dict(full, prefetch={}, fhirServer=base))
    assert response.status_code == 412
    assert f"HTTP {status}" in response.get_json()["issue"][0]["diagnostics"]


def test_hung_fhir_server_gives_412_within_five_seconds(tmp_path) -> None:
    full = fixture_request("systemic-atezo-bev")
    hung = HungServer().start()
    client = _client(tmp_path, full)  # app start-up is not part of the request's time
    try:
        started = time.monotonic()
        response = client.post(PATIENT_VIEW, json=dict(full, prefetch={}, fhirServer=hung.base_url))
        elapsed = time.monotonic() - started
    finally:
        hung.stop()
    assert response.status_code == 412
    assert elapsed < 5.0


def test_unreachable_fhir_server_gives_412_quickly(tmp_path) -> None:
    full = fixture_request("systemic-atezo-bev")
    client = _client(tmp_path, full)
    started = time.monotonic()
    response = client.post(PATIENT_VIEW, json=dict(full, prefetch={}, fhirServer=closed_port_url()))
    assert response.status_code == 412
    assert time.monotonic() - started < 5.0


def test_only_optional_data_failing_gives_200_with_data_quality_card(tmp_path) -> None:
    full = fixture_request("systemic-atezo-bev")
    prefetch = {k: v for k, v in full["prefetch"].items() if k != "adverseEvents"}
    with _StatusServer(500) as base:
        response = _client(tmp_path, full).post(PATIENT_VIEW, json=dict(full, prefetch=prefetch, fhirServer=base))
    assert response.status_code == 200
    quality = [c for c in response.get_json()["cards"] if c["source"]["topic"]["code"] == "data-quality"]
    assert quality and "AdverseEvents could not be read (HTTP 500)" in quality[0]["detail"]
