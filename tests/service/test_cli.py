"""The ``hcc-cds`` command line: replay (with --check and --now), record, feedback-report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

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
