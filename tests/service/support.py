"""Helpers shared by the service tests: recorded fixture requests and their evaluation time."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATIENTS_DIR = ROOT / "fixtures" / "patients"
REQUESTS_DIR = ROOT / "fixtures" / "requests"


def fixture_request(name: str, hook: str = "patient-view") -> dict:
    return json.loads((REQUESTS_DIR / f"{name}.{hook}.json").read_text(encoding="utf-8"))


def evaluated_at(request: dict) -> datetime:
    return datetime.fromisoformat(request["extension"]["hcc-cds.fixture"]["evaluatedAt"].replace("Z", "+00:00"))
