"""cards.rules: R0–R8 of clinical rules v2 (clinical-rules.md "What changed from v1", §0, §2, §3).

Every test builds FHIR resources with ``tests.cards.builders`` and runs the real pipeline
``PatientRecord`` → ``assess`` → ``decide``; every expected strength is read from the rules text, not from output.

Default patient (``scenario()``): HCC (C22.0); first line atezolizumab + bevacizumab 2025-10-01 → 2026-03-01,
stopped for no response (266721009: progression); labs 5 days before NOW (2026-06-01 09:00 UTC): bilirubin
1.2 mg/dL + albumin 3.5 g/dL (ALBI −2.11, grade 2), ECOG 1, AFP 120 ng/mL, 72 kg, no INR (Child-Pugh not
computable) → tier ``fit``.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest

from cards.assessment import assess
from cards.context import EvaluationContext
from cards.evidence import QUOTES
from cards.patient_view import evaluate
from cards.record import PatientRecord
from cards.rules import decide, eligible_trials
from tests.cards import builders as b

NOW = b.NOW
START, END = "2025-10-01", "2026-03-01"
RECENT = b.ago(5)
PROGRESSION, TOXICITY = "266721009", "407563006"
WORSENED, SEVERE = "271299001", "24484000"
LUNG, LIVER, BONE, ADRENAL = "39607008", "10200004", "272673000", "23451007"
STRENGTHS = ["preferred", "alternative", "consider", "caution", "avoid"]
# service-contract.md §3: ties in strength keep this order.
CONTRACT_ORDER = ["best-supportive-care", "surveillance", "tki-lenvatinib", "tki-sorafenib", "tki-cabozantinib",
                  "tki-regorafenib", "ramucirumab", "ici-retrial-nivolumab-ipilimumab", "ici-continuation",
                  "local-ablative-therapy", "sbrt-vascular-invasion", "clinical-trial"]
SYSTEMIC = {"tki-lenvatinib", "tki-sorafenib", "tki-cabozantinib", "tki-regorafenib", "ramucirumab",
            "ici-retrial-nivolumab-ipilimumab", "ici-continuation"}
LOCAL = {"local-ablative-therapy", "sbrt-vascular-invasion"}
TKIS = ("tki-lenvatinib", "tki-sorafenib", "tki-cabozantinib", "tki-regorafenib")
TABLE_1 = {"NCT04770896", "NCT05178043", "NCT05199285", "NCT03970616", "NCT05101629", "NCT04430452"}


# -- local builders (not in builders.py) ----------------------------------------------------------------
def person(birth: str | None = None, **extra: Any) -> dict:
    """The Patient with an optional birthDate and deceased[x]."""
    resource = b.patient()
    if birth:
        resource["birthDate"] = birth
    return {**resource, **extra}


def inr(value: float, when: str = RECENT, unit: str | None = "{INR}") -> dict:
    return b.observation("6301-6", value, unit, when)


def med_admin(name: str, when: str, *, status: str = "completed") -> dict:
    return {"resourceType": "MedicationAdministration", "id": f"ma-{name}-{status}", "status": status,
            "medicationCodeableConcept": b.drug(name), "subject": {"reference": f"Patient/{b.PATIENT_ID}"},
            "effectiveDateTime": when}


def med_request(name: str, authored: str, *, intent: str = "order", status: str = "active") -> dict:
    return {"resourceType": "MedicationRequest", "id": f"mr-{name}-{intent}-{status}", "status": status,
            "intent": intent, "medicationCodeableConcept": b.drug(name),
            "subject": {"reference": f"Patient/{b.PATIENT_ID}"}, "authoredOn": authored}


def first_line(*drugs: str, start: str = START, end: str | None = END, reason: str | None = PROGRESSION) -> list:
    """One MedicationStatement per drug; ``end=None`` → still active (the ICI continued beyond progression)."""
    drugs = drugs or ("atezolizumab", "bevacizumab")
    if end is None:
        return [b.med_statement(d, start, status="active") for d in drugs]
    return [b.med_statement(d, start, end, status_reason=reason) for d in drugs]


def labs(bili: float | None = 1.2, alb: float | None = 3.5, ecog: int | None = 1, afp: float | None = 120.0,
         kg: float | None = 72.0, when: str = RECENT) -> list:
    found = []
    if bili is not None:
        found.append(b.bilirubin(bili, "mg/dL", when))
    if alb is not None:
        found.append(b.albumin(alb, "g/dL", when))
    if ecog is not None:
        found.append(b.ecog(ecog, when))
    if afp is not None:
        found.append(b.afp(afp, "ng/mL", when))
    if kg is not None:
        found.append(b.weight(kg, "kg", when))
    return found


GOOD_LIVER = {"bili": 0.6, "alb": 4.2}  # ALBI −2.90, grade 1 (worked example A)


def scenario(*extra: dict, meds: list | None = None, lab: list | None = None, diagnosis: str | dict = "C22.0",
             patient: dict | None = None, policy=None):
    """(assessment, decision) for the default patient plus ``extra`` resources."""
    hcc = diagnosis if isinstance(diagnosis, dict) else b.condition(diagnosis, "2025-09-01")
    resources = [patient or person(), hcc,
                 *(first_line() if meds is None else meds), *(labs() if lab is None else lab), *extra]
    context = EvaluationContext(NOW, policy) if policy else EvaluationContext(NOW)
    a = assess(PatientRecord(resources, b.PATIENT_ID), context)
    return a, decide(a)


def strengths(d) -> dict[str, str]:
    return {o.code: o.strength.value for o in d.options}


def rank(strength: str) -> int:
    return STRENGTHS.index(strength)


def assert_ranked(d) -> None:
    """Options ordered by strength, ties in the contract's list order (service-contract.md §3)."""
    keys = [(rank(o.strength.value), CONTRACT_ORDER.index(o.code)) for o in d.options]
    assert keys == sorted(keys)


def worsened(when: str) -> dict:
    return b.disease_status(WORSENED, when)


def active_progressing(*drugs: str) -> list:
    """The first line still given, with disease status worsened 20 days ago."""
    return [*first_line(*drugs, end=None), worsened(b.ago(20))]


def lesion(lesion_id: str, organ: str, *sizes: tuple[str, float]) -> list[dict]:
    return [b.body_structure(lesion_id, organ), *(b.tumor_size(lesion_id, s, when) for when, s in sizes)]


def day(n: int) -> str:
    return (date.fromisoformat(START) + timedelta(days=n)).isoformat()


PRE = "2025-09-20"  # the last pre-ICI scan


def oligo_lesions() -> list[dict]:
    """1 lesion (lung) grows 10 → 20 mm at day 120; the liver lesion stays at 30 mm: oligoprogression."""
    return [*lesion("l1", LUNG, (PRE, 10), (day(120), 20)), *lesion("l2", LIVER, (PRE, 30), (day(120), 30))]


# -- the default decision ------------------------------------------------------------------------------
def test_default_patient_gets_the_r7_default():
    a, d = scenario()
    assert d.applicable and d.applicability == "progression"
    assert a.fitness == "fit"
    assert d.rules_fired == ["R0", "R7", "R8"]
    assert strengths(d) == {"tki-lenvatinib": "preferred", "tki-sorafenib": "alternative",
                            "tki-cabozantinib": "consider", "tki-regorafenib": "consider",
                            "clinical-trial": "consider"}
    assert d.indicator == "info"
    assert_ranked(d)


# -- R0 scope ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("deceased", [{"deceasedBoolean": True}, {"deceasedDateTime": "2026-05-20"}])
def test_deceased_patient_is_not_applicable(deceased):
    _a, d = scenario(patient=person("1960-01-01", **deceased))
    assert not d.applicable and not d.unclear and d.options == []


def test_deceased_boolean_false_is_alive():
    _a, d = scenario(patient=person("1960-01-01", deceasedBoolean=False))
    assert d.applicable


def test_ici_not_in_line_1_is_not_applicable():
    meds = [b.med_statement("sorafenib", "2025-01-01", "2025-06-01", status_reason=PROGRESSION), *first_line()]
    _a, d = scenario(meds=meds)
    assert not d.applicable and not d.unclear


def test_line_2_started_is_not_applicable():
    _a, d = scenario(b.med_statement("lenvatinib", "2026-03-20", status="active"))
    assert not d.applicable and not d.unclear


def test_drug_started_28_days_after_line_1_start_joins_line_1():
    # atezolizumab 2026-01-01, lenvatinib 2026-01-29: same course; the line progressed → lenvatinib failed
    meds = [b.med_statement("atezolizumab", "2026-01-01", status="active"),
            b.med_statement("lenvatinib", "2026-01-29", status="active"), worsened(b.ago(10))]
    a, d = scenario(meds=meds)
    assert d.applicable
    assert set(a.first_line.drugs) == {"atezolizumab", "lenvatinib"}
    assert "tki-lenvatinib" not in strengths(d)


def test_drug_started_29_days_after_line_1_start_opens_line_2():
    meds = [b.med_statement("atezolizumab", "2026-01-01", status="active"),
            b.med_statement("lenvatinib", "2026-01-30", status="active"), worsened(b.ago(10))]
    _a, d = scenario(meds=meds)
    assert not d.applicable


def test_bevacizumab_added_to_a_running_atezolizumab_course_stays_line_1():
    # Deliberate reading of clinical-rules.md §2 "Treatment history" (see the README): a regimen partner
    # (bevacizumab, rivoceranib) added while the ICI is still being given completes the regimen; counting it as
    # line 2 would put a patient who progressed on atezolizumab + bevacizumab out of scope, with no card at all.
    meds = [b.med_statement("atezolizumab", "2026-01-01", status="active"),
            b.med_statement("bevacizumab", "2026-01-30", status="active"), worsened(b.ago(10))]
    a, d = scenario(meds=meds)
    assert len(a.history) == 1 and a.history[0].regimen == "atezolizumab-bevacizumab"
    assert d.applicable


def test_a_non_ici_drug_of_line_1_restarted_after_a_gap_opens_line_2():
    # lenvatinib + pembrolizumab ended 2026-03-01; lenvatinib again on 2026-04-01 (31 days later) is a new line
    meds = [*first_line("lenvatinib", "pembrolizumab"), b.med_statement("lenvatinib", "2026-04-01", status="active")]
    a, d = scenario(meds=meds)
    assert len(a.history) == 2
    assert not d.applicable


def test_repeated_records_of_a_line_1_drug_within_the_join_window_continue_line_1():
    # bevacizumab given as administrations every 21 days (each its own record) is one course, not three lines
    meds = [b.med_statement("atezolizumab", "2026-01-01", status="active")]
    for day in ("2026-01-01", "2026-01-22", "2026-02-12", "2026-03-05"):
        meds.append(b.med_statement("bevacizumab", day, day, status="completed"))
    a, d = scenario(meds=[*meds, worsened(b.ago(10))])
    assert len(a.history) == 1 and d.applicable


def test_continuing_the_line_1_ici_beyond_progression_is_still_line_1():
    meds = [*first_line(), b.med_statement("atezolizumab", "2026-03-10", status="active")]
    a, d = scenario(meds=meds)
    assert d.applicable and len(a.history) == 1


def test_ici_with_no_progression_and_no_toxicity_stop_is_not_applicable():
    _a, d = scenario(meds=first_line(end=None))
    assert not d.applicable


def test_toxicity_stop_without_progression_is_applicable_as_toxicity_stop():
    _a, d = scenario(meds=first_line(reason=TOXICITY))
    assert d.applicable and d.applicability == "toxicity-stop"
    assert "R0" in d.rules_fired


def test_hcc_and_ici_with_an_unreadable_resource_is_unclear():
    unreadable = {**worsened(b.ago(10)), "valueCodeableConcept": "worsened"}  # a string, not a CodeableConcept
    _a, d = scenario(unreadable, meds=first_line(end=None))
    assert not d.applicable and d.unclear


def test_hcc_named_in_text_only_is_unclear():
    text_only = {"resourceType": "Condition", "id": "c-text", "code": {"text": "Hepatocellular carcinoma"},
                 "subject": {"reference": f"Patient/{b.PATIENT_ID}"}}
    resources = [person(), text_only, *first_line(), *labs()]
    d = decide(assess(PatientRecord(resources, b.PATIENT_ID), EvaluationContext(NOW)))
    assert not d.applicable
    assert d.unclear and "code the diagnosis" in " ".join(d.unclear)


@pytest.mark.parametrize(("code", "system"), [
    ("C22.0", b.ICD10CM), ("C220", b.ICD10CM), ("C22.0", "http://hl7.org/fhir/sid/icd-10"),
    ("C22.0", "urn:oid:2.16.840.1.113883.6.90"), ("109841003", b.SNOMED)],
    ids=["icd10cm", "icd10cm-no-dot", "who-icd10", "icd10cm-oid", "snomed"])
def test_hcc_is_recognised_in_every_coding(code, system):
    a, d = scenario(diagnosis=b.condition(code, "2025-09-01", system=system))
    assert a.diagnosis.status == "hcc" and d.applicable


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_a_refuted_or_entered_in_error_hcc_does_not_count(verification):
    _a, d = scenario(diagnosis=b.condition("C22.0", "2025-09-01", verification=verification))
    assert not d.applicable


def test_c22_1_is_not_hcc():
    _a, d = scenario(diagnosis="C22.1")
    assert not d.applicable and not d.unclear


# -- exposure means given (§1 "Exposure") -------------------------------------------------------------
@pytest.mark.parametrize("record", [
    med_request("lenvatinib", b.ago(20), intent="plan"),
    med_request("lenvatinib", b.ago(20), intent="proposal"),
    med_request("lenvatinib", b.ago(20), status="entered-in-error"),
    b.med_statement("lenvatinib", b.ago(20), status="entered-in-error"),
    b.med_statement("lenvatinib", b.ago(20), status="not-taken"),
    med_request("lenvatinib", b.ago(20), intent="directive"),
    med_request("lenvatinib", b.ago(20), intent="option"),
    med_request("lenvatinib", b.ago(20), status="cancelled"),
    med_request("lenvatinib", b.ago(20), status="draft"),
    b.med_statement("lenvatinib", b.ago(20), status="intended"),
    med_admin("lenvatinib", b.ago(20), status="not-done"),
    med_admin("lenvatinib", b.ago(20), status="entered-in-error"),
], ids=["request-plan", "request-proposal", "request-entered-in-error", "statement-entered-in-error",
        "statement-not-taken", "request-directive", "request-option", "request-cancelled", "request-draft",
        "statement-intended", "administration-not-done", "administration-entered-in-error"])
def test_a_lenvatinib_record_that_was_not_given_does_not_start_line_2(record):
    a, d = scenario(record)
    assert d.applicable and len(a.history) == 1
    assert "tki-lenvatinib" in strengths(d)


@pytest.mark.parametrize("record", [med_request("lenvatinib", b.ago(20)),
                                    b.med_statement("lenvatinib", b.ago(20), status="active"),
                                    med_admin("lenvatinib", b.ago(20))],
                         ids=["request-order", "statement-active", "administration-completed"])
def test_a_lenvatinib_record_that_was_given_starts_line_2(record):
    _a, d = scenario(record)
    assert not d.applicable


def test_an_ici_only_planned_is_not_a_first_line():
    meds = [med_request("atezolizumab", START, intent="plan"), med_request("bevacizumab", START, intent="plan"),
            worsened(b.ago(20))]
    _a, d = scenario(meds=meds)
    assert not d.applicable


def test_an_ici_course_given_for_another_cancer_is_not_a_first_line():
    lung_cancer = b.condition("C34.90", "2025-09-01", cid="lung-ca")
    meds = [{**m, "reasonReference": [{"reference": "Condition/lung-ca"}]} for m in first_line()]
    _a, d = scenario(lung_cancer, meds=meds)
    assert not d.applicable


def test_only_an_unidentified_medication_record_is_unclear():
    unknown = b.med_statement(None, START, END, status_reason=PROGRESSION, reference="Medication/nowhere")
    _a, d = scenario(meds=[unknown])
    assert not d.applicable and d.unclear


# -- failed drugs and the two exceptions -------------------------------------------------------------
def test_lenvatinib_is_never_offered_after_lenvatinib_pembrolizumab():
    a, d = scenario(meds=first_line("lenvatinib", "pembrolizumab"))
    assert a.first_line.regimen == "lenvatinib-pembrolizumab"
    assert "tki-lenvatinib" not in strengths(d)
    assert ("tki-lenvatinib", "failed-first-line") in d.excluded
    assert strengths(d)["tki-sorafenib"] == "preferred"


def test_a_combination_product_through_medication_ingredients_fails_both_drugs():
    product = {"resourceType": "Medication", "id": "combo", "code": {"text": "study combination"},
               "ingredient": [{"itemCodeableConcept": b.drug("lenvatinib")},
                              {"itemCodeableConcept": b.drug("pembrolizumab")}]}
    statement = b.med_statement(None, START, END, status_reason=PROGRESSION, reference="#combo",
                                contained=[product])
    a, d = scenario(meds=[statement])
    assert set(a.failed_drugs) == {"lenvatinib", "pembrolizumab"}
    assert ("tki-lenvatinib", "failed-first-line") in d.excluded
    assert strengths(d)["tki-sorafenib"] == "preferred"


def test_a_failed_lenvatinib_stays_excluded_after_an_irae():
    _a, d = scenario(b.condition("K75.4", "2026-01-15"), meds=first_line("lenvatinib", "pembrolizumab"))
    assert "R3" in d.rules_fired
    assert "tki-lenvatinib" not in strengths(d)
    assert ("tki-lenvatinib", "failed-first-line") in d.excluded
    assert strengths(d)["tki-sorafenib"] == "preferred"


def test_nothing_is_excluded_when_no_option_drug_failed():
    _a, d = scenario()
    assert d.excluded == []


def test_ici_continuation_is_offered_although_the_ici_failed():
    a, d = scenario(meds=active_progressing())
    assert "atezolizumab" in a.failed_drugs
    assert strengths(d)["ici-continuation"] == "consider"


def test_retrial_after_anti_pd1_alone_is_offered_although_nivolumab_failed():
    a, d = scenario(meds=first_line("nivolumab"), lab=labs(**GOOD_LIVER))
    assert "nivolumab" in a.failed_drugs
    assert strengths(d)["ici-retrial-nivolumab-ipilimumab"] == "consider"


def test_retrial_after_anti_pdl1_alone_is_offered():
    _a, d = scenario(meds=first_line("durvalumab"), lab=labs(**GOOD_LIVER))
    assert strengths(d)["ici-retrial-nivolumab-ipilimumab"] == "consider"


@pytest.mark.parametrize("drugs", [("durvalumab", "tremelimumab"), ("nivolumab", "ipilimumab")])
def test_retrial_never_offered_after_anti_ctla4_in_line_1(drugs):
    _a, d = scenario(meds=first_line(*drugs), lab=labs(**GOOD_LIVER))
    assert "ici-retrial-nivolumab-ipilimumab" not in strengths(d)


def test_retrial_never_offered_after_nivolumab_ipilimumab_even_when_r3_names_it():
    _a, d = scenario(b.condition("K75.4", "2026-01-15"), meds=first_line("nivolumab", "ipilimumab"),
                     lab=labs(**GOOD_LIVER))
    assert "R3" in d.rules_fired
    assert "ici-retrial-nivolumab-ipilimumab" not in strengths(d)


# -- R0t toxicity stop without progression ------------------------------------------------------------
def test_toxicity_stop_gives_surveillance_preferred_and_systemic_at_most_consider():
    _a, d = scenario(meds=first_line(reason=TOXICITY))
    s = strengths(d)
    assert s["surveillance"] == "preferred"
    assert d.options[0].code == "surveillance"
    systemic = [o for o in d.options if o.code in SYSTEMIC]
    assert systemic and all(rank(o.strength.value) >= rank("consider") for o in systemic)
    assert all("at progression" in o.reason.lower() for o in systemic)
    assert d.indicator == "info"
    assert_ranked(d)


def test_toxicity_stop_with_an_irae_still_shapes_the_options():
    # the ICI stopped as not tolerated makes the irAE severe (§2 "irAE") → ICI options avoid (R3)
    hepatitis = b.condition("K75.4", "2026-01-15")
    _a, d = scenario(hepatitis, meds=first_line(reason=TOXICITY), lab=labs(**GOOD_LIVER))
    s = strengths(d)
    assert "R3" in d.rules_fired
    assert s["tki-lenvatinib"] == "consider" and s["tki-sorafenib"] == "consider"
    assert s["ici-retrial-nivolumab-ipilimumab"] == "avoid"


def test_toxicity_stop_then_progression_is_progression_without_ici_continuation():
    meds = [*first_line(end=b.ago(10), reason=TOXICITY), worsened(b.ago(3))]
    _a, d = scenario(meds=meds)
    assert d.applicability == "progression"
    assert "ici-continuation" not in strengths(d)


# -- R1/R2 fitness tiers ----------------------------------------------------------------------------
def test_frail_by_ecog_3_best_supportive_care_preferred_everything_else_at_most_caution():
    _a, d = scenario(lab=labs(ecog=3))
    s = strengths(d)
    assert s["best-supportive-care"] == "preferred"
    assert d.options[0].code == "best-supportive-care"
    assert all(rank(s[c]) >= rank("caution") for c in s if c in SYSTEMIC | LOCAL)
    assert "R1" in d.rules_fired and "R2" not in d.rules_fired
    assert d.indicator == "warning"
    assert_ranked(d)


def test_frail_by_child_pugh_c_with_label_dose_of_lenvatinib():
    # bilirubin 3.5 (3) + albumin 2.5 (3) + INR 2.5 (3) + ascites 1 + encephalopathy 1 = 11 → C; 72 kg
    a, d = scenario(inr(2.5), lab=labs(bili=3.5, alb=2.5, ecog=1))
    assert (a.child_pugh.score, a.child_pugh.grade) == (11, "C")
    assert a.fitness == "frail"
    s = strengths(d)
    assert s["best-supportive-care"] == "preferred"
    assert all(rank(s[c]) >= rank("caution") for c in s if c in SYSTEMIC | LOCAL)
    assert "R2" in d.rules_fired and "R1" not in d.rules_fired
    assert d.option("tki-lenvatinib").dose.mg == 8
    assert all("Child-Pugh A" in d.option(c).rationale for c in TKIS)


def test_frail_caps_local_therapy_at_caution():
    _a, d = scenario(b.condition("I81", "2026-02-01"), meds=first_line(end=None), lab=labs(ecog=3))
    assert strengths(d)["sbrt-vascular-invasion"] == "caution"


def test_weigh_caps_local_therapy_at_alternative():
    _a, d = scenario(b.condition("I81", "2026-02-01"), meds=first_line(end=None), lab=labs(ecog=2))
    assert strengths(d)["sbrt-vascular-invasion"] == "alternative"


def test_weigh_quotes_the_papers_risk_benefit_sentence_and_says_not_cut_offs():
    _a, d = scenario(lab=labs(ecog=2))
    quoted = [QUOTES[w.quote] for w in d.warnings if w.quote]
    assert any("the risk-benefit balance needs to be carefully weighed" in q for q in quoted)
    text = " ".join([*(w.text for w in d.warnings), d.option("best-supportive-care").rationale])
    assert "not treatment cut-offs" in text


@pytest.mark.parametrize(("lab", "hazard"), [(labs(ecog=2), "HR 2.04"), (labs(bili=3.0, alb=2.8), "HR 1.51")],
                         ids=["ecog-2", "albi-grade-3"])
def test_weigh_quotes_the_prognostic_hazard_ratio(lab, hazard):
    _a, d = scenario(lab=lab)
    assert any(hazard in QUOTES[key] for key in d.option("best-supportive-care").evidence)


def test_unknown_caps_an_r3_preferred_tki_at_alternative():
    _a, d = scenario(b.condition("K75.4", "2026-01-15"), meds=first_line(end=b.ago(10)), lab=labs(ecog=None))
    s = strengths(d)
    assert s["tki-lenvatinib"] == "alternative" and s["tki-sorafenib"] == "alternative"


def test_unknown_summary_says_what_to_measure():
    resources = [person(), b.condition("C22.0", "2025-09-01"), *first_line(), *labs(ecog=None)]
    assert "ECOG" in evaluate(resources, NOW, b.PATIENT_ID).cards[0]["summary"]


def test_no_child_pugh_a_note_on_tkis_with_albi_grade_2():
    _a, d = scenario()
    assert not any("Child-Pugh A" in d.option(c).rationale for c in TKIS)


def test_weigh_by_ecog_2_best_supportive_care_alternative_nothing_above_alternative():
    _a, d = scenario(lab=labs(ecog=2))
    s = strengths(d)
    assert s["best-supportive-care"] == "alternative"
    assert all(rank(v) >= rank("alternative") for v in s.values())
    assert "R1" in d.rules_fired and "R2" not in d.rules_fired
    assert d.indicator == "warning"
    assert_ranked(d)


def test_weigh_by_albi_grade_3_tkis_say_trials_enrolled_child_pugh_a():
    # worked example D: 3.0 mg/dL + 2.8 g/dL → −1.25, grade 3
    a, d = scenario(lab=labs(bili=3.0, alb=2.8))
    assert a.albi.grade == 3 and a.fitness == "weigh"
    s = strengths(d)
    assert s["best-supportive-care"] == "alternative"
    assert all(rank(v) >= rank("alternative") for v in s.values())
    assert "R2" in d.rules_fired and "R1" not in d.rules_fired
    assert all("Child-Pugh A" in d.option(c).rationale for c in TKIS)
    assert d.indicator == "warning"


def test_weigh_by_child_pugh_b():
    # fixture example: 2.4 mg/dL (2) + 3.0 g/dL (2) + INR 1.9 (2) + 1 + 1 = 8 → B; ALBI −1.49 grade 2
    a, d = scenario(inr(1.9), lab=labs(bili=2.4, alb=3.0))
    assert (a.child_pugh.score, a.child_pugh.grade, a.albi.grade) == (8, "B", 2)
    assert a.fitness == "weigh"
    s = strengths(d)
    assert s["best-supportive-care"] == "alternative"
    assert all(rank(v) >= rank("alternative") for v in s.values())
    assert "R2" in d.rules_fired
    assert all("Child-Pugh A" in d.option(c).rationale for c in TKIS)


def test_unknown_without_ecog_no_option_above_alternative_and_says_what_to_measure():
    a, d = scenario(lab=labs(ecog=None))
    assert a.fitness == "unknown"
    assert all(rank(v) >= rank("alternative") for v in strengths(d).values())
    assert "ECOG" in d.needs
    assert "R1" in d.rules_fired
    assert d.indicator == "warning"


def test_unknown_with_stale_albi():
    stale = [b.bilirubin(0.6, "mg/dL", b.ago(40)), b.albumin(4.2, "g/dL", b.ago(40))]
    a, d = scenario(*stale, lab=labs(bili=None, alb=None))
    assert a.fitness == "unknown"
    assert all(rank(v) >= rank("alternative") for v in strengths(d).values())
    assert "ALBI" in d.needs
    assert "R2" in d.rules_fired
    assert d.indicator == "warning"


def test_fit_patient_has_a_preferred_option_and_info():
    a, d = scenario()
    assert a.fitness == "fit"
    assert "preferred" in strengths(d).values()
    assert "R1" not in d.rules_fired and "R2" not in d.rules_fired
    assert d.indicator == "info"


# -- R2b hyperprogression -----------------------------------------------------------------------------
def hyperprogressing_lesions() -> list[dict]:
    # sum 20 + 20 = 40 mm before the ICI, 35 + 30 = 65 mm at day 50 (+62.5 %, < 60 days)
    return [*lesion("h1", LIVER, ("2025-09-25", 20), (day(50), 35)),
            *lesion("h2", LIVER, ("2025-09-25", 20), (day(50), 30))]


def test_hyperprogression_makes_best_supportive_care_at_least_consider_with_a_warning():
    a, d = scenario(*hyperprogressing_lesions(), meds=first_line(end=None))
    assert a.progression.hyperprogression == "yes"
    assert "R2b" in d.rules_fired
    assert rank(strengths(d)["best-supportive-care"]) <= rank("consider")
    assert any(w.quote == "R2b" and "hyper-progressive disease occurs" in QUOTES[w.quote] for w in d.warnings)


def growth_lesions(at_day: int, second_mm: float = 30) -> list[dict]:
    return [*lesion("h1", LIVER, ("2025-09-25", 20), (day(at_day), 30)),
            *lesion("h2", LIVER, ("2025-09-25", 20), (day(at_day), second_mm))]


def test_hyperprogression_yes_at_day_59():
    a, d = scenario(*growth_lesions(59, 31), meds=first_line(end=None))  # 61/40 = +52.5 %
    assert a.progression.hyperprogression == "yes" and "R2b" in d.rules_fired


def test_hyperprogression_no_at_day_60():
    a, d = scenario(*growth_lesions(60, 31), meds=first_line(end=None))
    assert a.progression.hyperprogression == "no" and "R2b" not in d.rules_fired


def test_hyperprogression_no_at_exactly_50_percent_growth():
    a, d = scenario(*growth_lesions(50, 30), meds=first_line(end=None))  # 60/40 = +50 %, not > 50 %
    assert a.progression.hyperprogression == "no" and "R2b" not in d.rules_fired


def test_hyperprogression_blocks_ici_continuation():
    _a, d = scenario(*hyperprogressing_lesions(), meds=first_line(end=None))
    assert "ici-continuation" not in strengths(d)


# -- R3 prior irAE ------------------------------------------------------------------------------------
def irae_meds() -> list:
    """The first line stopped for progression 10 days ago (within the 28-day resumption window)."""
    return first_line(end=b.ago(10))


def test_irae_prefers_tkis_and_cautions_ici_options():
    _a, d = scenario(b.condition("K75.4", "2026-01-15"), meds=irae_meds(), lab=labs(**GOOD_LIVER))
    s = strengths(d)
    assert "R3" in d.rules_fired
    assert s["tki-lenvatinib"] == "preferred" and s["tki-sorafenib"] == "preferred"
    assert s["ici-retrial-nivolumab-ipilimumab"] == "caution"
    assert s["ici-continuation"] == "caution"
    assert_ranked(d)


def test_irae_90_days_after_ici_end_counts():
    # END 2026-03-01 + 90 days = 2026-05-30
    _a, d = scenario(b.condition("K75.4", "2026-05-30"), lab=labs(**GOOD_LIVER))
    assert "R3" in d.rules_fired


def test_irae_91_days_after_ici_end_does_not_count():
    _a, d = scenario(b.condition("K75.4", "2026-05-31"), lab=labs(**GOOD_LIVER))
    assert "R3" not in d.rules_fired


def test_severe_adverse_event_suspecting_the_ici_makes_ici_options_avoid():
    meds = [b.med_statement("atezolizumab", START, b.ago(10), status_reason=PROGRESSION, mid="ms-atezo"),
            b.med_statement("bevacizumab", START, b.ago(10), status_reason=PROGRESSION, mid="ms-bev")]
    event = b.adverse_event("K75.4", "2026-01-15", suspect="MedicationStatement/ms-atezo", severity="severe")
    _a, d = scenario(event, meds=meds, lab=labs(**GOOD_LIVER))
    s = strengths(d)
    assert "R3" in d.rules_fired
    assert s["ici-retrial-nivolumab-ipilimumab"] == "avoid" and s["ici-continuation"] == "avoid"


def test_severe_irae_makes_ici_options_avoid():
    _a, d = scenario(b.condition("K75.4", "2026-01-15", severity=SEVERE), meds=irae_meds(),
                     lab=labs(**GOOD_LIVER))
    s = strengths(d)
    assert s["ici-retrial-nivolumab-ipilimumab"] == "avoid"
    assert s["ici-continuation"] == "avoid"
    assert s["tki-lenvatinib"] == "preferred"


def test_irae_text_never_says_the_paper_advises_against_retrial():
    _a, d = scenario(b.condition("K75.4", "2026-01-15", severity=SEVERE), meds=irae_meds(),
                     lab=labs(**GOOD_LIVER))
    text = " ".join([*(o.reason + " " + o.rationale for o in d.options), *(w.text for w in d.warnings),
                     *d.caveats]).lower()
    assert "advises against" not in text


# -- R4 prior bevacizumab-type event -------------------------------------------------------------------
def bleed() -> dict:
    return b.condition("K92.2", "2026-01-20")  # GI haemorrhage during bevacizumab


def test_bevacizumab_event_with_good_liver_prefers_retrial_and_cautions_anti_vegf():
    _a, d = scenario(bleed(), meds=irae_meds(), lab=labs(**GOOD_LIVER, afp=512.0))
    s = strengths(d)
    assert "R4" in d.rules_fired
    assert s["ici-retrial-nivolumab-ipilimumab"] == "preferred"
    assert s["ici-continuation"] == "consider"
    for code in (*TKIS, "ramucirumab"):
        assert s[code] == "caution", code
    assert_ranked(d)


@pytest.mark.parametrize("lab", [labs(), labs(**GOOD_LIVER, ecog=2)], ids=["albi-grade-2", "ecog-2"])
def test_bevacizumab_event_without_good_reserve_retrial_only_consider(lab):
    _a, d = scenario(bleed(), meds=irae_meds(), lab=lab)
    assert strengths(d)["ici-retrial-nivolumab-ipilimumab"] == "consider"


def test_bevacizumab_event_after_a_first_line_with_anti_ctla4_never_offers_retrial():
    meds = first_line("atezolizumab", "bevacizumab", "tremelimumab", end=b.ago(10))
    _a, d = scenario(bleed(), meds=meds, lab=labs(**GOOD_LIVER))
    assert "R4" in d.rules_fired
    assert "ici-retrial-nivolumab-ipilimumab" not in strengths(d)


def test_bevacizumab_event_with_no_current_albi_retrial_only_consider():
    _a, d = scenario(bleed(), meds=irae_meds(), lab=labs(bili=None, alb=None))
    assert rank(strengths(d)["ici-retrial-nivolumab-ipilimumab"]) >= rank("consider")


def test_bleeding_without_bevacizumab_in_line_1_is_not_a_bevacizumab_type_event():
    _a, d = scenario(bleed(), meds=first_line("durvalumab", end=b.ago(10)), lab=labs(**GOOD_LIVER))
    assert "R4" not in d.rules_fired


def test_bleeding_91_days_after_bevacizumab_ended_does_not_count():
    _a, d = scenario(b.condition("K92.2", "2026-05-31"), lab=labs(**GOOD_LIVER))
    assert "R4" not in d.rules_fired


def test_bleeding_90_days_after_bevacizumab_ended_counts():
    _a, d = scenario(b.condition("K92.2", "2026-05-30"), lab=labs(**GOOD_LIVER))
    assert "R4" in d.rules_fired


# -- R3 + R4 ------------------------------------------------------------------------------------------
def test_irae_and_bevacizumab_event_take_the_weaker_strength():
    _a, d = scenario(b.condition("K75.4", "2026-01-15"), bleed(), meds=irae_meds(),
                     lab=labs(**GOOD_LIVER, afp=512.0))
    s = strengths(d)
    assert {"R3", "R4"} <= set(d.rules_fired)
    # R3 preferred vs R4 caution → caution; R3 caution vs R4 preferred/consider → caution
    assert s["tki-lenvatinib"] == "caution" and s["tki-sorafenib"] == "caution"
    assert s["ici-retrial-nivolumab-ipilimumab"] == "caution"
    assert s["ici-continuation"] == "caution"
    assert s["tki-cabozantinib"] == "caution" and s["ramucirumab"] == "caution"
    assert all(rank(s[c]) >= rank("consider") for c in s if c in SYSTEMIC)
    assert s["best-supportive-care"] == "consider"
    assert_ranked(d)


def test_irae_and_bevacizumab_event_name_both_constraints():
    _a, d = scenario(b.condition("K75.4", "2026-01-15"), bleed(), meds=irae_meds(), lab=labs(**GOOD_LIVER))
    text = " ".join(w.text for w in d.warnings).lower()
    assert "immune-related" in text and "bevacizumab" in text


# -- R5 oligoprogression ------------------------------------------------------------------------------
def test_oligoprogression_offers_local_therapy_and_ici_continuation_as_alternatives():
    a, d = scenario(*oligo_lesions(), meds=first_line(end=None))
    assert a.progression.pattern == "oligoprogression"
    s = strengths(d)
    assert "R5" in d.rules_fired
    assert s["local-ablative-therapy"] == "alternative"
    assert s["ici-continuation"] == "alternative"
    assert "extremely rare" in d.option("local-ablative-therapy").rationale
    assert any(w.quote and "extremely rare" in QUOTES[w.quote] for w in d.warnings)
    assert_ranked(d)


def test_systemic_progression_offers_no_local_ablative_therapy_and_says_so():
    mets = [b.condition("C78.01", "2026-02-01"), b.condition("C79.51", "2026-02-01")]
    a, d = scenario(*mets)
    assert a.progression.pattern == "systemic"
    assert "local-ablative-therapy" not in strengths(d)
    assert any("local ablative therapy" in c.lower() and "not offered" in c.lower() for c in d.caveats)


def test_five_progressing_lesions_in_three_organs_is_oligoprogression():
    lesions = [*lesion("a", LUNG, (PRE, 10), (day(120), 20)), *lesion("b", LUNG, (PRE, 10), (day(120), 20)),
               *lesion("c", BONE, (PRE, 10), (day(120), 20)), *lesion("d", BONE, (PRE, 10), (day(120), 20)),
               *lesion("e", ADRENAL, (PRE, 10), (day(120), 20)), *lesion("f", LIVER, (PRE, 30), (day(120), 30))]
    a, d = scenario(*lesions, meds=first_line(end=None))
    assert a.progression.pattern == "oligoprogression"
    assert strengths(d)["local-ablative-therapy"] == "alternative"


def test_oligoprogression_at_day_90():
    lesions = [*lesion("l1", LUNG, (PRE, 10), (day(90), 20)), *lesion("l2", LIVER, (PRE, 30), (day(90), 30))]
    a, d = scenario(*lesions, meds=first_line(end=None))
    assert a.progression.pattern == "oligoprogression" and "R5" in d.rules_fired


def test_no_oligoprogression_at_day_89():
    lesions = [*lesion("l1", LUNG, (PRE, 10), (day(89), 20)), *lesion("l2", LIVER, (PRE, 30), (day(89), 30))]
    a, d = scenario(*lesions, meds=first_line(end=None))
    assert a.progression.pattern == "indeterminate" and "R5" not in d.rules_fired
    assert "local-ablative-therapy" not in strengths(d)


def test_four_progressing_lesions_in_four_organs_is_systemic():
    lesions = [x for i, organ in enumerate((LUNG, BONE, ADRENAL, LIVER))
               for x in lesion(f"o{i}", organ, (PRE, 10), (day(120), 20))]
    a, _d = scenario(*lesions, meds=first_line(end=None))
    assert a.progression.pattern == "systemic"


def test_six_progressing_lesions_is_systemic():
    lesions = [x for i in range(6) for x in lesion(f"s{i}", LUNG if i < 3 else BONE, (PRE, 10), (day(120), 20))]
    a, d = scenario(*lesions, meds=first_line(end=None))
    assert a.progression.pattern == "systemic"
    assert "local-ablative-therapy" not in strengths(d)


# -- R6 new vascular invasion --------------------------------------------------------------------------
def test_new_vascular_invasion_prefers_sbrt_with_warnings():
    a, d = scenario(b.condition("I81", "2026-02-01"), meds=first_line(end=None))
    assert a.progression.new_vascular_invasion
    s = strengths(d)
    assert "R6" in d.rules_fired
    assert s["sbrt-vascular-invasion"] == "preferred"
    assert s["ici-continuation"] == "consider"
    text = " ".join(w.text for w in d.warnings)
    assert "2.15" in text
    assert "imaging" in text.lower()  # I81 alone: ask for imaging confirmation of tumour thrombus
    assert_ranked(d)


def test_new_vascular_invasion_in_a_fit_patient_keeps_the_info_indicator():
    # "Indicator: warning for tiers weigh, frail and unknown, for possible HCC and for age < 18; otherwise info"
    a, d = scenario(b.condition("I81", "2026-02-01"), meds=first_line(end=None))
    assert a.fitness == "fit" and d.indicator == "info"


def test_new_vascular_invasion_with_systemic_progression_sbrt_only_consider():
    mets = [b.condition("C78.01", "2026-02-01"), b.condition("C79.51", "2026-02-01")]
    a, d = scenario(b.condition("I81", "2026-02-01"), *mets)
    assert a.progression.pattern == "systemic" and a.progression.new_vascular_invasion
    assert strengths(d)["sbrt-vascular-invasion"] == "consider"


def test_vascular_invasion_before_line_1_is_not_new():
    _a, d = scenario(b.condition("I81", "2025-09-01"))
    assert "sbrt-vascular-invasion" not in strengths(d)
    assert "R6" not in d.rules_fired


# -- R7 default systemic choice ------------------------------------------------------------------------
@pytest.mark.parametrize(("kg", "mg"), [(59.9, 8), (60.0, 12)])
def test_lenvatinib_dose_by_weight(kg, mg):
    _a, d = scenario(lab=labs(kg=kg))
    assert d.option("tki-lenvatinib").dose.mg == mg


def test_lenvatinib_8_mg_at_132_lb():
    # 132 [lb_av] × 0.45359237 = 59.87 kg < 60
    _a, d = scenario(b.weight(132, "[lb_av]", RECENT), lab=labs(kg=None))
    assert d.option("tki-lenvatinib").dose.mg == 8


def test_lenvatinib_dose_says_weight_unknown_when_missing():
    _a, d = scenario(lab=labs(kg=None))
    dose = d.option("tki-lenvatinib").dose
    assert dose.mg is None and "weight unknown" in dose.text


def test_sorafenib_alternative_cabozantinib_regorafenib_consider_by_default():
    s = strengths(scenario()[1])
    assert (s["tki-sorafenib"], s["tki-cabozantinib"], s["tki-regorafenib"]) == ("alternative", "consider",
                                                                                  "consider")


def test_ramucirumab_consider_at_afp_400():
    _a, d = scenario(lab=labs(afp=400.0))
    assert strengths(d)["ramucirumab"] == "consider"


def test_ramucirumab_not_offered_at_afp_399():
    _a, d = scenario(lab=labs(afp=399.0))
    assert "ramucirumab" not in strengths(d)


def test_ramucirumab_not_offered_with_stale_afp_400():
    _a, d = scenario(b.afp(512.0, "ng/mL", b.ago(40)), lab=labs(afp=None))
    assert "ramucirumab" not in strengths(d)


def test_ramucirumab_not_offered_with_afp_in_iu_per_ml():
    _a, d = scenario(b.afp(900.0, "[IU]/mL", RECENT, code="19176-7"), lab=labs(afp=None))
    assert "ramucirumab" not in strengths(d)


def test_retrial_consider_with_albi_1_ecog_1_no_ctla4_no_irae():
    _a, d = scenario(lab=labs(**GOOD_LIVER))
    assert strengths(d)["ici-retrial-nivolumab-ipilimumab"] == "consider"


@pytest.mark.parametrize("lab", [labs(), labs(**GOOD_LIVER, ecog=None)], ids=["albi-grade-2", "ecog-missing"])
def test_retrial_not_offered_without_albi_1_and_ecog_0_1(lab):
    _a, d = scenario(lab=lab)
    assert "ici-retrial-nivolumab-ipilimumab" not in strengths(d)


def test_retrial_not_offered_at_ecog_2():
    _a, d = scenario(lab=labs(**GOOD_LIVER, ecog=2))
    assert "ici-retrial-nivolumab-ipilimumab" not in strengths(d)


def test_ici_continuation_consider_while_the_ici_is_still_given():
    _a, d = scenario(meds=active_progressing())
    assert strengths(d)["ici-continuation"] == "consider"


def test_ici_continuation_offered_when_the_ici_stopped_28_days_ago():
    _a, d = scenario(meds=first_line(end=b.ago(28)))
    assert strengths(d)["ici-continuation"] == "consider"


def test_ici_continuation_not_offered_when_the_ici_stopped_29_days_ago():
    _a, d = scenario(meds=first_line(end=b.ago(29)))
    assert "ici-continuation" not in strengths(d)


def test_ici_continuation_not_offered_after_an_irae_from_r7():
    # with an irAE only R3 names it (caution), never R7's consider
    _a, d = scenario(b.condition("K75.4", "2026-01-15"), meds=active_progressing())
    assert strengths(d)["ici-continuation"] == "caution"


# -- R8 trials ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("drugs", "trials"), [
    (("atezolizumab", "bevacizumab"), TABLE_1),
    (("durvalumab", "tremelimumab"), {"NCT05178043", "NCT05101629"}),
    (("nivolumab", "ipilimumab"), {"NCT04430452", "NCT05178043", "NCT05101629"}),
], ids=["atezolizumab-bevacizumab", "durvalumab-tremelimumab", "nivolumab-ipilimumab"])
def test_trials_are_filtered_by_first_line_eligibility(drugs, trials):
    a, d = scenario(meds=first_line(*drugs))
    assert {t.id for t in eligible_trials(a)} == trials
    assert strengths(d)["clinical-trial"] == "consider"
    assert "R8" in d.rules_fired
    rationale = d.option("clinical-trial").rationale
    assert all(word in rationale for word in ("patient preference", "liver function", "cost"))


def test_trials_card_lists_only_the_eligible_trials_after_stride():
    resources = [person(), b.condition("C22.0", "2025-09-01"), *first_line("durvalumab", "tremelimumab"), *labs()]
    result = evaluate(resources, NOW, b.PATIENT_ID)
    trials = next(c for c in result.cards if c["source"]["topic"]["code"] == "clinical-trials")
    for nct in TABLE_1:
        assert (nct in trials["detail"]) == (nct in {"NCT05178043", "NCT05101629"}), nct


def test_trials_card_marks_passed_completion_dates_and_never_calls_trials_ongoing_itself():
    # at 2026-06-01: NCT05199285 (2027-01-31) and NCT04430452 (2027-02-28) have not passed; the rest have
    resources = [person(), b.condition("C22.0", "2025-09-01"), *first_line(), *labs()]
    result = evaluate(resources, NOW, b.PATIENT_ID)
    detail = next(c for c in result.cards if c["source"]["topic"]["code"] == "clinical-trials")["detail"]
    for nct in TABLE_1:
        row = next(line for line in detail.splitlines() if nct in line)
        assert ("passed" in row) == (nct not in {"NCT05199285", "NCT04430452"}), nct
    own_voice = "\n".join(line for line in detail.splitlines() if not line.startswith(">"))  # not the quotes
    for match in re.finditer("ongoing", own_voice):
        assert own_voice[max(0, match.start() - 10):match.start()].endswith("listed as "), own_voice


# -- possible HCC, age, indicator ---------------------------------------------------------------------
@pytest.mark.parametrize("code", ["C22.9", "C22.8"])
def test_possible_hcc_no_option_above_alternative_and_a_warning(code):
    a, d = scenario(diagnosis=code)
    assert a.diagnosis.status == "possible-hcc"
    assert d.applicable
    assert all(rank(v) >= rank("alternative") for v in strengths(d).values())
    assert any("confirm" in w.text.lower() for w in d.warnings)
    assert d.indicator == "warning"


def test_age_under_18_warns_that_the_evidence_is_from_adults():
    a, d = scenario(patient=person("2010-03-01"))
    assert a.patient.age_years == 16
    assert any("adults" in w.text for w in d.warnings)
    assert d.indicator == "warning"


def test_age_18_is_not_warned():
    a, d = scenario(patient=person("2008-06-01"))
    assert a.patient.age_years == 18
    assert not any("adults" in w.text for w in d.warnings)
    assert d.indicator == "info"


# -- ordering ----------------------------------------------------------------------------------------
def test_equal_strengths_follow_the_contract_list_order():
    # ECOG 2 (weigh) + oligoprogression: best supportive care, lenvatinib (capped), sorafenib, ICI continuation
    # and local ablative therapy are all alternative; cabozantinib, regorafenib and the trial consider.
    _a, d = scenario(*oligo_lesions(), meds=first_line(end=None), lab=labs(ecog=2))
    assert [o.code for o in d.options] == [
        "best-supportive-care", "tki-lenvatinib", "tki-sorafenib", "ici-continuation", "local-ablative-therapy",
        "tki-cabozantinib", "tki-regorafenib", "clinical-trial"]
    assert {o.strength.value for o in d.options[:5]} == {"alternative"}


# -- what each option says (the rules' own phrases) ---------------------------------------------------
def test_r7_option_texts_carry_the_rules_reasons():
    _a, d = scenario(meds=active_progressing(), lab=labs(**GOOD_LIVER))
    assert "best safety profile" in d.option("tki-sorafenib").reason
    assert all("off-label" in d.option(c).reason.lower() for c in ("tki-cabozantinib", "tki-regorafenib"))
    retrial = d.option("ici-retrial-nivolumab-ipilimumab").rationale
    assert "12 %" in retrial and "must be considered cautiously" in retrial
    assert "15.3 months" in d.option("ici-continuation").rationale


def test_r3_tki_reason_says_a_switch_is_more_strongly_preferred():
    _a, d = scenario(b.condition("K75.4", "2026-01-15"), meds=irae_meds())
    assert all("more strongly preferred" in d.option(c).reason for c in ("tki-lenvatinib", "tki-sorafenib"))


def test_r4_texts_name_the_bleeding_risk_and_continuing_without_bevacizumab():
    _a, d = scenario(bleed(), meds=irae_meds(), lab=labs(**GOOD_LIVER, afp=512.0))
    assert all("bleeding risk" in d.option(c).reason for c in (*TKIS, "ramucirumab"))
    assert "without bevacizumab" in d.option("ici-continuation").reason


def test_r6_sbrt_rests_on_the_papers_vascular_invasion_sentence():
    _a, d = scenario(b.condition("I81", "2026-02-01"), meds=first_line(end=None))
    quotes = [QUOTES[key] for key in d.option("sbrt-vascular-invasion").evidence]
    assert any("SBRT can play an important role to control new vascular invasion" in q for q in quotes)
