"""Query building and result reading in ``service.fhir``: percent-encoded search values, searchset outcomes."""

from __future__ import annotations

import pytest

from service.discovery import PREFETCH
from service.fhir import SearchsetError, encode_query, is_benign_outcome, read_searchset, substitute

EPIC_4101 = {"resourceType": "OperationOutcome", "issue": [
    {"severity": "warning", "code": "processing", "details": {"coding": [{"code": "4101"}]}}]}
ERROR = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Observation?patient=p1&code=http://loinc.org|1751-7",
         "Observation?patient=p1&code=http%3A%2F%2Floinc.org%7C1751-7"),
        ("Observation?code=http://loinc.org|1751-7,http://loinc.org|1975-2&_count=1000",
         "Observation?code=http%3A%2F%2Floinc.org%7C1751-7,http%3A%2F%2Floinc.org%7C1975-2&_count=1000"),
        ("AdverseEvent?subject=Patient/p1", "AdverseEvent?subject=Patient%2Fp1"),
        ("X?p=a%2Cb,c", "X?p=a%2Cb,c"),  # an encoded comma is data, a raw comma the OR separator
        ("X?p=a%20b", "X?p=a%20b"),
        ("Patient/p1", "Patient/p1"),
        ("X?flag", "X?flag"),
    ],
)
def test_encode_query(query: str, expected: str) -> None:
    assert encode_query(query) == expected
    assert encode_query(expected) == expected  # idempotent


def test_prefetch_templates_go_out_without_a_bare_pipe_colon_or_slash_in_values() -> None:
    for template, _required in PREFETCH.values():
        query = substitute(template, {"patientId": "p1"})
        assert query is not None
        _path, _, params = query.partition("?")
        assert not any(ch in params for ch in "|:/"), query
    observations = substitute(PREFETCH["observations"][0], {"patientId": "p1"})
    assert "code=http%3A%2F%2Floinc.org%7C1751-7," in observations


@pytest.mark.parametrize(
    ("outcome", "benign"),
    [
        (EPIC_4101, True),
        ({"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational"}]}, True),
        ({"resourceType": "OperationOutcome", "issue": [{"severity": "warning"}, {"severity": "error"}]}, False),
        ({"resourceType": "OperationOutcome", "issue": [{"severity": "fatal"}]}, False),
        ({"resourceType": "OperationOutcome", "issue": []}, False),
        ({"resourceType": "OperationOutcome"}, False),
    ],
)
def test_is_benign_outcome(outcome: dict, benign: bool) -> None:
    assert is_benign_outcome(outcome) is benign


def _entry(resource: dict, mode: str | None = "match") -> dict:
    entry: dict = {"resource": resource}
    if mode:
        entry["search"] = {"mode": mode}
    return entry


def test_read_searchset_drops_a_warning_outcome_and_keeps_the_rest() -> None:
    obs = {"resourceType": "Observation", "id": "o1"}
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [
        _entry(EPIC_4101, "outcome"), _entry(obs), _entry({"resourceType": "Patient", "id": "p"}, "include"),
        _entry({"resourceType": "Observation", "id": "o2"}, None), "junk", {"resource": "junk"}],
        "link": [{"relation": "next", "url": "http://x/fhir/Observation?page=2"}]}
    resources, next_url = read_searchset(bundle)
    assert [r["id"] for r in resources] == ["o1", "p", "o2"]
    assert next_url == "http://x/fhir/Observation?page=2"
    assert read_searchset({"resourceType": "Bundle", "entry": [_entry(EPIC_4101, "outcome")]}) == ([], None)


@pytest.mark.parametrize("mode", ["outcome", None, "match"])
def test_read_searchset_raises_for_an_error_outcome_whatever_its_mode(mode) -> None:
    with pytest.raises(SearchsetError):
        read_searchset({"resourceType": "Bundle", "entry": [_entry(ERROR, mode)]})


def test_read_searchset_raises_for_a_malformed_entry_list() -> None:
    with pytest.raises(SearchsetError):
        read_searchset({"resourceType": "Bundle", "entry": {"x": 1}})
