"""Review of the demo store's OR-list fast path (demo/fhirstore.py _TokenSet)."""

from __future__ import annotations

from demo.fhirstore import FhirStore


def _store() -> FhirStore:
    patient = {"resourceType": "Patient", "id": "p", "name": [{"given": ["A"]}]}
    malformed = {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p"},
                 "code": {"coding": [{"system": "http://loinc.org", "code": ["1751-7"]}]}}
    good = {"resourceType": "Observation", "id": "o2", "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "1751-7"}]}}
    return FhirStore.from_bundles([{"resourceType": "Bundle", "type": "collection",
                                    "entry": [{"resource": r} for r in (patient, malformed, good)]}])


def test_an_or_list_search_skips_a_coding_whose_code_is_not_a_string() -> None:
    """One code works; two codes (the _TokenSet path) raise TypeError: unhashable type 'list'."""
    store = _store()
    assert [r["id"] for r in store.search("Observation", {"code": ["http://loinc.org|1751-7"]})] == ["o2"]
    assert [r["id"] for r in store.search("Observation",
                                          {"code": ["http://loinc.org|1751-7,http://loinc.org|2862-1"]})] == ["o2"]
