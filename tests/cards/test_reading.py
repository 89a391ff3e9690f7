"""Reading FHIR as real EHRs send it (clinical-rules.md v2 §1 "Reading rules"): code systems by URI and OID,
references of every shape, one bad element never drops the resource, exposure means given, units, time of day.

Each expectation is the rule's sentence applied by hand; the resources are the minimal shapes that show it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cards.assessment import assess
from cards.context import EvaluationContext
from cards.patient_view import evaluate
from cards.record import PatientRecord
from cards.rules import decide
from tests.cards import builders as b

ICI_START, ICI_END = "2025-10-01", "2026-03-01"
WHO_ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10CM_OID = "urn:oid:2.16.840.1.113883.6.90"
RXNORM_OID = "urn:oid:2.16.840.1.113883.6.88"


def atezo_bev(**kwargs) -> list[dict]:
    return [b.med_statement("atezolizumab", ICI_START, ICI_END, status_reason="266721009", mid="ms-atezo", **kwargs),
            b.med_statement("bevacizumab", ICI_START, ICI_END, status_reason="266721009", mid="ms-bev")]


def labs() -> list[dict]:
    return [b.bilirubin(1.2, "mg/dL", b.ago(5)), b.albumin(3.5, "g/dL", b.ago(5)), b.ecog(1, b.ago(5)),
            b.afp(120, "ng/mL", b.ago(5)), b.weight(72, "kg", b.ago(5)), b.inr(1.0, b.ago(5))]


def assessment(*resources: dict):
    return assess(PatientRecord([b.patient(), *resources], b.PATIENT_ID), EvaluationContext(b.NOW))


def hcc(system: str = b.ICD10CM, code: str = "C22.0") -> dict:
    return b.condition(code, "2025-09-01", system=system)


def progression() -> dict:
    return b.condition("C78.01", "2026-02-01")


# -- code systems ---------------------------------------------------------------------------------------------
def test_hcc_coded_in_who_icd10_is_hcc():
    assert assessment(hcc(WHO_ICD10)).diagnosis.status == "hcc"


def test_hcc_coded_under_the_icd10cm_oid_without_the_dot_is_hcc():
    assert assessment(hcc(ICD10CM_OID, "C220")).diagnosis.status == "hcc"


def test_ici_coded_under_the_rxnorm_oid_is_recognised():
    meds = [b.med_statement(b.concept("1792776", RXNORM_OID), ICI_START, ICI_END, status_reason="266721009")]
    a = assessment(hcc(), *meds, progression(), *labs())
    assert a.first_line is not None and a.first_line.drugs == ("atezolizumab",)


def test_albumin_coded_under_the_loinc_oid_counts():
    albumin = b.albumin(3.5, "g/dL", b.ago(5), system="urn:oid:2.16.840.1.113883.6.1")
    assert assessment(albumin, b.bilirubin(1.2, "mg/dL", b.ago(5))).albi.status == "current"


# -- references -----------------------------------------------------------------------------------------------
def test_a_versioned_subject_reference_is_the_patients_own_record():
    cond = hcc()
    cond["subject"] = {"reference": f"Patient/{b.PATIENT_ID}/_history/1"}
    a = assessment(cond)
    assert a.diagnosis.status == "hcc"
    assert not any("another patient" in s for s in a.skipped)


def test_an_absolute_subject_reference_and_a_urn_uuid_are_the_patients_own_record():
    absolute, urn = hcc(), hcc()
    absolute["subject"] = {"reference": f"https://ehr.example.org/fhir/Patient/{b.PATIENT_ID}"}
    urn["subject"] = {"reference": f"urn:uuid:{b.PATIENT_ID}"}
    record = PatientRecord([b.patient(), absolute, urn], b.PATIENT_ID)
    assert len(record.conditions()) == 2 and record.other_patient == []


def test_medication_reference_to_a_contained_medication_is_resolved():
    contained = [{"resourceType": "Medication", "id": "m1", "code": b.rxnorm("1792776", "atezolizumab")}]
    statement = b.med_statement(None, ICI_START, ICI_END, status_reason="266721009", contained=contained,
                                reference="#m1")
    a = assessment(hcc(), statement, progression(), *labs())
    assert a.first_line is not None and "atezolizumab" in a.first_line.drugs


def test_medication_reference_to_a_medication_in_the_request_is_resolved():
    statement = b.med_statement(None, ICI_START, ICI_END, status_reason="266721009", reference="Medication/atezo")
    a = assessment(hcc(), statement, b.medication("atezo", b.rxnorm("1792776")), progression(), *labs())
    assert a.first_line is not None and a.first_line.drugs == ("atezolizumab",)


def test_an_unresolvable_medication_reference_is_named_and_makes_applicability_unclear():
    statement = b.med_statement(None, ICI_START, ICI_END, status_reason="266721009", reference="Medication/gone")
    result = evaluate([b.patient(), hcc(), statement, progression(), *labs()], b.NOW, b.PATIENT_ID)
    assert [c["source"]["topic"]["code"] for c in result.cards] == ["data-quality"]  # never a silent []
    assert "1 medication record could not be identified" in result.cards[0]["detail"]


# -- one bad element never drops the resource ------------------------------------------------------------------
def test_a_medication_request_with_category_as_an_object_is_still_read_and_the_element_named():
    # Epic's published CDS Hooks sample: MedicationRequest.category is an object, not an array
    order = {"resourceType": "MedicationRequest", "id": "mr-atezo", "status": "stopped", "intent": "order",
             "category": {"coding": [{"code": "outpatient"}]}, "subject": {"reference": f"Patient/{b.PATIENT_ID}"},
             "medicationCodeableConcept": b.rxnorm("1792776"), "authoredOn": ICI_START,
             "statusReason": b.concept("266721009", b.SNOMED)}
    a = assessment(hcc(), order, progression(), *labs())
    assert a.first_line is not None and a.first_line.drugs == ("atezolizumab",)
    assert any("has a malformed category element" in m for m in a.malformed)


def test_a_resource_whose_needed_element_is_malformed_is_skipped_and_named():
    broken = b.ecog(1, b.ago(5))
    broken["valueInteger"] = "one"  # the value the rule needs is not an integer
    a = assessment(broken)
    assert a.performance.status == "missing"
    assert any("could not be read (its value is malformed)" in s for s in a.skipped)


# -- exposure means given --------------------------------------------------------------------------------------
def _order(intent: str, status: str = "active") -> dict:
    return {"resourceType": "MedicationRequest", "id": f"mr-{intent}-{status}", "status": status, "intent": intent,
            "subject": {"reference": f"Patient/{b.PATIENT_ID}"}, "medicationCodeableConcept": b.rxnorm("1792776"),
            "authoredOn": ICI_START}


def test_planned_and_proposed_orders_are_not_exposure():
    for intent in ("plan", "proposal", "directive", "option"):
        assert assessment(hcc(), _order(intent)).first_line is None, intent


def test_cancelled_draft_and_entered_in_error_orders_are_not_exposure():
    for status in ("cancelled", "draft", "entered-in-error"):
        assert assessment(hcc(), _order("order", status)).first_line is None, status


def test_an_original_order_is_exposure():
    assert assessment(hcc(), _order("original-order")).first_line is not None


def test_not_taken_and_intended_statements_are_not_exposure():
    for status in ("not-taken", "intended", "entered-in-error"):
        assert assessment(hcc(), b.med_statement("atezolizumab", ICI_START, status=status)).first_line is None


def test_a_course_given_for_another_cancer_is_not_an_hcc_course():
    statement = b.med_statement("atezolizumab", ICI_START, ICI_END, status_reason="266721009")
    statement["reasonCode"] = [b.concept("C34.90", b.ICD10CM)]  # lung cancer
    assert assessment(hcc(), statement).first_line is None


def test_a_course_for_secondary_liver_or_lung_disease_is_still_an_hcc_course():
    statement = b.med_statement("atezolizumab", ICI_START, ICI_END, status_reason="266721009")
    statement["reasonCode"] = [b.concept("C78.01", b.ICD10CM)]
    assert assessment(hcc(), statement).first_line is not None


def test_a_medication_statement_starting_in_year_1_does_not_crash_and_is_not_dated():
    statement = b.med_statement("atezolizumab", "0001-01-01", ICI_END, status_reason="266721009")
    assert assessment(hcc(), statement, progression()).first_line is None  # no usable start: no dated course


# -- units ----------------------------------------------------------------------------------------------------
def test_umol_per_litre_with_a_lower_case_l_is_accepted():
    a = assessment(b.bilirubin(20.52, "umol/l", b.ago(5)), b.albumin(35, "g/l", b.ago(5)))
    assert a.albi.status == "current" and round(a.albi.score, 2) == -2.11  # the worked example, in SI units


def test_a_unit_without_a_system_that_spells_a_ucum_unit_is_read_and_noted():
    a = assessment(b.bilirubin(1.2, "MG/DL", b.ago(5), ucum=False), b.albumin(3.5, "g/dL", b.ago(5)))
    assert a.albi.status == "current"
    assert any(p.kind == "unit-from-text" and "unit read from text" in p.detail for p in a.problems)


def test_an_unknown_unit_is_never_guessed():
    a = assessment(b.bilirubin(1.2, "mg%", b.ago(5), ucum=False), b.albumin(3.5, "g/dL", b.ago(5)))
    assert a.albi.status != "current"
    assert any("unit 'mg%' is not a unit we can convert" in p.detail for p in a.problems)


def test_a_400_digit_integer_is_named_and_not_used():
    huge = b.albumin(3.5, "g/dL", b.ago(5))
    huge["valueQuantity"]["value"] = int("9" * 400)
    a = assessment(huge, b.bilirubin(1.2, "mg/dL", b.ago(5)))
    assert a.albi.status == "implausible"
    assert any("not a finite value" in p.detail for p in a.problems)


def test_albumin_and_bilirubin_inside_a_hepatic_function_panel_are_read():
    # EHRs often send one panel Observation (24325-3 Hepatic function panel) with the results as components
    panel = b.observation("24325-3", when=b.ago(5))
    panel["component"] = [
        {"code": b.concept("1751-7", b.LOINC),
         "valueQuantity": {"value": 3.5, "unit": "g/dL", "system": b.UCUM, "code": "g/dL"}},
        {"code": b.concept("1975-2", b.LOINC),
         "valueQuantity": {"value": 1.2, "unit": "mg/dL", "system": b.UCUM, "code": "mg/dL"}}]
    a = assessment(panel)
    assert a.albi.status == "current" and round(a.albi.score, 2) == -2.11  # the worked example


def test_a_lab_value_recorded_as_text_is_named_not_guessed():
    text = b.albumin(3.5, "g/dL", b.ago(5))
    del text["valueQuantity"]
    text["valueString"] = "3.5 g/dL"
    a = assessment(text, b.bilirubin(1.2, "mg/dL", b.ago(5)))
    assert a.albi.status != "current"
    assert any("recorded as text ('3.5 g/dL')" in p.detail for p in a.problems)


def test_inr_without_a_unit_is_dimensionless_and_read():
    a = assessment(b.inr(1.8, b.ago(5), unit=None), b.bilirubin(1.2, "mg/dL", b.ago(5)),
                   b.albumin(3.5, "g/dL", b.ago(5)))
    assert a.child_pugh.status == "computed" and dict(a.child_pugh.points)["inr"] == 2


# -- time -----------------------------------------------------------------------------------------------------
def _at(obs: dict, instant: str) -> dict:
    obs["effectiveDateTime"] = instant
    return obs


def test_the_later_of_two_same_day_ecogs_counts():
    morning = _at(b.ecog(2, b.ago(3)), f"{b.ago(3)}T08:00:00Z")
    afternoon = _at(b.ecog(1, b.ago(3)), f"{b.ago(3)}T15:00:00Z")
    assert assessment(afternoon, morning).performance.value == 1


def test_two_different_ecogs_at_the_same_instant_the_worse_counts_and_the_conflict_is_named():
    one = _at(b.ecog(1, b.ago(3)), f"{b.ago(3)}T10:00:00Z")
    two = _at(b.ecog(2, b.ago(3)), f"{b.ago(3)}T10:00:00Z")
    a = assessment(one, two)
    assert a.performance.value == 2
    assert any(p.kind == "conflict" for p in a.problems)


def test_two_albumins_at_the_same_instant_the_lower_counts():
    low = _at(b.albumin(2.9, "g/dL", b.ago(3)), f"{b.ago(3)}T10:00:00Z")
    high = _at(b.albumin(3.6, "g/dL", b.ago(3)), f"{b.ago(3)}T10:00:00Z")
    a = assessment(high, low, b.bilirubin(1.0, "mg/dL", b.ago(3)))
    assert a.albi.albumin_g_per_l == 29.0


def test_a_value_dated_after_the_evaluation_time_is_not_used_and_named():
    later_today = _at(b.ecog(3, b.TODAY.isoformat()), f"{b.TODAY.isoformat()}T18:00:00Z")  # NOW is 09:00
    earlier = b.ecog(1, b.ago(2))
    a = assessment(later_today, earlier)
    assert a.performance.value == 1
    assert any("dated after the evaluation time" in p.detail for p in a.problems)


def test_time_zones_are_compared_as_instants():
    # 23:30 at UTC-05:00 is 04:30 UTC the next day: later than 02:00 UTC that day
    late_local = _at(b.ecog(2, b.ago(3)), f"{b.ago(4)}T23:30:00-05:00")
    early_utc = _at(b.ecog(1, b.ago(3)), f"{b.ago(3)}T02:00:00Z")
    assert assessment(early_utc, late_local).performance.value == 2


# -- the patient ----------------------------------------------------------------------------------------------
def test_a_deceased_patient_gets_no_cards_on_any_hook():
    for flag in ({"deceasedBoolean": True}, {"deceasedDateTime": "2026-05-20"}):
        resources = [b.patient(**flag), hcc(), *atezo_bev(), progression(), *labs()]
        assert evaluate(resources, b.NOW, b.PATIENT_ID).cards == []


def test_age_is_read_from_the_birth_date_at_evaluation():
    a = assess(PatientRecord([b.patient(birth_date="2010-06-02"), hcc()], b.PATIENT_ID),
               EvaluationContext(datetime(2026, 6, 1, tzinfo=UTC)))
    assert a.patient.age_years == 15  # the 16th birthday is tomorrow


def test_under_18_gets_a_warning_indicator_and_the_adult_evidence_sentence():
    resources = [b.patient(birth_date="2010-01-01"), hcc(), *atezo_bev(), progression(), *labs()]
    a = assess(PatientRecord(resources, b.PATIENT_ID), EvaluationContext(b.NOW))
    d = decide(a)
    assert d.indicator == "warning"
    assert any("the evidence is from adults" in w.text for w in d.warnings)
