"""Structured logging (service/logs.py): one JSON access line per request, nothing sensitive in it."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from flask import Blueprint, g, jsonify

from service import auth, create_app, logs
from service.config import Settings

probe = Blueprint("logs_probe", __name__)
HOOK_INSTANCE = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"


@probe.post("/probe/<service_id>")
def _probe(service_id: str):
    g.service_id = service_id
    g.hook_instance = HOOK_INSTANCE
    g.timings = {"gather": 1.234567, "rules": 0.5}
    auth.authenticate()
    return jsonify({"ok": True})


@probe.get("/probe-error")
def _probe_error():
    raise RuntimeError("secret clinical value 42 mg")


@pytest.fixture
def app(tmp_path):
    settings = Settings(auth_mode="optional", feedback_db=f"sqlite:///{tmp_path}/logs.sqlite3",
                        trusted_issuers={"https://ehr.example": str(tmp_path / "missing-jwks.json")})
    app = create_app(settings)
    app.register_blueprint(probe)
    return app


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def access_lines(text: str) -> list[dict]:
    return [line for line in json_lines(text) if line.get("event") == "request"]


def test_one_access_line_per_request(app, capsys):
    response = app.test_client().get("/healthz?patient=Patient/123&secret=abc")
    lines = access_lines(capsys.readouterr().err)
    assert len(lines) == 1
    line = lines[0]
    assert line["method"] == "GET"
    assert line["path"] == "/healthz"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0
    assert line["logger"] == "hcc_cds" and line["level"] == "INFO"
    assert str(uuid.UUID(line["request_id"])) == line["request_id"]
    assert response.headers["X-Request-ID"] == line["request_id"]
    assert "hook_instance" not in line and "service_id" not in line


def test_request_ids_are_unique(app, capsys):
    client = app.test_client()
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5
    assert {line["request_id"] for line in access_lines(capsys.readouterr().err)} == ids


def test_route_rule_and_view_fields(app, capsys):
    app.test_client().post("/probe/hcc-second-line-patient-view?q=1", json={"patient": "Jane Doe"})
    line = access_lines(capsys.readouterr().err)[0]
    assert line["path"] == "/probe/<service_id>"
    assert line["service_id"] == "hcc-second-line-patient-view"
    assert line["hook_instance"] == HOOK_INSTANCE
    assert line["timings"] == {"gather": 1.23, "rules": 0.5}


def test_unmatched_path_logged_without_query(app, capsys):
    app.test_client().get("/nowhere/at/all?token=abc")
    err = capsys.readouterr().err
    line = access_lines(err)[0]
    assert line["path"] == "/nowhere/at/all" and line["status"] == 404
    assert "token=abc" not in err


def test_no_headers_bodies_or_tokens_in_logs(app, capsys):
    secret = "eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJodHRwczovL2Voci5leGFtcGxlIn0.c2lnbmF0dXJl"
    client = app.test_client()
    response = client.post("/probe/svc", json={"context": {"patientId": "PAT-SECRET-9"}},
                           headers={"Authorization": f"Bearer {secret}", "Cookie": "session=COOKIE-SECRET",
                                    "X-Custom": "HEADER-SECRET"})
    assert response.status_code == 401
    err = capsys.readouterr().err
    for needle in (secret, *secret.split("."), "PAT-SECRET-9", "COOKIE-SECRET", "HEADER-SECRET", "Bearer"):
        assert needle not in err
    events = [line["event"] for line in json_lines(err)]
    assert events == ["auth", "request"]
    assert access_lines(err)[0]["status"] == 401


def test_server_error_logged_as_error_without_message(app, capsys):
    response = app.test_client().get("/probe-error")
    assert response.status_code == 500
    err = capsys.readouterr().err
    assert "42 mg" not in err and "secret clinical" not in err
    line = access_lines(err)[0]
    assert line["status"] == 500 and line["level"] == "ERROR"


def test_log_event_drops_token_fields(capsys):
    logs.configure_logging("INFO")
    logs.log_event("fhir-call", access_token="AT-SECRET", Authorization="AUTH-SECRET",
                   fhirAuthorization={"access_token": "X"}, id_token="ID-SECRET", refreshToken="RT-SECRET",
                   status=200, nested={"ok": 1, "bearer_token": "NESTED-SECRET"})
    err = capsys.readouterr().err
    lines = json_lines(err)
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "fhir-call"
    assert line["status"] == 200
    assert line["nested"] == {"ok": 1}
    for name in ("access_token", "Authorization", "fhirAuthorization", "id_token", "refreshToken"):
        assert name not in line
    assert "SECRET" not in err


def test_formatter_drops_token_fields_from_plain_logging_calls(capsys):
    logs.configure_logging("INFO")
    logging.getLogger("hcc_cds").warning("something", extra={"event": "x", "access_token": "S3CR3T", "n": 1})
    line = json_lines(capsys.readouterr().err)[0]
    assert line["event"] == "x" and line["message"] == "something" and line["n"] == 1
    assert "access_token" not in line and line["level"] == "WARNING"


def test_exception_logged_without_its_message(capsys):
    logs.configure_logging("INFO")
    try:
        raise ValueError("bilirubin 3.2")
    except ValueError:
        logging.getLogger("hcc_cds").exception("failed")
    err = capsys.readouterr().err
    line = json_lines(err)[0]
    assert line["exc_type"] == "ValueError" and line["exc_frames"]
    assert "bilirubin" not in err


def test_log_level_from_settings(tmp_path, capsys):
    create_app(Settings(feedback_db=f"sqlite:///{tmp_path}/lvl.sqlite3", log_level="WARNING"))
    capsys.readouterr()  # start-up configuration warnings are WARNING level and do appear
    try:
        assert logging.getLogger("hcc_cds").level == logging.WARNING
        logs.log_event("quiet")
        assert capsys.readouterr().err == ""
    finally:
        logs.configure_logging("INFO")


def test_single_handler_after_many_apps(tmp_path):
    for i in range(3):
        create_app(Settings(feedback_db=f"sqlite:///{tmp_path}/h{i}.sqlite3"))
    handlers = [h for h in logging.getLogger("hcc_cds").handlers if getattr(h, "_hcc_cds", False)]
    assert len(handlers) == 1


def test_dev_server_request_lines_with_query_strings_are_silenced(app):
    assert logging.getLogger("werkzeug").getEffectiveLevel() >= logging.WARNING


def test_start_up_warns_about_settings_that_would_fail_every_call(tmp_path, capsys):
    create_app(Settings(feedback_db=f"sqlite:///{tmp_path}/warn.sqlite3", auth_mode="required"))
    err = capsys.readouterr().err
    assert "HCC_CDS_TRUSTED_ISSUERS is empty" in err and "HCC_CDS_FHIR_ALLOWLIST empty" in err
