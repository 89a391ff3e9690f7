"""The in-memory FHIR store: loading, read, search semantics and date shifting."""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demo.fhirstore import FhirStore, FhirStoreError, SearchError, shift_date_string

LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ALBUMIN, BILIRUBIN, AFP = "1751-7", "1975-2", "1834-1"


def observation(oid: str, patient: str, code: str, *, system: str | None = LOINC, status: str = "final",
                when: str = "2026-03-01T09:30:00+01:00", category: str = "laboratory") -> dict[str, Any]:
    coding = {"code": code} if system is None else {"system": system, "code": code}
    return {
        "resourceType": "Observation", "id": oid, "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": category}]}],
        "code": {"coding": [coding]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": 1.0, "unit": "U", "system": "http://unitsofmeasure.org", "code": "U"},
    }


def bundle(*resources: dict[str, Any], timestamp: str = "2026-03-02T08:00:00Z", **extra: Any) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "timestamp": timestamp,
            "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources], **extra}


def patient(pid: str, given: str | None = "Ana") -> dict[str, Any]:
    name: dict[str, Any] = {"family": "Lima"}
    if given:
        name["given"] = [given]
    return {"resourceType": "Patient", "id": pid, "name": [name], "gender": "female",
            "birthDate": "1958-06-30"}


@pytest.fixture
def store() -> FhirStore:
    p1 = [
        patient("p1"),
        observation("alb-1", "p1", ALBUMIN),
        observation("bil-1", "p1", BILIRUBIN, status="amended"),
        observation("afp-1", "p1", AFP, status="preliminary"),
        observation("local-1", "p1", "ECOG-LOCAL", system=None, category="survey"),
        {"resourceType": "Condition", "id": "hcc-1", "subject": {"reference": "Patient/p1"},
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "active"}]},
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C22.0"}]}},
        {"resourceType": "MedicationStatement", "id": "ms-1", "status": "completed",
         "subject": {"reference": "Patient/p1"},
         "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1792776"}]}},
        {"resourceType": "AdverseEvent", "id": "ae-1", "actuality": "actual",
         "subject": {"reference": "urn:uuid:p1"},
         "event": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "K75.4"}]}},
        {"resourceType": "BodyStructure", "id": "bs-1", "patient": {"reference": "Patient/p1"},
         "location": {"coding": [{"system": "http://snomed.info/sct", "code": "39607008"}]}},
    ]
    p2 = [
        patient("p2", "Ben"),
        observation("alb-2", "p2", ALBUMIN),
        {"resourceType": "Practitioner", "id": "dr-1", "name": [{"family": "Okafor", "given": ["Chidi"]}]},
    ]
    return FhirStore.from_bundles([bundle(*p1), bundle(*p2, timestamp="2026-04-01T00:00:00Z")])


def ids(resources: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in resources]


# ---- loading and read ----------------------------------------------------------------------------


def test_read_by_type_and_id(store: FhirStore) -> None:
    assert store.read("Observation", "alb-1")["code"]["coding"][0]["code"] == ALBUMIN
    assert store.read("Observation", "nope") is None
    assert store.read("Nonsense", "alb-1") is None
    assert ids(store.patients()) == ["p1", "p2"]


def test_duplicate_type_and_id_across_bundles_is_an_error() -> None:
    with pytest.raises(FhirStoreError, match="duplicate Patient/p1"):
        FhirStore.from_bundles([bundle(patient("p1")), bundle(patient("p1"))])


def test_same_id_in_different_types_is_fine() -> None:
    store = FhirStore.from_bundles([bundle(patient("x1"), observation("x1", "x1", ALBUMIN))])
    assert store.read("Patient", "x1") and store.read("Observation", "x1")


def test_not_a_bundle_or_resource_without_id_is_an_error() -> None:
    with pytest.raises(FhirStoreError, match="not a FHIR Bundle"):
        FhirStore.from_bundles([{"resourceType": "Patient", "id": "p"}])
    with pytest.raises(FhirStoreError, match="no valid id"):
        FhirStore.from_bundles([bundle({"resourceType": "Patient"} | {"id": ""})])


def test_bundle_local_urn_references_become_type_and_id(store: FhirStore) -> None:
    assert store.read("AdverseEvent", "ae-1")["subject"]["reference"] == "Patient/p1"


def test_from_directory_loads_json_bundles_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text(json.dumps(bundle(patient("pb"))))
    (tmp_path / "a.json").write_text(json.dumps(bundle(patient("pa"))))
    (tmp_path / "notes.txt").write_text("not a bundle")
    store = FhirStore.from_directory(tmp_path)
    assert ids(store.patients()) == ["pa", "pb"]
    assert [info.source for info in store.bundles] == ["a.json", "b.json"]


def test_from_directory_rejects_broken_json_and_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FhirStoreError, match="not found"):
        FhirStore.from_directory(tmp_path / "missing")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(FhirStoreError, match=r"broken\.json"):
        FhirStore.from_directory(tmp_path)


def test_patient_without_given_name_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hcc_cds.fhirstore"):
        FhirStore.from_bundles([bundle(patient("anon", given=None))])
    assert "Patient/anon has no name[0].given" in caplog.text


# ---- search: patient / subject -------------------------------------------------------------------


@pytest.mark.parametrize("value", ["p1", "Patient/p1", "http://ehr.example/fhir/Patient/p1"])
def test_patient_parameter_accepts_id_reference_and_absolute_url(store: FhirStore, value: str) -> None:
    assert ids(store.search("Observation", {"patient": [value]})) == ["alb-1", "bil-1", "afp-1", "local-1"]


def test_subject_parameter(store: FhirStore) -> None:
    assert ids(store.search("Observation", {"subject": ["Patient/p2"]})) == ["alb-2"]
    assert ids(store.search("AdverseEvent", {"subject": ["Patient/p1"]})) == ["ae-1"]
    assert store.search("AdverseEvent", {"subject": ["Patient/p2"]}) == []


def test_body_structure_patient_uses_the_patient_element(store: FhirStore) -> None:
    assert ids(store.search("BodyStructure", {"patient": ["Patient/p1"]})) == ["bs-1"]
    assert store.search("BodyStructure", {"patient": ["p2"]}) == []


def test_patient_search_by_id_and_by_patient(store: FhirStore) -> None:
    assert ids(store.search("Patient", {"_id": ["p2"]})) == ["p2"]
    assert ids(store.search("Patient", {"patient": ["Patient/p1"]})) == ["p1"]
    assert ids(store.search("Patient", {"_id": ["p2,p1"]})) == ["p1", "p2"]  # load order, not query order
    assert ids(store.search("Patient", {})) == ["p1", "p2"]


def test_patient_parameter_must_reference_a_patient(store: FhirStore) -> None:
    with pytest.raises(SearchError, match="must reference a Patient"):
        store.search("Observation", {"patient": ["Group/g1"]})


def test_adverse_event_has_no_patient_parameter_in_r4(store: FhirStore) -> None:
    with pytest.raises(SearchError, match="unknown search parameter 'patient' for AdverseEvent"):
        store.search("AdverseEvent", {"patient": ["p1"]})


# ---- search: tokens ------------------------------------------------------------------------------


def test_code_comma_is_or(store: FhirStore) -> None:
    found = store.search("Observation", {"patient": ["p1"], "code": [f"{LOINC}|{ALBUMIN},{LOINC}|{AFP}"]})
    assert ids(found) == ["alb-1", "afp-1"]


def test_code_system_and_code_must_both_match(store: FhirStore) -> None:
    assert store.search("Observation", {"code": [f"http://snomed.info/sct|{ALBUMIN}"]}) == []
    assert ids(store.search("Observation", {"code": [ALBUMIN]})) == ["alb-1", "alb-2"]


def test_code_without_system_and_system_only(store: FhirStore) -> None:
    assert ids(store.search("Observation", {"code": ["|ECOG-LOCAL"]})) == ["local-1"]
    assert store.search("Observation", {"code": [f"|{ALBUMIN}"]}) == []  # albumin has a system
    assert ids(store.search("Observation", {"code": [f"{LOINC}|"], "patient": ["p2"]})) == ["alb-2"]


def test_repeated_parameter_is_and(store: FhirStore) -> None:
    query = {"code": [f"{LOINC}|{ALBUMIN},{LOINC}|{AFP}", f"{LOINC}|{AFP}"]}
    assert ids(store.search("Observation", query)) == ["afp-1"]


def test_medication_code_matches_medication_codeable_concept(store: FhirStore) -> None:
    assert ids(store.search("MedicationStatement", {"patient": ["p1"], "code": [f"{RXNORM}|1792776"]})) == [
        "ms-1"]
    assert store.search("MedicationStatement", {"code": [f"{RXNORM}|0000"]}) == []


def test_status_comma_or_and_category(store: FhirStore) -> None:
    assert ids(store.search("Observation", {"patient": ["p1"], "status": ["amended,preliminary"]})) == [
        "bil-1", "afp-1"]
    assert ids(store.search("Observation", {"category": ["survey"]})) == ["local-1"]


def test_condition_clinical_status(store: FhirStore) -> None:
    assert ids(store.search("Condition", {"clinical-status": ["active"]})) == ["hcc-1"]
    assert store.search("Condition", {"clinical-status": ["resolved"]}) == []


def test_adverse_event_event_token(store: FhirStore) -> None:
    query = {"event": ["http://hl7.org/fhir/sid/icd-10-cm|K75.4"]}
    assert ids(store.search("AdverseEvent", query)) == ["ae-1"]


def test_string_search_on_names(store: FhirStore) -> None:
    assert ids(store.search("Patient", {"name": ["be"]})) == ["p2"]
    assert ids(store.search("Practitioner", {"family": ["oka"]})) == ["dr-1"]


# ---- search: errors and result parameters --------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"date": ["ge2026-01-01"]}, "unknown search parameter 'date'"),
        ({"code:text": ["albumin"]}, "modifiers are not supported"),
        ({"subject.name": ["Lima"]}, "chained"),
        ({"_include": ["Observation:subject"]}, "unknown search parameter '_include'"),
        ({"patient": [""]}, "empty value"),
        ({"code": [f"{LOINC}|{ALBUMIN},"]}, "empty value"),
        ({"code": ["a|b|c"]}, "malformed token"),
    ],
)
def test_unsupported_search_raises(store: FhirStore, params: dict, message: str) -> None:
    with pytest.raises(SearchError, match=message):
        store.search("Observation", params)


def test_unknown_type_raises_and_known_empty_type_is_supported(store: FhirStore) -> None:
    with pytest.raises(SearchError):
        store.search("Nonsense", {})
    assert store.supports("MedicationAdministration")
    assert store.search("MedicationAdministration", {"patient": ["p1"]}) == []


def test_result_parameters_do_not_change_matches(store: FhirStore) -> None:
    plain = store.search("Observation", {"patient": ["p1"]})
    assert store.search("Observation", {"patient": ["p1"], "_count": ["1"], "_sort": ["-date"]}) == plain


def test_escaped_comma_is_not_a_separator() -> None:
    obs = observation("odd", "p1", "a,b", system="urn:x")
    store = FhirStore.from_bundles([bundle(patient("p1"), obs)])
    assert ids(store.search("Observation", {"code": ["urn:x|a\\,b"]})) == ["odd"]
    assert store.search("Observation", {"code": ["urn:x|a"]}) == []


# ---- date shifting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "days", "expected"),
    [
        ("2026-03-01", 10, "2026-03-11"),
        ("2026-03-01T09:30:00+01:00", 31, "2026-04-01T09:30:00+01:00"),
        ("2026-12-31T23:59:59.123Z", 1, "2027-01-01T23:59:59.123Z"),
        ("2026-03", 3, "2026-03"),  # mid-month anchor: a few days keep the month
        ("2026-03", 20, "2026-04"),
        ("2026-03", -20, "2026-02"),
        ("2026", 100, "2026"),
        ("2026", 200, "2027"),
        ("1958-06-30", 0, "1958-06-30"),
        ("not a date", 5, "not a date"),
        ("2026-02-30", 5, "2026-02-30"),
    ],
)
def test_shift_date_string_keeps_precision(value: str, days: int, expected: str) -> None:
    assert shift_date_string(value, days) == expected


def test_from_bundles_shifts_dates_by_days_between_timestamp_and_target() -> None:
    obs = observation("o1", "p1", ALBUMIN, when="2026-03-01T09:30:00+01:00")
    obs["issued"] = "2026-03-01T10:00:00.250Z"
    obs["meta"] = {"lastUpdated": "2026-03-01T10:00:00Z"}
    obs["note"] = [{"time": "2026-02-27", "text": "drawn fasting 2026-03-01"}]
    cond = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
            "code": {"text": "HCC"}, "onsetDateTime": "2025-11", "recordedDate": "2025-11-20",
            "abatementDateTime": "2026"}
    med = {"resourceType": "MedicationStatement", "id": "m1", "status": "completed",
           "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"text": "atezo"},
           "effectivePeriod": {"start": "2025-12-01", "end": "2026-02-15T00:00:00Z"},
           "dateAsserted": "2026-02-20"}
    source = bundle(patient("p1"), obs, cond, med, timestamp="2026-03-02T08:00:00+02:00")
    store = FhirStore.from_bundles([source], shift_to=date(2026, 5, 1))  # +60 days

    shifted = store.read("Observation", "o1")
    assert shifted["effectiveDateTime"] == "2026-04-30T09:30:00+01:00"
    assert shifted["issued"] == "2026-04-30T10:00:00.250Z"
    assert shifted["meta"]["lastUpdated"] == "2026-03-01T10:00:00Z"  # meta is not clinical data
    assert shifted["note"][0] == {"time": "2026-04-28", "text": "drawn fasting 2026-03-01"}
    condition = store.read("Condition", "c1")
    assert (condition["onsetDateTime"], condition["recordedDate"], condition["abatementDateTime"]) == (
        "2026-01", "2026-01-19", "2026")
    period = store.read("MedicationStatement", "m1")["effectivePeriod"]
    assert period == {"start": "2026-01-30", "end": "2026-04-16T00:00:00Z"}
    assert store.read("MedicationStatement", "m1")["dateAsserted"] == "2026-04-21"
    assert store.read("Patient", "p1")["birthDate"] == "1958-08-29"  # shifted too: age at "now" is kept
    info = store.bundles[0]
    assert (info.shift_days, info.original_timestamp, info.timestamp) == (
        60, "2026-03-02T08:00:00+02:00", "2026-05-01T08:00:00+02:00")
    assert store.timestamp_for("p1") == "2026-05-01T08:00:00+02:00"
    assert source["entry"][1]["resource"]["effectiveDateTime"] == "2026-03-01T09:30:00+01:00"  # input intact


def test_each_bundle_shifts_by_its_own_timestamp() -> None:
    first = bundle(patient("a"), observation("oa", "a", ALBUMIN, when="2026-01-01"),
                   timestamp="2026-01-01T00:00:00Z")
    second = bundle(patient("b"), observation("ob", "b", ALBUMIN, when="2025-06-01"),
                    timestamp="2025-06-01T12:00:00Z")
    store = FhirStore.from_bundles([first, second], shift_to=date(2026, 7, 1))
    assert store.read("Observation", "oa")["effectiveDateTime"] == "2026-07-01"
    assert store.read("Observation", "ob")["effectiveDateTime"] == "2026-07-01"


def test_shifting_needs_a_bundle_timestamp() -> None:
    source = bundle(patient("p1"))
    del source["timestamp"]
    FhirStore.from_bundles([source])  # fine without shifting
    with pytest.raises(FhirStoreError, match=r"needs Bundle\.timestamp"):
        FhirStore.from_bundles([source], shift_to=date(2026, 1, 1))


def _obs(oid: str, when: str | None) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "id": oid}
    if when is not None:
        resource["effectiveDateTime"] = when
    return resource


def test_sort_resources_compares_instants_across_zones_and_precisions() -> None:
    from demo.fhirstore import sort_resources

    resources = [_obs("late", "2026-03-02T01:00:00+02:00"), _obs("none", None), _obs("day", "2026-03-01"),
                 _obs("utc", "2026-03-01T23:30:00Z"), _obs("month", "2026-02")]
    ascending = [r["id"] for r in sort_resources(resources, "Observation", "date")]
    # 01:00+02:00 on 2 March is 23:00Z on 1 March, before 23:30Z; no date sorts last either way.
    assert ascending == ["month", "day", "late", "utc", "none"]
    descending = [r["id"] for r in sort_resources(resources, "Observation", "-date")]
    assert descending == ["utc", "late", "day", "month", "none"]


def test_sort_resources_by_several_keys_and_unknown_key() -> None:
    from demo.fhirstore import sort_resources

    resources = [_obs("b", "2026-01-01"), _obs("a", "2026-01-01"), _obs("c", "2025-01-01")]
    assert [r["id"] for r in sort_resources(resources, "Observation", "-date,_id")] == ["a", "b", "c"]
    with pytest.raises(SearchError, match="not supported"):
        sort_resources(resources, "Observation", "value-quantity")
    with pytest.raises(SearchError, match="empty"):
        sort_resources(resources, "Observation", "date,")


# ---- the OR-list fast path and the search cache --------------------------------------------------------

_SYSTEMS = st.sampled_from([None, "", "urn:a", "urn:b"])
_CODES = st.sampled_from(["", "1", "2", "x,y"])
_CODING = st.fixed_dictionaries({}, optional={"system": st.one_of(st.none(), st.sampled_from(["urn:a", "urn:b"])),
                                              "code": st.sampled_from(["1", "2", "3", "x,y"])})
_VALUE = st.one_of(
    st.sampled_from(["1", "2", "x,y"]), st.booleans(), _CODING,
    st.fixed_dictionaries({"coding": st.lists(_CODING, max_size=3)}),  # CodeableConcept
    st.fixed_dictionaries({"value": st.sampled_from(["1", "2"])},
                          optional={"system": st.sampled_from(["urn:a", "urn:b"])}),  # Identifier
)


def _token(system: str | None, code: str) -> str:
    code = code.replace(",", "\\,")
    return code if system is None else f"{system}|{code}"


def _coding_matches(coding: dict[str, Any], system: str | None, code: str) -> bool:
    """The reference rule for one alternative (FHIR R4 search, token): the store's matcher before the set form."""
    if system is None:
        return coding.get("code") == code
    if system == "":
        return "system" not in coding and coding.get("code") == code
    return coding.get("system") == system and (code == "" or coding.get("code") == code)


def _token_matches(value: Any, system: str | None, code: str) -> bool:
    if isinstance(value, str):  # a FHIR code: its system is implicit
        return code != "" and value == code
    if isinstance(value, bool):
        return code == ("true" if value else "false")
    if not isinstance(value, dict):
        return False
    if "coding" in value:  # CodeableConcept
        return any(_coding_matches(c, system, code) for c in value.get("coding") or [] if isinstance(c, dict))
    if "value" in value and "code" not in value:  # Identifier
        if system is None:
            return value.get("value") == code
        if system == "":
            return "system" not in value and value.get("value") == code
        return value.get("system") == system and (code == "" or value.get("value") == code)
    return _coding_matches(value, system, code)  # Coding


@settings(max_examples=400, deadline=None)
@given(tokens=st.lists(st.tuples(_SYSTEMS, _CODES).filter(lambda t: t != (None, "") and t != ("", "")),
                       min_size=1, max_size=5),
       value=_VALUE)
def test_an_or_list_of_tokens_matches_exactly_as_its_alternatives_one_by_one(tokens, value) -> None:
    """The one-walk matcher for ``code=a|1,b|2,…`` gives what the reference rule gives for each alternative."""
    param = FhirStore().search_params("Observation")["code"]
    options = [_token(system, code) for system, code in tokens]
    resource = {"resourceType": "Observation", "id": "o", "code": value}
    one_by_one = any(_token_matches(value, system, code) for system, code in tokens)
    assert FhirStore()._any_matcher(param, options)(resource) is one_by_one


def test_search_results_are_cached_until_the_store_changes(store: FhirStore) -> None:
    query = {"patient": ["p1"], "code": [f"{LOINC}|{ALBUMIN},{LOINC}|{BILIRUBIN}"]}
    first = ids(store.search("Observation", query))
    first_result = store.search("Observation", query)
    first_result.clear()  # a caller's change to its list does not reach the cache
    assert ids(store.search("Observation", query)) == first
    store.add(observation("added-albumin", "p1", ALBUMIN))
    assert ids(store.search("Observation", query)) == [*first, "added-albumin"]
