"""cards.record: PatientRecord lookups and FHIR reading rules (clinical-rules.md §1 "Reading rules")."""

from __future__ import annotations

from datetime import date

import pytest
from fhir.resources.R4B.adverseevent import AdverseEvent
from fhir.resources.R4B.bodystructure import BodyStructure
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.observation import Observation

from cards.record import (
    PatientRecord,
    codings,
    concept_text,
    condition_date,
    has_code,
    observation_date,
    parse_date,
    reference_id,
)
from tests.cards import builders as b


# -- the builders themselves produce R4 ------------------------------------------------------------------
@pytest.mark.parametrize(("model", "resource"), [
    (Observation, b.albumin(3.5, "g/dL", "2026-05-01")),
    (Observation, b.ecog(1, "2026-05-01")),
    (Observation, b.tumor_size("l1", 20, "2026-05-01")),
    (Observation, b.disease_status("271299001", "2026-05-01")),
    (Condition, b.condition("C22.0", "2025-01-01", severity="24484000")),
    (MedicationStatement, b.med_statement("atezolizumab", "2026-01-01", "2026-04-01", status_reason="266721009")),
    (MedicationStatement, b.med_statement(None, "2026-01-01", contained=[b.medication("m", b.drug("sorafenib"))],
                                          reference="#m")),
    (AdverseEvent, b.adverse_event("K52.1", "2026-03-01", suspect="MedicationStatement/ms", severity="severe")),
    (BodyStructure, b.body_structure("l1", "10200004", description="segment VII")),
])
def test_builders_produce_valid_r4(model, resource):
    model.model_validate(resource)


# -- dates ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "expected"), [
    ("2026-03-15", date(2026, 3, 15)),
    ("2026-03-15T10:20:00+02:00", date(2026, 3, 15)),
    ("2026-03", date(2026, 3, 1)),
    ("2026", date(2026, 1, 1)),
    ("2026-02-30", None),
    ("not a date", None),
    (None, None),
    (20260315, None),
])
def test_parse_date(raw, expected):
    assert parse_date(raw) == expected


def test_observation_date_sources_in_order():
    assert observation_date(b.observation("1751-7", 3.5, "g/dL", "2026-04-02")) == date(2026, 4, 2)
    assert observation_date(b.observation("1751-7", 3.5, "g/dL", "2026-04-03",
                                          date_field="effectivePeriod")) == date(2026, 4, 3)
    assert observation_date(b.observation("1751-7", 3.5, "g/dL", "2026-04-04", date_field="issued")) == date(2026, 4, 4)
    both = b.observation("1751-7", 3.5, "g/dL", "2026-04-01")
    both["issued"] = "2026-04-09T00:00:00Z"
    assert observation_date(both) == date(2026, 4, 1)  # effective beats issued
    assert observation_date(b.observation("1751-7", 3.5, "g/dL")) is None


def test_condition_date_onset_then_period_then_recorded():
    assert condition_date(b.condition("K75.4", "2026-02-01", recorded="2026-02-10")) == date(2026, 2, 1)
    assert condition_date(b.condition("K75.4", None, recorded="2026-02-10")) == date(2026, 2, 10)
    period = b.condition("K75.4")
    period["onsetPeriod"] = {"start": "2026-02-05"}
    assert condition_date(period) == date(2026, 2, 5)
    assert condition_date(b.condition("K75.4")) is None


# -- codes ---------------------------------------------------------------------------------------------
def test_codings_normalises_icd10_only_under_the_icd10_system():
    cc = {"coding": [{"system": b.ICD10CM, "code": "C220"}, {"system": b.SNOMED, "code": "109841003"},
                     {"system": "urn:local", "code": "C220"}]}
    assert list(codings(cc)) == [(b.ICD10CM, "C22.0"), (b.SNOMED, "109841003"), ("urn:local", "C220")]
    assert has_code(cc, b.ICD10CM, {"C22.0"})
    assert not has_code(cc, b.ICD10CM, {"C220"})


def test_codings_tolerates_junk():
    assert list(codings(None)) == []
    assert list(codings({"coding": [None, {"system": b.LOINC}, {"code": 5}]})) == []
    assert list(codings([{"coding": [{"system": b.LOINC, "code": "1751-7"}]}, "x"])) == [(b.LOINC, "1751-7")]


def test_concept_text_prefers_text_then_display():
    assert concept_text({"text": "Colitis", "coding": [{"display": "K52.1 display"}]}) == "Colitis"
    assert concept_text({"coding": [{"code": "x"}, {"display": "second"}]}) == "second"
    assert concept_text(None) == ""


def test_reference_id():
    assert reference_id({"reference": "BodyStructure/l1"}, "BodyStructure") == "l1"
    assert reference_id({"reference": "https://ehr.example/fhir/BodyStructure/l1"}, "BodyStructure") == "l1"
    assert reference_id({"reference": "Observation/l1"}, "BodyStructure") is None
    assert reference_id({"display": "l1"}, "BodyStructure") is None


# -- Observations: status and order --------------------------------------------------------------------
@pytest.mark.parametrize("status", ["final", "amended", "corrected"])
def test_countable_observation_statuses(status):
    rec = b.record(b.albumin(3.5, "g/dL", "2026-05-01", status=status))
    assert len(list(rec.observations({"1751-7"}))) == 1


@pytest.mark.parametrize("status", ["preliminary", "cancelled", "entered-in-error", "registered", "unknown"])
def test_non_countable_observation_statuses(status):
    rec = b.record(b.albumin(3.5, "g/dL", "2026-05-01", status=status))
    assert list(rec.observations({"1751-7"})) == []


def test_observation_without_status_counts():
    """clinical-rules.md §1: "Only final, amended, corrected (or absent) Observation status counts"."""
    rec = b.record(b.albumin(3.5, "g/dL", "2026-05-01", status=None))
    assert len(list(rec.observations({"1751-7"}))) == 1


def test_observations_newest_first_and_code_filtered():
    older = b.albumin(3.9, "g/dL", "2026-01-01")
    newer = b.albumin(3.5, "g/dL", "2026-05-01")
    other = b.bilirubin(1.0, "mg/dL", "2026-06-01")
    rec = b.record(older, newer, other)
    assert [o["id"] for o in rec.observations({"1751-7"})] == [newer["id"], older["id"]]


def test_code_in_wrong_system_is_not_matched():
    obs = b.observation("1751-7", 3.5, "g/dL", "2026-05-01", system="urn:local-lab")
    assert list(b.record(obs).observations({"1751-7"})) == []


# -- validation ----------------------------------------------------------------------------------------
def test_invalid_r4_resource_is_skipped_and_named():
    bad = b.albumin(3.5, "g/dL", "2026-05-01", oid="bad-1")
    bad["valueQuantity"]["value"] = "three"
    good = b.albumin(3.9, "g/dL", "2026-04-01")
    rec = b.record(bad, good)
    assert [o["id"] for o in rec.observations({"1751-7"})] == [good["id"]]
    assert [(s.resource_type, s.resource_id) for s in rec.skipped] == [("Observation", "bad-1")]


def test_duplicate_resource_counted_once():
    obs = b.albumin(3.5, "g/dL", "2026-05-01")
    rec = PatientRecord([b.patient(), obs, dict(obs)])
    assert len(list(rec.observations({"1751-7"}))) == 1
    assert rec.count("Observation") == 1


def test_non_resources_are_ignored():
    rec = PatientRecord([None, "x", {"id": "no-type"}, b.patient()])  # type: ignore[list-item]
    assert rec.count("Patient") == 1


# -- Conditions ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_refuted_or_entered_in_error_condition_never_counts(verification):
    rec = b.record(b.condition("C22.0", "2025-01-01", verification=verification))
    assert rec.conditions() == []


@pytest.mark.parametrize("verification", ["confirmed", "provisional", "differential", "unconfirmed", None])
def test_other_verification_statuses_count(verification):
    rec = b.record(b.condition("C22.0", "2025-01-01", verification=verification))
    assert len(rec.conditions()) == 1


def test_resolved_condition_still_counts_for_history():
    rec = b.record(b.condition("K75.4", "2025-01-01", clinical="resolved"))
    assert len(rec.conditions()) == 1


# -- references -----------------------------------------------------------------------------------------
def test_resolve_contained_and_record_references():
    med = b.medication("m1", b.drug("sorafenib"))
    statement = b.med_statement(None, "2026-01-01", contained=[med], reference="#m1")
    lesion = b.body_structure("lesion-1", "10200004")
    rec = b.record(statement, lesion)
    assert rec.resolve({"reference": "#m1"}, statement) == med
    assert rec.resolve({"reference": "#missing"}, statement) is None
    assert rec.resolve({"reference": "BodyStructure/lesion-1"}) == lesion
    assert rec.resolve({"reference": "http://x/fhir/BodyStructure/lesion-1"}) == lesion
    assert rec.resolve({"reference": "BodyStructure/none"}) is None


def test_adverse_events_only_actual():
    actual = b.adverse_event("K52.1", "2026-03-01")
    potential = b.adverse_event("K52.1", "2026-03-01")
    potential["actuality"] = "potential"
    assert [e["id"] for e in b.record(actual, potential).adverse_events()] == [actual["id"]]
