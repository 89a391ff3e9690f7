"""The ``hcc-cds`` command line: replay (with --check and --now), record, feedback-report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from service.cli import main
from service.validation import request_errors
from tests.service.support import PATIENTS_DIR, REQUESTS_DIR


def test_replay_check_passes_for_a_recorded_request(capsys) -> None:
    assert main(["replay", str(REQUESTS_DIR / "oligoprogression.patient-view.json"), "--check"]) == 0
    assert capsys.readouterr().out.startswith("ok ")


def test_replay_check_fails_and_shows_a_diff_when_the_golden_differs(tmp_path, capsys) -> None:
    (tmp_path / "requests").mkdir()
    (tmp_path / "expected").mkdir()
    fixture = tmp_path / "requests" / "x.patient-view.json"
    shutil.copy(REQUESTS_DIR / "oligoprogression.patient-view.json", fixture)
    golden = json.loads((REQUESTS_DIR.parent / "expected" / "oligoprogression.patient-view.json").read_text())
    golden["cards"][0]["summary"] = "something else"
    (tmp_path / "expected" / "x.patient-view.json").write_text(json.dumps(golden))
    assert main(["replay", str(fixture), "--check"]) == 1
    assert "something else" in capsys.readouterr().out


def test_replay_of_a_patient_bundle_uses_its_timestamp_and_now_overrides_it(capsys) -> None:
    bundle = str(PATIENTS_DIR / "systemic-atezo-bev.json")
    assert main(["replay", bundle]) == 0
    current = json.loads(capsys.readouterr().out)
    albi = current["cards"][0]["extension"]["hcc-cds.recommendation"]["assessment"]["albi"]
    assert albi["status"] == "current"
    assert main(["replay", bundle, "--now", "2028-01-01T00:00:00Z"]) == 0
    later = json.loads(capsys.readouterr().out)
    assert later["cards"][0]["extension"]["hcc-cds.recommendation"]["assessment"]["albi"]["status"] == "stale"


def test_replay_of_a_bundle_with_an_order_hook_is_refused(capsys) -> None:
    assert main(["replay", str(PATIENTS_DIR / "oligoprogression.json"), "--hook", "order-sign"]) == 2
    assert "draft orders" in capsys.readouterr().err


def test_record_prints_a_valid_full_prefetch_request(capsys) -> None:
    assert main(["record", str(PATIENTS_DIR / "karnofsky-only.json")]) == 0
    request = json.loads(capsys.readouterr().out)
    assert request_errors(request) == []
    assert request["context"]["patientId"] == "karnofsky-only-patient"
    assert set(request["prefetch"]) >= {"conditions", "observations", "medicationStatements"}


def test_feedback_report_runs_on_an_empty_database(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HCC_CDS_FEEDBACK_DB", f"sqlite:///{Path(tmp_path) / 'fb.sqlite3'}")
    assert main(["feedback-report"]) == 0
    assert "No feedback recorded" in capsys.readouterr().out


def test_serve_without_demo_data_keeps_the_demo_defaults_but_not_the_patients(monkeypatch) -> None:
    seen = {}
    monkeypatch.setattr("service.prepare_process", lambda: None)
    monkeypatch.setattr("werkzeug.serving.run_simple", lambda host, port, app, **kw: seen.update(app=app))
    for name in ("HCC_CDS_AUTH", "HCC_CDS_FHIR_ALLOWLIST", "HCC_CDS_TRUSTED_ISSUERS", "HCC_CDS_FEEDBACK_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HCC_CDS_FEEDBACK_DB", "sqlite://")
    assert main(["serve", "--no-demo-data", "--port", "1"]) == 0
    settings = seen["app"].config["HCC_CDS"]
    assert settings.demo_data is False and settings.auth_mode == "optional" and settings.fhir_allowlist == ("*",)
    assert seen["app"].test_client().get("/fhir/metadata").status_code == 404


# --- record / replay on Bundles nobody here wrote (issue 12) -------------------------------------------------


def _synthea_like() -> dict:
    """A Synthea-shaped Bundle: type transaction, urn:uuid fullUrls and references, request entries, no timestamp."""
    patient_url = "urn:uuid:3c1e4e9a-0d5b-4bd0-9f54-7a4f0d3f0a11"
    resources = [
        (patient_url, {"resourceType": "Patient", "id": "3c1e4e9a-0d5b-4bd0-9f54-7a4f0d3f0a11",
                       "name": [{"use": "official", "family": "Rau926", "given": ["Ezequiel478"]}],
                       "gender": "male", "birthDate": "1960-02-03"}),
        ("urn:uuid:8f0c1b7e-5b7a-4c36-b0a4-1f2a9f6c2b22",
         {"resourceType": "Condition", "id": "8f0c1b7e-5b7a-4c36-b0a4-1f2a9f6c2b22",
          "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                         "code": "active"}]},
          "code": {"coding": [{"system": "http://snomed.info/sct", "code": "109841003",
                               "display": "Liver cell carcinoma (disorder)"}]},
          "subject": {"reference": patient_url}, "onsetDateTime": "2026-01-10T04:05:06-05:00"}),
        ("urn:uuid:1d2e3f40-1111-4a4a-8b8b-2c2c2c2c2c33",
         {"resourceType": "Observation", "id": "1d2e3f40-1111-4a4a-8b8b-2c2c2c2c2c33", "status": "final",
          "code": {"coding": [{"system": "http://loinc.org", "code": "1751-7"}]},
          "subject": {"reference": patient_url}, "effectiveDateTime": "2026-11-01T04:05:06-05:00",
          "valueQuantity": {"value": 3.6, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}}),
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": url, "resource": resource,
         "request": {"method": "POST", "url": resource["resourceType"]}} for url, resource in resources]}


def _write(tmp_path, data, name="bundle.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if not line.startswith("{")]  # JSON log lines aside
    assert len(lines) == 1, captured.err
    return lines[0]


def test_record_and_replay_of_a_bundle_without_timestamp_need_now(tmp_path, capsys) -> None:
    path = _write(tmp_path, _synthea_like())
    for command in (["record", path], ["replay", path]):
        assert main(command) == 2
        line = _one_line_error(capsys)
        assert "no timestamp" in line and "--now" in line


def test_record_of_a_synthea_like_bundle_with_now_gives_a_valid_request(tmp_path, capsys) -> None:
    path = _write(tmp_path, _synthea_like())
    assert main(["record", path, "--now", "2026-11-20T09:00:00Z"]) == 0
    request = json.loads(capsys.readouterr().out)
    assert request_errors(request) == []
    assert request["context"]["patientId"] == "3c1e4e9a-0d5b-4bd0-9f54-7a4f0d3f0a11"
    assert request["extension"]["hcc-cds.fixture"]["evaluatedAt"] == "2026-11-20T09:00:00Z"
    conditions = request["prefetch"]["conditions"]["entry"]
    assert [e["resource"]["subject"]["reference"] for e in conditions] == [
        "Patient/3c1e4e9a-0d5b-4bd0-9f54-7a4f0d3f0a11"]  # urn:uuid resolved to the Patient
    assert main(["replay", path, "--now", "2026-11-20T09:00:00Z"]) == 0
    assert json.loads(capsys.readouterr().out) == {"cards": []}  # HCC but no first-line ICI: R0 does not hold


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"resourceType": "Bundle", "type": "collection", "timestamp": "2026-11-20T09:00:00Z", "entry": []},
         "no Patient"),
        ({"resourceType": "Bundle", "type": "collection", "timestamp": "2026-11-20T09:00:00Z",
          "entry": [{"resource": {"resourceType": "Observation"}}]}, "unusable Bundle"),
        ({"resourceType": "Bundle", "timestamp": "yesterday", "entry": []}, "not an ISO 8601 date-time"),
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
    ],
    ids=["no-patient", "resource-without-id", "bad-timestamp", "not-json", "not-object"],
)
def test_record_and_replay_name_the_problem_in_one_line(content, message, tmp_path, capsys) -> None:
    path = _write(tmp_path, content if isinstance(content, str) else json.dumps(content))
    for command in (["record", path], ["replay", path]):
        assert main(command) == 2
        assert message in _one_line_error(capsys)


def test_record_and_replay_of_a_missing_file_or_bad_now_say_so(tmp_path, capsys) -> None:
    assert main(["replay", str(tmp_path / "missing.json")]) == 2
    assert "cannot be read" in _one_line_error(capsys)
    path = _write(tmp_path, _synthea_like())
    assert main(["record", path, "--now", "soon"]) == 2
    assert "not an ISO 8601 date-time: 'soon'" in _one_line_error(capsys)
    assert main(["replay", _write(tmp_path, {"hook": ["x"]}, "req.json")]) == 2
    assert "known 'hook'" in _one_line_error(capsys)
