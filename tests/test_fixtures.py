"""Every fixture replays to its reviewed golden response, and the patient-view fixtures meet the expectations
computed by hand from the rules (tests/fixture_expectations.json, written independently of the program)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from service.cli import expected_path, mask_uuids, replay
from service.validation import null_or_empty_paths, response_errors

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = sorted((ROOT / "fixtures" / "requests").glob("*.json"))
PATIENTS = sorted((ROOT / "fixtures" / "patients").glob("*.json"))
EXPECTATIONS = json.loads((Path(__file__).parent / "fixture_expectations.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("fixture", REQUESTS, ids=lambda p: p.name)
def test_fixture_replays_to_its_golden_response(fixture: Path) -> None:
    response, hook, status = replay(fixture)
    assert status == 200
    golden = expected_path(fixture, hook)
    assert golden.exists(), f"no reviewed golden response for {fixture.name}"
    assert mask_uuids(response) == json.loads(golden.read_text(encoding="utf-8"))


@pytest.mark.parametrize("fixture", REQUESTS, ids=lambda p: p.name)
def test_fixture_response_is_valid_cds_hooks(fixture: Path) -> None:
    response, _hook, _status = replay(fixture)
    assert response_errors(response) == []
    assert null_or_empty_paths(response) == []
    uuids = [card["uuid"] for card in response["cards"]]
    assert len(set(uuids)) == len(uuids)


def test_at_least_fourteen_patients_and_each_has_a_recorded_request() -> None:
    assert len(PATIENTS) >= 14
    recorded = {p.name.split(".")[0] for p in REQUESTS if p.name.endswith(".patient-view.json")}
    assert {p.stem for p in PATIENTS} <= recorded


def _topics(response: dict) -> list[str]:
    return [card["source"]["topic"]["code"] for card in response["cards"]]


_SETS = {"organs", "drugs", "failedDrugs"}


def _subset(expected: dict, actual: dict, where: str) -> None:
    for key, value in expected.items():
        assert key in actual, f"{where}.{key} missing"
        if isinstance(value, dict) and isinstance(actual[key], dict):
            _subset(value, actual[key], f"{where}.{key}")
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value) and value:
            assert len(actual[key]) == len(value), f"{where}.{key}: {actual[key]!r}"
            for item in value:
                assert any(all(a.get(k) == v for k, v in item.items()) for a in actual[key]), f"{where}.{key}"
        elif key in _SETS:
            assert set(actual[key]) == set(value), f"{where}.{key}: {actual[key]!r} != {value!r}"
        elif key == "score" and value is not None:
            assert actual[key] == pytest.approx(value, abs=0.006), f"{where}.{key}"
        else:
            assert actual[key] == value, f"{where}.{key}: {actual[key]!r} != {value!r}"


@pytest.mark.parametrize("name", sorted(EXPECTATIONS), ids=str)
def test_patient_view_matches_hand_computed_expectations(name: str) -> None:
    """Expectations computed by hand from clinical-rules.md v2 by a reviewer who never read the code."""
    expected = EXPECTATIONS[name]
    response, _hook, status = replay(ROOT / "fixtures" / "requests" / f"{name}.patient-view.json")
    assert status == 200
    assert sorted(_topics(response)) == sorted(expected["cards"])
    if "second-line-options" not in expected["cards"]:
        return
    card = next(c for c in response["cards"] if c["source"]["topic"]["code"] == "second-line-options")
    rec = card["extension"]["hcc-cds.recommendation"]
    assert rec["contractVersion"] == "2"
    assert set(rec["rulesFired"]) == set(expected["rulesFired"])
    if "applicability" in expected:
        assert rec["applicability"] == expected["applicability"]
    if "indicator" in expected:
        assert card["indicator"] == expected["indicator"]
    options = {o["code"]: o for o in rec["options"]}
    assert rec["options"][0]["code"] == expected["leadingOption"]
    undetermined = set(expected.get("undeterminedOptions", []))
    shown = {code: o["strength"] for code, o in options.items() if code not in undetermined}
    assert shown == expected.get("options", {}), "options and strengths"
    for code in expected.get("absentOptions", []):
        assert code not in options, f"option {code} must not appear"
    if "excludedOptions" in expected:
        assert {(e["code"], e["reason"]) for e in rec["excludedOptions"]} == {
            (e["code"], e["reason"]) for e in expected["excludedOptions"]}
    dose = expected.get("lenvatinibDose")
    if dose:
        assert dose in options["tki-lenvatinib"]["dose"]
    if "trials" in expected:
        trials = next((c for c in response["cards"] if c["source"]["topic"]["code"] == "clinical-trials"), None)
        listed = set(re.findall(r"NCT\d{8}", trials["detail"])) if trials else set()
        assert listed == set(expected["trials"])
    _subset(expected.get("assessment", {}), rec["assessment"], "assessment")
    strengths = ["preferred", "alternative", "consider", "caution", "avoid"]
    ranks = [strengths.index(o["strength"]) for o in rec["options"]]
    assert ranks == sorted(ranks), "options must be ordered by strength"
    assert len(card["summary"]) <= 139
