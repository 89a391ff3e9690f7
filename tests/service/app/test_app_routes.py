"""The pathway app's HTTP side over a real server thread: EHR launch → demo authorization server → callback →
page → feedback, without a browser (the e2e tests add Chromium), plus the refusals and headers."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask, jsonify
from werkzeug.serving import make_server

from service import create_app
from service.app import smart
from service.config import Settings
from service.db import FeedbackRecord
from tests.service.support import serving

PATIENT = "oligoprogression-patient"


@contextlib.contextmanager
def serve(app: Flask) -> Iterator[str]:
    with serving(make_server("127.0.0.1", 0, app, threaded=True)) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[Flask, str]]:
    env = {"HCC_CDS_FEEDBACK_DB": f"sqlite:///{tmp_path / 'db.sqlite3'}",
           "HCC_CDS_APP_FRAME_ANCESTORS": "'self' https://ehr.example"}
    app = create_app(Settings.from_env(env, demo=True))
    with serve(app) as base:
        yield app, base


def cookie_of(response: requests.Response) -> str:
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "Secure" in header and "SameSite=None" in header and "Partitioned" in header
    return header.split(";", 1)[0]


def launch_and_authorize(base: str, app_context: str | None) -> tuple[str, requests.Response]:
    """EHR launch by hand: (session cookie, the app page response)."""
    parameters = {"patient": PATIENT, **({"appContext": app_context} if app_context else {})}
    launch = requests.post(f"{base}/fhir/_services/smart/Launch", json={"launchUrl": f"{base}/app/launch",
                                                                        "parameters": parameters}, timeout=5)
    started = requests.get(f"{base}/app/launch", params={"iss": f"{base}/fhir", "launch": launch.json()["launch_id"]},
                           allow_redirects=False, timeout=5)
    assert started.status_code == 302
    cookie = cookie_of(started)
    authorize_url = urlsplit(started.headers["Location"])
    query = parse_qs(authorize_url.query)
    assert query["code_challenge_method"] == ["S256"] and query["aud"] == [f"{base}/fhir"]
    assert set(query["scope"][0].split()) == {"launch", "openid", "fhirUser", "patient/*.read"}
    code = requests.get(started.headers["Location"], allow_redirects=False, timeout=5)
    assert code.status_code == 302 and code.headers["Location"].startswith(f"{base}/app/callback?")
    back = requests.get(code.headers["Location"], headers={"Cookie": cookie}, allow_redirects=False, timeout=10)
    assert back.status_code == 303 and back.headers["Location"] == "/app/"
    page = requests.get(f"{base}/app/", headers={"Cookie": cookie}, timeout=10)
    return cookie, page


def test_ehr_launch_to_page_and_feedback_on_the_linking_card(demo) -> None:
    app, base = demo
    cookie, page = launch_and_authorize(base, json.dumps({"cardUuid": "card-42"}))
    assert page.status_code == 200 and 'id="pathway"' in page.text and 'data-option="' in page.text
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://ehr.example" in csp and "script-src 'self'" in csp
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["Cache-Control"] == "no-store"
    csrf = json.loads(page.text.split('<script id="view" type="application/json">', 1)[1].split("</script>")[0])["csrf"]
    headers = {"Cookie": cookie, "X-CSRF-Token": csrf}
    assert requests.post(f"{base}/app/feedback", json={"option": "tki-lenvatinib", "outcome": "declined"},
                         headers=headers, timeout=5).status_code == 400  # a decline needs a reason
    accepted = requests.post(f"{base}/app/feedback", json={"option": "tki-lenvatinib", "outcome": "accepted"},
                             headers=headers, timeout=5)
    declined = requests.post(f"{base}/app/feedback", json={"option": "tki-sorafenib", "outcome": "declined",
                                                           "reason": "tumour-board"}, headers=headers, timeout=5)
    assert accepted.status_code == declined.status_code == 200
    with app.extensions["hcc_cds_db"]() as session:
        rows = {(r.outcome, r.accepted_suggestions, r.override_code)
                for r in session.query(FeedbackRecord).filter_by(card_uuid="card-42")}
    assert rows == {("accepted", "option:tki-lenvatinib", None), ("overridden", None, "tumour-board")}


def test_feedback_needs_session_csrf_and_a_card(demo) -> None:
    _app, base = demo
    assert requests.post(f"{base}/app/feedback", json={}, timeout=5).status_code == 401
    cookie, page = launch_and_authorize(base, None)  # no appContext: no card to give feedback on
    assert "Launched without a card" in page.text
    body = {"option": "tki-lenvatinib", "outcome": "accepted"}
    assert requests.post(f"{base}/app/feedback", json=body, headers={"Cookie": cookie}, timeout=5).status_code == 403
    csrf = page.text.split('"csrf": "', 1)[1].split('"', 1)[0]
    answer = requests.post(f"{base}/app/feedback", json=body, headers={"Cookie": cookie, "X-CSRF-Token": csrf},
                           timeout=5)
    assert answer.status_code == 409


def test_callback_without_a_matching_state_is_refused(demo) -> None:
    _app, base = demo
    response = requests.get(f"{base}/app/callback", params={"code": "x", "state": "forged"}, timeout=5)
    assert response.status_code == 400 and "state" in response.text


def test_not_launched_shows_the_start_page(demo) -> None:
    _app, base = demo
    page = requests.get(f"{base}/app/", timeout=5)
    assert page.status_code == 200 and "Not launched" in page.text and 'id="standalone"' in page.text


def test_sandbox_open_server_link_reads_without_a_token_in_the_demo(demo) -> None:
    _app, base = demo
    opened = requests.get(f"{base}/app/launch", params={"fhirServiceUrl": f"{base}/fhir", "patientId": PATIENT},
                          allow_redirects=False, timeout=5)
    assert opened.status_code == 303
    page = requests.get(f"{base}/app/", headers={"Cookie": cookie_of(opened)}, timeout=10)
    assert page.status_code == 200 and 'id="pathway"' in page.text


def test_outside_the_demo_only_allowlisted_servers_and_real_launches(tmp_path: Path) -> None:
    env = {"HCC_CDS_FEEDBACK_DB": f"sqlite:///{tmp_path / 'db.sqlite3'}", "HCC_CDS_FHIR_ALLOWLIST": "https://ehr.example/fhir"}
    client = create_app(Settings.from_env(env)).test_client()
    refused = client.get("/app/launch", query_string={"iss": "http://127.0.0.1:9/fhir", "launch": "x"})
    assert refused.status_code == 400 and "HCC_CDS_FHIR_ALLOWLIST" in refused.get_data(as_text=True)
    assert client.get("/app/launch").status_code == 400  # no iss
    open_link = client.get("/app/launch", query_string={"fhirServiceUrl": "https://ehr.example/fhir", "patientId": "p"})
    assert open_link.status_code == 400
    assert "frame-ancestors 'self'" in open_link.headers["Content-Security-Policy"]


def test_discovery_requires_s256(tmp_path: Path) -> None:
    fake = Flask("fake")

    @fake.get("/fhir/.well-known/smart-configuration")
    def config():  # type: ignore[no-untyped-def]
        return jsonify({"authorization_endpoint": "http://x/a", "token_endpoint": "http://x/t",
                        "code_challenge_methods_supported": ["plain"]})

    settings = Settings(fhir_allowlist=("*",))
    with serve(fake) as base:
        with pytest.raises(smart.LaunchError, match="S256"):
            smart.discover(f"{base}/fhir", settings)
        with pytest.raises(smart.LaunchError, match="HTTP 404"):
            smart.discover(f"{base}/nothing", settings)


def test_card_uuid_from_app_context() -> None:
    assert smart.card_from_app_context('{"cardUuid": "5b1f-aa"}') == "5b1f-aa"
    assert smart.card_from_app_context("5b1f-aa") == "5b1f-aa"
    assert smart.card_from_app_context('{"cardUuid": "<script>"}') is None
    assert smart.card_from_app_context(None) is None and smart.card_from_app_context("") is None
