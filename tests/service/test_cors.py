"""CORS (service/cors.py; service-contract.md §6, §8; checklist §1.L C1–C4).

Preflights are answered without a token even with ``HCC_CDS_AUTH=required``; error responses (401, 404,
405, 413, 500) carry ``Access-Control-Allow-Origin`` too, or the browser hides them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from flask import Blueprint, jsonify, request

from service import auth, create_app
from service.config import Settings

SANDBOX = "https://sandbox.cds-hooks.org"
PATIENT_VIEW = "hcc-second-line-patient-view"

probe = Blueprint("cors_probe", __name__)


@probe.post("/probe/auth")
def _auth_probe():
    auth.authenticate()
    return jsonify({"ok": True})


@probe.post("/probe/body")
def _body_probe():
    return jsonify({"bytes": len(request.get_data())})


@probe.get("/probe/boom")
def _boom():
    raise RuntimeError("unexpected")


@probe.get("/probe/own-acao")
def _own_acao():
    response = jsonify({"ok": True})
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Credentials"] = "true"
    return response


guarded = Blueprint("cors_guarded", __name__)


@guarded.before_request
def _guard():
    auth.authenticate()


@guarded.get("/guarded/thing")
def _guarded_thing():
    return jsonify({"ok": True})


def make_client(tmp_path: Path, **overrides):
    settings = dataclasses.replace(
        Settings(auth_mode="required", feedback_db=f"sqlite:///{tmp_path}/cors.sqlite3", max_body_bytes=1024),
        **overrides,
    )
    app = create_app(settings)
    app.register_blueprint(probe)
    app.register_blueprint(guarded)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app.test_client()


@pytest.fixture
def client(tmp_path):
    return make_client(tmp_path)


def preflight(client, path: str, origin: str = SANDBOX, method: str = "POST"):
    return client.open(path, method="OPTIONS", headers={
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    })


PREFLIGHT_PATHS = [
    "/cds-services",
    f"/cds-services/{PATIENT_VIEW}",
    "/cds-services/hcc-second-line-order-select",
    "/cds-services/hcc-second-line-order-sign",
    f"/cds-services/{PATIENT_VIEW}/feedback",
    "/fhir/metadata",
    "/fhir/Patient",
    "/guarded/thing",
    "/probe/auth",
]


@pytest.mark.parametrize("path", PREFLIGHT_PATHS)
def test_preflight_without_token(client, path):
    response = preflight(client, path)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST", "OPTIONS"} <= methods
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "*" not in allowed
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert response.data == b""


def test_preflight_for_discovery_get(client):
    response = preflight(client, "/cds-services", method="GET")
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_plain_options_is_not_a_preflight(client):
    response = client.open("/healthz", method="OPTIONS")
    assert response.status_code < 300
    assert "Access-Control-Allow-Methods" not in response.headers


def assert_acao(response, expected: str = "*") -> None:
    assert response.headers.getlist("Access-Control-Allow-Origin") == [expected]
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert response.is_json


def test_acao_on_401(client):
    response = client.post("/probe/auth", json={}, headers={"Origin": SANDBOX})
    assert response.status_code == 401
    assert_acao(response)


def test_acao_on_401_from_a_before_request_hook(client):
    response = client.get("/guarded/thing", headers={"Origin": SANDBOX})
    assert response.status_code == 401
    assert_acao(response)


def test_acao_on_404(client):
    response = client.get("/no/such/thing", headers={"Origin": SANDBOX})
    assert response.status_code == 404
    assert_acao(response)


def test_acao_on_405(client):
    response = client.get("/probe/auth", headers={"Origin": SANDBOX})
    assert response.status_code == 405
    assert_acao(response)


def test_acao_on_413(client):
    response = client.post("/probe/body", data=b"x" * 2048, headers={"Origin": SANDBOX,
                                                                    "Content-Type": "application/json"})
    assert response.status_code == 413
    assert_acao(response)


def test_acao_on_500(client):
    response = client.get("/probe/boom", headers={"Origin": SANDBOX})
    assert response.status_code == 500
    assert_acao(response)


def test_acao_on_success_and_request_id_exposed(client):
    response = client.get("/healthz", headers={"Origin": SANDBOX})
    assert response.status_code == 200
    assert_acao(response)
    assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]


def test_acao_on_the_real_service_error(client):
    response = client.post(f"/cds-services/{PATIENT_VIEW}", json={}, headers={"Origin": SANDBOX})
    assert response.status_code in {400, 401}
    assert_acao(response)


def test_discovery_acao(client):
    response = client.get("/cds-services", headers={"Origin": SANDBOX, "Authorization": "Bearer whatever"})
    assert response.status_code == 200
    assert_acao(response)


# --- origin allowlist ----------------------------------------------------------------------------------

ALLOWED = "https://ehr.example.org"


@pytest.fixture
def allowlist_client(tmp_path):
    return make_client(tmp_path, cors_origins=(ALLOWED, SANDBOX))


def test_allowed_origin_is_echoed_with_vary(allowlist_client):
    response = allowlist_client.get("/healthz", headers={"Origin": ALLOWED})
    assert_acao(response, ALLOWED)
    assert "Origin" in response.vary
    response = allowlist_client.post("/probe/auth", json={}, headers={"Origin": SANDBOX})
    assert response.status_code == 401
    assert_acao(response, SANDBOX)
    assert "Origin" in response.vary


def test_allowed_origin_preflight(allowlist_client):
    response = preflight(allowlist_client, f"/cds-services/{PATIENT_VIEW}", origin=ALLOWED)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Origin" in response.vary
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


def test_disallowed_origin_gets_no_acao(allowlist_client):
    for response in (
        allowlist_client.get("/healthz", headers={"Origin": "https://evil.example"}),
        allowlist_client.get("/no/such/thing", headers={"Origin": "https://evil.example"}),
        allowlist_client.get("/probe/own-acao", headers={"Origin": "https://evil.example"}),
        preflight(allowlist_client, "/cds-services", origin="https://evil.example"),
        allowlist_client.get("/healthz"),
    ):
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Allow-Credentials" not in response.headers
        assert "Origin" in response.vary


def test_no_duplicate_acao_when_a_view_sets_it(allowlist_client, client):
    response = allowlist_client.get("/probe/own-acao", headers={"Origin": ALLOWED})
    assert response.headers.getlist("Access-Control-Allow-Origin") == [ALLOWED]
    response = client.get("/probe/own-acao", headers={"Origin": SANDBOX})
    assert response.headers.getlist("Access-Control-Allow-Origin") == ["*"]
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_star_without_origin_header_still_sets_acao(client):
    assert client.get("/healthz").headers["Access-Control-Allow-Origin"] == "*"


def test_cors_origins_from_env(tmp_path):
    settings = Settings.from_env({"HCC_CDS_CORS_ORIGINS": f"{ALLOWED}, {SANDBOX}",
                                  "HCC_CDS_FEEDBACK_DB": f"sqlite:///{tmp_path}/env.sqlite3"})
    assert settings.cors_origins == (ALLOWED, SANDBOX)
    c = create_app(settings).test_client()
    assert c.get("/healthz", headers={"Origin": SANDBOX}).headers["Access-Control-Allow-Origin"] == SANDBOX


def test_preflight_has_no_body_type(client):
    response = preflight(client, "/cds-services")
    assert "Content-Type" not in response.headers
