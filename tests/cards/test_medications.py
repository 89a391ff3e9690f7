"""cards.medications: drug recognition, first-line ICI course, regimen name, stop reason
(clinical-rules.md §1 "Systemic therapy", §2 "First-line ICI-based therapy"; clinical-codes.md §4)."""

from __future__ import annotations

from datetime import date

import pytest

from cards.medications import first_line, identify_drugs, medication_uses, treatment_history
from tests.cards import builders as b

PROGRESSION = "266721009"  # No response to treatment
TOXICITY = "407563006"  # Treatment not tolerated
FINANCIAL = "160932005"  # Financial problem (another TreatmentTerminationReasonVS member)


def names(concept, text=""):
    return {d.name for d in identify_drugs(concept, text)}


def line_of(*resources):
    rec = b.record(*resources)
    return first_line(medication_uses(rec, b.TODAY))


# -- drug recognition ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "drug"), [("1792776", "atezolizumab"), ("253337", "bevacizumab"),
                                            ("1597876", "nivolumab"), ("1094833", "ipilimumab"),
                                            ("1603296", "lenvatinib"), ("495881", "sorafenib")])
def test_drug_by_ingredient_rxnorm(code, drug):
    assert names(b.rxnorm(code)) == {drug}


@pytest.mark.parametrize(("code", "drug"), [("597747", "sorafenib"), ("615979", "sorafenib"),
                                            ("1657775", "ramucirumab"), ("2619317", "tremelimumab")])
def test_drug_by_product_rxnorm(code, drug):
    assert names(b.rxnorm(code)) == {drug}


@pytest.mark.parametrize(("code", "drug"), [("L01FF05", "atezolizumab"), ("L01XC32", "atezolizumab"),
                                            ("L01FG01", "bevacizumab"), ("L01XC07", "bevacizumab"),
                                            ("L01EX08", "lenvatinib"), ("L01XE05", "sorafenib"),
                                            ("L01FX04", "ipilimumab"), ("L01FX20", "tremelimumab")])
def test_drug_by_atc_current_and_legacy(code, drug):
    assert names(b.atc(code)) == {drug}


@pytest.mark.parametrize(("text", "drug"), [("Tecentriq", "atezolizumab"), ("TECENTRIQ 1200 mg IV", "atezolizumab"),
                                            ("avastin", "bevacizumab"), ("Imjudo", "tremelimumab"),
                                            ("Lenvima 8 mg capsule", "lenvatinib"), ("Opdivo", "nivolumab"),
                                            ("Keytruda", "pembrolizumab"), ("tislelizumab", "tislelizumab")])
def test_drug_by_brand_or_generic_name_in_text(text, drug):
    assert names(b.text_concept(text)) == {drug}


def test_drug_by_display_of_an_unknown_code():
    concept = {"coding": [{"system": "urn:local-formulary", "code": "X1", "display": "Nexavar 200 mg tablet"}]}
    assert names(concept) == {"sorafenib"}


def test_unrelated_medication_not_recognised():
    assert names(b.text_concept("paracetamol 500 mg")) == set()
    assert names(b.rxnorm("161")) == set()  # acetaminophen


def test_rxnorm_code_in_wrong_system_not_taken_as_rxnorm():
    concept = {"coding": [{"system": "urn:local", "code": "1792776"}]}
    assert names(concept) == set()


def test_medication_reference_to_contained_medication():
    statement = b.med_statement(None, "2026-01-10", contained=[b.medication("m1", b.rxnorm("1792776"))],
                                reference="#m1")
    line = line_of(statement)
    assert line is not None
    assert line.drugs == ("atezolizumab",)
    assert line.start == date(2026, 1, 10)


def test_medication_reference_to_medication_in_record():
    med = b.medication("med-atezo", b.atc("L01XC32"))
    statement = b.med_statement(None, "2026-01-10", reference="Medication/med-atezo")
    assert line_of(med, statement).drugs == ("atezolizumab",)


def test_medication_request_counts():
    request = {"resourceType": "MedicationRequest", "id": "mr1", "status": "completed", "intent": "order",
               "medicationCodeableConcept": b.rxnorm("1597876"), "subject": {"reference": "Patient/p1"},
               "authoredOn": "2026-02-01"}
    line = line_of(request)
    assert line is not None and line.drugs == ("nivolumab",) and line.start == date(2026, 2, 1)


# -- first-line regimen ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("drugs", "regimen"), [
    (["atezolizumab", "bevacizumab"], "atezolizumab-bevacizumab"),
    (["durvalumab", b.text_concept("Imjudo (tremelimumab)")], "durvalumab-tremelimumab"),
    (["durvalumab"], "durvalumab"),
    (["nivolumab", "ipilimumab"], "nivolumab-ipilimumab"),
    (["pembrolizumab"], "other-ici"),
    ([b.text_concept("tislelizumab")], "tislelizumab"),
    ([b.text_concept("camrelizumab"), b.text_concept("rivoceranib")], "camrelizumab-rivoceranib"),
])
def test_regimen_names(drugs, regimen):
    statements = [b.med_statement(d, "2026-01-10", "2026-05-01", status_reason=PROGRESSION) for d in drugs]
    assert line_of(*statements).regimen == regimen


def test_anti_ctla4_flag():
    assert line_of(b.med_statement("nivolumab", "2026-01-10"), b.med_statement("ipilimumab", "2026-01-10")).anti_ctla4
    assert not line_of(b.med_statement("atezolizumab", "2026-01-10"),
                       b.med_statement("bevacizumab", "2026-01-10")).anti_ctla4


def test_bevacizumab_flag_and_dates():
    line = line_of(b.med_statement("atezolizumab", "2026-01-10", "2026-05-01", status_reason=PROGRESSION),
                   b.med_statement("bevacizumab", "2026-01-10", "2026-03-15", status_reason=TOXICITY))
    assert line.has_bevacizumab
    assert (line.bevacizumab_start, line.bevacizumab_end) == (date(2026, 1, 10), date(2026, 3, 15))


def test_tki_started_six_months_after_the_ici_is_not_first_line():
    lenvatinib = b.med_statement("lenvatinib", "2025-12-01")
    line = line_of(b.med_statement("atezolizumab", "2025-06-01", "2025-11-20", status_reason=PROGRESSION), lenvatinib)
    assert line.drugs == ("atezolizumab",)
    assert line.regimen == "other-ici"
    assert f"MedicationStatement/{lenvatinib['id']}" not in line.sources


def test_tki_before_the_ici_makes_the_ici_line_2_and_out_of_scope():
    # clinical-rules.md §0, §2: line 1 is the earliest course; here it has no ICI, so there is no ICI first line
    rec = b.record(b.med_statement("sorafenib", "2024-01-01", "2024-12-01", status_reason=PROGRESSION),
                   b.med_statement("atezolizumab", "2026-01-10"), b.med_statement("bevacizumab", "2026-01-10"))
    lines = treatment_history(medication_uses(rec, b.TODAY))
    assert [(c.line, c.regimen) for c in lines] == [(1, "sorafenib"), (2, "atezolizumab-bevacizumab")]
    assert first_line(medication_uses(rec, b.TODAY)) is None


def test_start_is_earliest_ici_record_and_end_the_latest_ici_end():
    line = line_of(b.med_statement("nivolumab", "2026-01-12", "2026-04-30", status_reason=PROGRESSION),
                   b.med_statement("ipilimumab", "2026-01-10", "2026-03-20", status="completed"))
    assert line.start == date(2026, 1, 10)
    assert line.end == date(2026, 4, 30)
    assert line.ici_end == date(2026, 4, 30)


def test_no_ici_no_first_line():
    assert line_of(b.med_statement("sorafenib", "2026-01-10")) is None
    assert line_of() is None


# -- stop reason ----------------------------------------------------------------------------------------
def test_stop_reason_progression():
    line = line_of(b.med_statement("atezolizumab", "2026-01-10", "2026-05-01", status_reason=PROGRESSION))
    assert line.stop_reason == "progression"
    assert line.stopped_for_progression and not line.stopped_for_toxicity
    assert line.progression_stop_date == date(2026, 5, 1)
    assert not line.active and line.end == date(2026, 5, 1)


def test_stop_reason_toxicity():
    line = line_of(b.med_statement("atezolizumab", "2026-01-10", "2026-03-01", status_reason=TOXICITY))
    assert line.stop_reason == "toxicity"
    assert line.stopped_for_toxicity and not line.stopped_for_progression


def test_stop_reason_other():
    line = line_of(b.med_statement("atezolizumab", "2026-01-10", "2026-03-01", status_reason=FINANCIAL))
    assert line.stop_reason == "other"
    assert not line.stopped_for_toxicity and not line.stopped_for_progression


def test_stop_reason_unknown_when_stopped_without_reason():
    line = line_of(b.med_statement("atezolizumab", "2026-01-10", "2026-03-01", status="completed"))
    assert line.stop_reason == "unknown"
    assert not line.active


def test_stop_reason_none_while_active():
    line = line_of(b.med_statement("atezolizumab", "2026-01-10", status="active"))
    assert line.active
    assert line.stop_reason is None
    assert line.end is None


def test_entered_in_error_ignored():
    assert line_of(b.med_statement("atezolizumab", "2026-01-10", status="entered-in-error")) is None
    line = line_of(b.med_statement("nivolumab", "2025-01-10", status="entered-in-error"),
                   b.med_statement("atezolizumab", "2026-01-10"))
    assert line.start == date(2026, 1, 10)
    assert line.drugs == ("atezolizumab",)


def test_statement_start_falls_back_to_date_asserted():
    statement = b.med_statement("atezolizumab", None, status="active", date_asserted="2026-02-03")
    assert line_of(statement).start == date(2026, 2, 3)


def test_medication_administrations_make_a_course():
    def administration(when):
        return {"resourceType": "MedicationAdministration", "id": f"ma-{when}", "status": "completed",
                "medicationCodeableConcept": b.rxnorm("1792776"), "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": when}
    line = line_of(administration("2026-01-10"), administration("2026-01-31"), administration("2026-02-21"))
    assert line.start == date(2026, 1, 10)
    assert line.ici_end == date(2026, 2, 21)
