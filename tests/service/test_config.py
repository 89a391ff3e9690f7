"""Settings (service/config.py): a bad HCC_CDS_* value stops start-up with one line naming the variable.

Issue 10: before, ``HCC_CDS_PORT=abc`` gave gunicorn a traceback ending in "invalid literal for int()", naming
no variable; and with HCC_CDS_PUBLIC_URL unset the JWT audience followed the request's Host header.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import ConfigError, Settings, production_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("PORT", "abc", "must be a whole number"),
    ("PORT", "70000", "between 1 and 65535"),
    ("AUTH", "maybe", "must be one of required, optional, off"),
    ("TRUSTED_ISSUERS", "{not json", "not valid JSON"),
    ("TRUSTED_ISSUERS", '["a"]', "JSON object"),
    ("FEEDBACK_DB", "mysql://x", "SQLAlchemy URL"),
    ("PUBLIC_URL", "cds.example.org", "absolute http(s) base URL"),
    ("MAX_BODY_BYTES", "-1", "between"),
    ("FHIR_DEADLINE", "nan", "between"),
    ("FHIR_READ_TIMEOUT", "fast", "number of seconds"),
    ("JWT_LEEWAY", "1e3", "whole number"),
    ("LOG_LEVEL", "loud", "must be one of"),
    ("WORKERS", "two", "whole number"),
    ("DB_TIMEOUT", "0", "between"),
])
def test_bad_value_names_the_variable_and_the_reason(name: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({f"HCC_CDS_{name}": value})
    message = str(caught.value)
    assert message.startswith(f"HCC_CDS_{name}: ") and reason in message
    assert "\n" not in message


def test_good_values_are_read() -> None:
    settings = Settings.from_env({"HCC_CDS_PORT": " 9000 ", "HCC_CDS_AUTH": "OFF", "HCC_CDS_FHIR_DEADLINE": "3.5",
                                  "HCC_CDS_PUBLIC_URL": "https://cds.example.org/hcc/", "HCC_CDS_THREADS": "12"})
    assert (settings.port, settings.auth_mode, settings.fhir_deadline) == (9000, "off", 3.5)
    assert settings.public_url == "https://cds.example.org/hcc" and settings.threads == 12


def test_production_requires_public_url_when_auth_is_required() -> None:
    with pytest.raises(ConfigError, match=r"^HCC_CDS_PUBLIC_URL: must be set when HCC_CDS_AUTH=required"):
        production_settings({})
    assert production_settings({"HCC_CDS_PUBLIC_URL": "https://cds.example.org"}).auth_mode == "required"
    assert production_settings({"HCC_CDS_AUTH": "off"}).public_url is None


def _gunicorn(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HCC_CDS_")}
    return subprocess.run([str(Path(sys.executable).with_name("gunicorn")), "service.wsgi:app", "-c",
                           "gunicorn.conf.py"], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.integration
@pytest.mark.parametrize(("env", "expected"), [
    ({"HCC_CDS_PORT": "abc", "HCC_CDS_AUTH": "off"}, "HCC_CDS_PORT: must be a whole number, got 'abc'"),
    ({"HCC_CDS_AUTH": "required"}, "HCC_CDS_PUBLIC_URL: must be set when HCC_CDS_AUTH=required"),
])
def test_gunicorn_stops_with_one_line_naming_the_variable(env: dict[str, str], expected: str) -> None:
    result = _gunicorn(env)
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], lines
    assert "Traceback" not in result.stderr


def test_cli_reports_a_bad_value_in_one_line() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HCC_CDS_")}
    result = subprocess.run([str(Path(sys.executable).with_name("hcc-cds")), "feedback-report"], cwd=ROOT,
                            env={**clean, "HCC_CDS_DB_TIMEOUT": "soon"}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "hcc-cds: configuration error: HCC_CDS_DB_TIMEOUT: must be a number of seconds, got 'soon'"]
