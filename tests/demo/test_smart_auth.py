"""The demo SMART authorization server (Authlib): discovery, PKCE S256 required, launch context in the token
response, and ``{base}/fhir`` checking a bearer token only when one is sent."""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient

from demo.smart_auth import state
from service import create_app
from service.config import Settings

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "patients"
PATIENT = "oligoprogression-patient"
BASE = "http://localhost"
REDIRECT = f"{BASE}/app/callback"


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    settings = Settings.from_env({"HCC_CDS_FEEDBACK_DB": f"sqlite:///{tmp_path / 'db.sqlite3'}"}, demo=True)
    return create_app(settings).test_client()


def challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def authorize(client: FlaskClient, verifier: str | None, **extra: str):  # type: ignore[no-untyped-def]
    params = {"response_type": "code", "client_id": "hcc-cds-pathway-app", "redirect_uri": REDIRECT,
              "scope": "launch openid fhirUser patient/*.read", "state": "s-1", "aud": f"{BASE}/fhir", **extra}
    if verifier is not None:
        params.update(code_challenge=challenge(verifier), code_challenge_method="S256")
    return client.get("/fhir/auth/authorize", query_string=params)


def new_launch(client: FlaskClient, app_context: str | None = '{"cardUuid": "card-1"}') -> str:
    parameters = {"patient": PATIENT, **({"appContext": app_context} if app_context is not None else {})}
    response = client.post("/fhir/_services/smart/Launch", json={"launchUrl": "x", "parameters": parameters})
    assert response.status_code == 200
    return response.get_json()["launch_id"]


def test_well_known_smart_configuration_names_endpoints_and_s256(client: FlaskClient) -> None:
    config = client.get("/fhir/.well-known/smart-configuration").get_json()
    assert config["authorization_endpoint"] == f"{BASE}/fhir/auth/authorize"
    assert config["token_endpoint"] == f"{BASE}/fhir/auth/token"
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert {"launch-ehr", "launch-standalone", "client-public"} <= set(config["capabilities"])


def test_ehr_launch_code_flow_gives_patient_and_app_context(client: FlaskClient) -> None:
    verifier = secrets.token_urlsafe(48)
    response = authorize(client, verifier, launch=new_launch(client))
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["s-1"]
    token = client.post("/fhir/auth/token", data={
        "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT,
        "client_id": "hcc-cds-pathway-app", "code_verifier": verifier}).get_json()
    assert token["token_type"].lower() == "bearer" and token["patient"] == PATIENT
    assert token["appContext"] == '{"cardUuid": "card-1"}'
    assert set(token["scope"].split()) == {"launch", "patient/*.read"}  # no id_token: openid not granted
    read = client.get(f"/fhir/Patient/{PATIENT}", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert read.status_code == 200


def test_code_is_single_use_and_bound_to_the_verifier(client: FlaskClient) -> None:
    verifier = secrets.token_urlsafe(48)
    code = parse_qs(urlsplit(authorize(client, verifier, launch=new_launch(client)).headers["Location"]).query)
    form = {"grant_type": "authorization_code", "code": code["code"][0], "redirect_uri": REDIRECT,
            "client_id": "hcc-cds-pathway-app"}
    wrong = client.post("/fhir/auth/token", data={**form, "code_verifier": secrets.token_urlsafe(48)})
    assert wrong.status_code == 400 and wrong.get_json()["error"] == "invalid_grant"
    right = client.post("/fhir/auth/token", data={**form, "code_verifier": verifier})
    assert right.status_code == 200
    again = client.post("/fhir/auth/token", data={**form, "code_verifier": verifier})
    assert again.status_code == 400


def test_pkce_is_required(client: FlaskClient) -> None:
    response = authorize(client, None, launch=new_launch(client))
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["invalid_request"]


def test_unknown_client_or_redirect_is_not_redirected(client: FlaskClient) -> None:
    verifier = secrets.token_urlsafe(48)
    assert authorize(client, verifier, client_id="someone-else").status_code == 400
    assert authorize(client, verifier, redirect_uri="https://evil.example/cb").status_code == 400


def test_wrong_audience_and_unknown_launch_are_refused(client: FlaskClient) -> None:
    verifier = secrets.token_urlsafe(48)
    for response in (authorize(client, verifier, launch=new_launch(client), aud="https://other.example/fhir"),
                     authorize(client, verifier, launch="no-such-launch")):
        assert response.status_code == 302
        assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["invalid_request"]


def test_standalone_launch_shows_the_patient_picker_then_issues_a_code(client: FlaskClient) -> None:
    verifier = secrets.token_urlsafe(48)
    picker = authorize(client, verifier, scope="launch/patient patient/*.read")
    assert picker.status_code == 200 and f'data-patient="{PATIENT}"'.encode() in picker.data
    chosen = authorize(client, verifier, scope="launch/patient patient/*.read", patient=PATIENT)
    assert chosen.status_code == 302 and "code=" in chosen.headers["Location"]


def test_fhir_endpoint_is_open_without_token_and_checks_a_token_when_sent(client: FlaskClient) -> None:
    assert client.get("/fhir/Patient").status_code == 200
    bad = client.get("/fhir/Patient", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401 and "invalid_token" in bad.headers["WWW-Authenticate"]
    assert bad.headers["Access-Control-Allow-Origin"] == "*"
    assert client.get("/fhir/Patient", headers={"Authorization": "Basic abc"}).status_code == 401


def test_launch_context_needs_a_known_patient(client: FlaskClient) -> None:
    url = "/fhir/_services/smart/Launch"
    assert client.post(url, json={"parameters": {"patient": "nobody"}}).status_code == 400
    assert client.post(url, json={"parameters": {"patient": PATIENT, "appContext": 5}}).status_code == 400
    assert client.post(url, data="not json").status_code == 400
    assert state(client.application).launches.get(new_launch(client, None)).app_context is None


def test_plain_pkce_is_refused(client: FlaskClient) -> None:
    verifier = secrets.token_urlsafe(48)
    response = authorize(client, None, launch=new_launch(client), code_challenge=verifier,
                         code_challenge_method="plain")
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["invalid_request"]


def issue_token(client: FlaskClient) -> str:
    verifier = secrets.token_urlsafe(48)
    code = parse_qs(urlsplit(authorize(client, verifier, launch=new_launch(client)).headers["Location"]).query)
    return client.post("/fhir/auth/token", data={
        "grant_type": "authorization_code", "code": code["code"][0], "redirect_uri": REDIRECT,
        "client_id": "hcc-cds-pathway-app", "code_verifier": verifier}).get_json()["access_token"]


def test_patient_token_reads_only_its_patient(client: FlaskClient) -> None:
    auth = {"Authorization": f"Bearer {issue_token(client)}"}
    assert client.get(f"/fhir/Observation?patient={PATIENT}", headers=auth).status_code == 200
    assert client.get(f"/fhir/AdverseEvent?subject=Patient/{PATIENT}", headers=auth).status_code == 200
    assert client.get("/fhir/metadata", headers=auth).status_code == 200
    assert client.get("/fhir/Patient/missing-labs-patient", headers=auth).status_code == 401
    assert client.get("/fhir/Observation?patient=missing-labs-patient", headers=auth).status_code == 401
    assert client.get("/fhir/Observation", headers=auth).status_code == 401  # everyone's data
