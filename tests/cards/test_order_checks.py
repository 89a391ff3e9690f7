"""Order-entry checks (clinical-rules.md §4; service-contract.md §3; checklist §1.F, §1.G G4/G5, §4).

Patients come from ``fixtures/patients/*.json`` (the Bundle ``timestamp`` is the evaluation time); their data
are described in tests/fixture_expectations.json. Expected values are derived here from the rules
(8 mg < 60 kg, 12 mg ≥ 60 kg; ECOG ≥ 2; ALBI grade 3; AFP ≥ 400 ng/mL), not copied from program output.
Codes are written out (clinical-codes.md §4), not imported from cards.terminology.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from cards import terminology
from cards.draft_orders import read_dose
from cards.order_checks import OrderContextError, evaluate_orders
from cards.order_update import updated_order
from service.validation import null_or_empty_paths, response_errors

ROOT = Path(__file__).resolve().parents[2]
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
RX = {"lenvatinib": "1603296", "sorafenib": "495881", "nivolumab": "1597876", "ipilimumab": "1094833",
      "ramucirumab": "1535922", "bevacizumab": "253337", "atezolizumab": "1792776"}


# -- helpers ---------------------------------------------------------------------------------------
def patient(name: str) -> tuple[list[dict], datetime, str]:
    bundle = json.loads((ROOT / "fixtures" / "patients" / f"{name}.json").read_text(encoding="utf-8"))
    resources = [entry["resource"] for entry in bundle["entry"]]
    pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    return resources, datetime.fromisoformat(bundle["timestamp"].replace("Z", "+00:00")), pid


def draft(rid: str, drug: str | None, pid: str = "p1", *, mg: float | None = None, text: str | None = None,
          code: bool = True, **extra) -> dict:
    resource: dict = {"resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
                      "subject": {"reference": f"Patient/{pid}"}}
    if drug:
        coding = {"system": RXNORM, "display": drug}
        if code:
            coding["code"] = RX[drug]
        resource["medicationCodeableConcept"] = {"coding": [coding], "text": drug}
    dosage: dict = {}
    if text:
        dosage["text"] = text
    if mg is not None:
        dosage["timing"] = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}
        dosage["doseAndRate"] = [{"doseQuantity": {"value": mg, "unit": "mg", "system": UCUM, "code": "mg"}}]
    if dosage:
        resource["dosageInstruction"] = [dosage]
    resource.update(extra)
    return resource


def bundle(*resources: dict, bundle_type: str | None = "collection") -> dict:
    result: dict = {"resourceType": "Bundle"}
    if bundle_type:
        result["type"] = bundle_type
    result["entry"] = [{"resource": r} for r in resources]
    return result


def run(name: str, *drafts: dict, selections: list[str] | None = None, mutate=None, **kwargs):
    resources, now, pid = patient(name)
    if mutate:
        resources = mutate(copy.deepcopy(resources))
    return evaluate_orders(resources, now, pid, bundle(*drafts), selections, **kwargs)


def checks(result) -> list[tuple[str, str]]:
    return [(c["extension"]["hcc-cds.orderCheck"]["check"], c["extension"]["hcc-cds.orderCheck"].get("draftOrder"))
            for c in result.cards]


def only(result) -> dict:
    assert len(result.cards) == 1, checks(result)
    return result.cards[0]


def assert_valid_cards(cards: list[dict], drafts: dict | None = None) -> None:
    """Contract §3 + checklist §1.F/§1.G for every order card."""
    assert response_errors({"cards": cards}) == []
    assert null_or_empty_paths({"cards": cards}) == []
    refs = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in (drafts or {}).get("entry", [])
            if "id" in e["resource"]}
    for card in cards:
        uuid.UUID(card["uuid"])
        assert len(card["summary"]) <= 139 and "\n" not in card["summary"]
        assert card["indicator"] in ("info", "warning")
        assert card["source"]["topic"]["code"] == "order-check"
        assert card["detail"].strip()
        assert card["overrideReasons"] == [
            {"system": terminology.OVERRIDE_REASON_SYSTEM, "code": code, "display": display}
            for code, display in terminology.OVERRIDE_REASONS]
        assert len(card["overrideReasons"]) == 4
        order_check = card["extension"]["hcc-cds.orderCheck"]
        assert order_check["check"] in ("irae-ici", "bev-event-antivegf", "poor-status", "failed-drug",
                                        "ramucirumab-afp", "lenvatinib-dose", "prior-ctla4")
        if drafts is not None and "draftOrder" in order_check:
            assert order_check["draftOrder"] in refs
        if "suggestions" in card:
            assert card["selectionBehavior"] == "at-most-one"
            assert len(card["suggestions"]) == 1
            suggestion = card["suggestions"][0]
            uuid.UUID(suggestion["uuid"])
            assert isinstance(suggestion["isRecommended"], bool)
            (action,) = suggestion["actions"]
            assert action["type"] == "update" and action["description"]
            assert "resourceId" not in action
            MedicationRequest.model_validate(action["resource"])  # G4: a valid R4 resource
            target = f"{action['resource']['resourceType']}/{action['resource']['id']}"
            assert target == order_check["draftOrder"]
            if drafts is not None:
                assert target in refs  # Inferno G5: update targets a draftOrders resource
        else:
            assert "selectionBehavior" not in card


def new_dose(card: dict) -> float:
    resource = card["suggestions"][0]["actions"][0]["resource"]
    return resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"]


def expected_lenvatinib_mg(weight_kg: float) -> int:
    return 12 if weight_kg >= 60 else 8


# -- lenvatinib-dose -------------------------------------------------------------------------------
def test_lenvatinib_12mg_for_55kg_suggests_8mg():
    order = draft("len-1", "lenvatinib", "afp-high-si-units-patient", mg=12, text="12 mg orally once daily",
                  authoredOn="2026-11-20", note=[{"text": "start after clinic"}])
    drafts = bundle(order)
    resources, now, pid = patient("afp-high-si-units")
    card = only(evaluate_orders(resources, now, pid, drafts, None))
    assert_valid_cards([card], drafts)
    assert card["indicator"] == "info"
    assert card["extension"] == {"hcc-cds.orderCheck": {"check": "lenvatinib-dose",
                                                         "draftOrder": "MedicationRequest/len-1"}}
    assert new_dose(card) == expected_lenvatinib_mg(55.0) == 8
    assert "lenvatinib" in card["summary"].lower() and "55 kg" in card["summary"]
    resource = card["suggestions"][0]["actions"][0]["resource"]
    assert resource["id"] == "len-1" and resource["subject"] == order["subject"]
    assert resource["status"] == "draft" and resource["intent"] == "order"
    assert resource["medicationCodeableConcept"] == order["medicationCodeableConcept"]
    assert resource["note"] == order["note"] and resource["authoredOn"] == "2026-11-20"
    (dosage,) = resource["dosageInstruction"]
    assert dosage["text"] == "8 mg orally once daily"
    assert dosage["timing"] == {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}
    assert {"system": SNOMED, "code": "26643006"}.items() <= dosage["route"]["coding"][0].items()
    assert dosage["doseAndRate"][0]["doseQuantity"] == {"value": 8, "unit": "mg", "system": UCUM, "code": "mg"}
    assert "12" in card["suggestions"][0]["actions"][0]["description"]
    assert "8 mg" in card["suggestions"][0]["actions"][0]["description"]
    assert order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 12  # draft not mutated


def test_lenvatinib_8mg_for_72kg_suggests_12mg():
    card = only(run("systemic-atezo-bev", draft("len-2", "lenvatinib", mg=8)))
    assert_valid_cards([card])
    assert new_dose(card) == expected_lenvatinib_mg(72.0) == 12
    assert "72 kg" in card["detail"]


@pytest.mark.parametrize(("name", "weight"), [("afp-high-si-units", 55.0), ("systemic-atezo-bev", 72.0),
                                              ("bev-bleed-albi1", 77.0)])
def test_correct_lenvatinib_dose_gives_no_dose_card(name, weight):
    result = run(name, draft("len-3", "lenvatinib", mg=expected_lenvatinib_mg(weight)))
    assert "lenvatinib-dose" not in [check for check, _ in checks(result)]


def test_lenvatinib_dose_from_text_pill_count_and_frequency():
    # 4 mg twice daily = 8 mg/day: wrong for 72 kg (12 mg)
    twice = draft("len-4", "lenvatinib", text="4 mg twice daily")
    card = only(run("systemic-atezo-bev", twice))
    assert new_dose(card) == 12 and "8 mg/day" in card["summary"]
    # 3 capsules of "lenvatinib 4 MG Oral Capsule" once daily = 12 mg/day: correct for 72 kg
    pills = draft("len-5", "lenvatinib", code=False)
    pills["medicationCodeableConcept"] = {"text": "lenvatinib 4 MG Oral Capsule"}
    pills["dosageInstruction"] = [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                                   "doseAndRate": [{"doseQuantity": {"value": 3, "system": UCUM,
                                                                     "code": "{pill}"}}]}]
    assert run("systemic-atezo-bev", pills).cards == []
    # ... and wrong for 55 kg (8 mg)
    assert new_dose(only(run("afp-high-si-units", pills))) == 8


def test_read_dose():
    def dose(**dosage):
        return read_dose({"dosageInstruction": [dosage]})

    assert dose(text="8 mg orally once daily").daily_mg == 8
    assert dose(text="Lenvatinib 12 mg PO daily").daily_mg == 12
    assert dose(text="4 mg b.i.d.").daily_mg == 8
    assert dose(doseAndRate=[{"doseQuantity": {"value": 4, "unit": "mg"}}],
                timing={"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}}).daily_mg == 12
    assert dose(doseAndRate=[{"doseQuantity": {"value": 8, "code": "mg"}}]).daily_mg == 8
    assert dose(text="take as directed") is None
    assert dose(text="12 mg (3 x 4 mg capsules)") is None  # two amounts: ambiguous
    assert dose(doseAndRate=[{"doseQuantity": {"value": 1, "code": "{pill}"}}]) is None  # strength unknown
    assert dose(doseAndRate=[{"doseQuantity": {"value": 8, "unit": "mg/kg"}}]) is None
    assert dose(doseAndRate=[{"doseQuantity": {"value": True, "unit": "mg"}}]) is None
    assert read_dose({}) is None and read_dose({"dosageInstruction": "8 mg"}) is None


def test_lenvatinib_without_readable_dose_gives_no_card():
    assert run("afp-high-si-units", draft("len-6", "lenvatinib", text="as directed")).cards == []
    assert run("afp-high-si-units", draft("len-7", "lenvatinib")).cards == []


def test_lenvatinib_with_stale_weight_says_dose_not_checked():
    def stale_weight(resources):
        for r in resources:
            if r["resourceType"] == "Observation" and any(c.get("code") == "29463-7"
                                                          for c in r["code"]["coding"]):
                r["effectiveDateTime"] = "2026-06-01"  # > 30 days before 2026-11-20
        return resources

    card = only(run("systemic-atezo-bev", draft("len-8", "lenvatinib", mg=8), mutate=stale_weight))
    assert_valid_cards([card])
    assert card["extension"]["hcc-cds.orderCheck"]["check"] == "lenvatinib-dose"
    assert card["indicator"] == "info" and "suggestions" not in card
    assert "weight" in card["summary"].lower() and "stale" in card["detail"]


def test_sandbox_style_draft_is_tolerated_and_repaired():
    """The sandbox's R4 draft: category/reasonCode objects, no intent, no Bundle.type, id request-123."""
    sandbox = {
        "resourceType": "MedicationRequest", "id": "request-123", "status": "draft",
        "subject": {"reference": "Patient/afp-high-si-units-patient"}, "authoredOn": "2026-11-20",
        "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                               "doseAndRate": [{"doseQuantity": {"value": 12, "system": UCUM, "code": "mg"}}]}],
        "category": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                 "code": "community"}]},
        "medicationCodeableConcept": {"text": "Lenvima", "coding": [{"system": RXNORM, "code": RX["lenvatinib"],
                                                                     "display": "lenvatinib"}]},
        "reasonCode": {"coding": [{"system": SNOMED, "code": "109841003"}]},
    }
    with pytest.raises(ValueError):
        MedicationRequest.model_validate(sandbox)  # the precondition: the draft is not valid R4
    drafts = bundle(sandbox, bundle_type=None)
    resources, now, pid = patient("afp-high-si-units")
    result = evaluate_orders(resources, now, pid, drafts, ["MedicationRequest/request-123"])
    card = only(result)
    assert_valid_cards([card], drafts)
    resource = card["suggestions"][0]["actions"][0]["resource"]
    assert resource["intent"] == "order"
    assert resource["category"] == [sandbox["category"]] and resource["reasonCode"] == [sandbox["reasonCode"]]
    assert new_dose(card) == 8


def test_update_drops_unrepairable_optional_elements_but_keeps_the_order():
    broken = draft("len-9", "lenvatinib", mg=12, authoredOn="yesterday", priority="very-urgent")
    resource = updated_order(broken, "p1", 8)
    assert resource is not None
    MedicationRequest.model_validate(resource)
    assert "authoredOn" not in resource and "priority" not in resource and resource["id"] == "len-9"
    assert updated_order(draft("bad id!", "lenvatinib", mg=12), "p1", 8) is None  # the id cannot change
    # null and empty members pass the model but not FHIR JSON / CDS Hooks "no null or empty" (checklist A3)
    sparse = updated_order(draft("len-10", "lenvatinib", mg=12, note=[], reasonCode=None, category={},
                                 dispenseRequest={"numberOfRepeatsAllowed": None}), "p1", 8)
    assert sparse is not None and null_or_empty_paths(sparse) == []
    assert not {"note", "reasonCode", "category", "dispenseRequest"} & set(sparse)


def test_draft_without_id_gets_a_card_but_no_update():
    order = draft("x", "lenvatinib", mg=12)
    del order["id"]
    card = only(run("afp-high-si-units", order))
    assert_valid_cards([card])
    assert "suggestions" not in card and "draftOrder" not in card["extension"]["hcc-cds.orderCheck"]


def test_medication_reference_to_contained_medication():
    order = draft("len-10", None, mg=12)
    order["contained"] = [{"resourceType": "Medication", "id": "med",
                           "code": {"coding": [{"system": RXNORM, "code": RX["lenvatinib"]}]}}]
    order["medicationReference"] = {"reference": "#med"}
    card = only(run("afp-high-si-units", order))
    assert_valid_cards([card])
    assert new_dose(card) == 8
    assert card["suggestions"][0]["actions"][0]["resource"]["medicationReference"] == {"reference": "#med"}


# -- irae-ici --------------------------------------------------------------------------------------
def test_ici_after_irae_warns():
    result = run("irae-hepatitis", draft("nivo", "nivolumab", text="nivolumab 240 mg IV every 2 weeks"))
    card = only(result)
    assert_valid_cards([card])
    assert card["indicator"] == "warning"
    assert checks(result) == [("irae-ici", "MedicationRequest/nivo")]
    assert "Nivolumab" in card["summary"] and "hepatitis" in card["summary"]
    assert "K75.4" in card["detail"] and "20 May 2026" in card["detail"]
    assert "a switch to TKI should be more strongly preferred" in card["detail"]  # R3 sentence


def test_tki_after_irae_is_no_ici_warning():
    # 58.5 kg -> 8 mg is the right lenvatinib dose, so nothing applies
    assert run("irae-hepatitis", draft("len", "lenvatinib", mg=expected_lenvatinib_mg(58.5))).cards == []


def test_order_select_evaluates_only_the_selected_orders():
    drafts = (draft("nivo", "nivolumab"), draft("ipi", "ipilimumab"))
    sign = run("irae-hepatitis", *drafts)
    assert sorted(checks(sign)) == [("irae-ici", "MedicationRequest/ipi"), ("irae-ici", "MedicationRequest/nivo")]
    select = run("irae-hepatitis", *drafts, selections=["MedicationRequest/ipi"])
    assert checks(select) == [("irae-ici", "MedicationRequest/ipi")]


# -- bev-event-antivegf ----------------------------------------------------------------------------
def test_antivegf_after_bevacizumab_bleed_warns():
    # 77 kg -> 12 mg is the right dose: only the R4 warning
    card = only(run("bev-bleed-albi1", draft("len", "lenvatinib", mg=12)))
    assert_valid_cards([card])
    assert card["indicator"] == "warning"
    assert card["extension"]["hcc-cds.orderCheck"]["check"] == "bev-event-antivegf"
    assert "K92.2" in card["detail"] and "6 Jul 2026" in card["detail"]
    assert "ALBI grade 1" in card["detail"]  # ICI retrial is the paper's preferred choice here
    assert "retrial of ICI-based therapy without TKI would be the preferred" in card["detail"]  # R4 sentence


def test_sorafenib_after_bleed_warns():
    assert checks(run("bev-bleed-albi1", draft("d", "sorafenib"))) == [("bev-event-antivegf", "MedicationRequest/d")]


def test_bevacizumab_after_bleed_warns_as_anti_vegf_and_as_a_failed_drug():
    # clinical-rules.md §4: anti-VEGF after a bevacizumab-type event, and a drug of the first line that progressed
    result = run("bev-bleed-albi1", draft("d", "bevacizumab"))
    assert checks(result) == [("bev-event-antivegf", "MedicationRequest/d"), ("failed-drug", "MedicationRequest/d")]
    failed = next(c for c in result.cards if c["extension"]["hcc-cds.orderCheck"]["check"] == "failed-drug")
    assert "part of the first line that progressed" in failed["summary"]


def test_ramucirumab_after_bleed_warns_twice():
    # ramucirumab is an anti-VEGF antibody (R4) and AFP 18 ng/mL < 400 (R7)
    result = run("bev-bleed-albi1", draft("ram", "ramucirumab"))
    assert_valid_cards(result.cards)
    assert sorted(check for check, _ in checks(result)) == ["bev-event-antivegf", "ramucirumab-afp"]


def test_ici_after_bleed_is_fine():
    assert run("bev-bleed-albi1", draft("nivo", "nivolumab")).cards == []


# -- poor-status -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "drug", "marker"), [
    ("ecog3-poor-status", "sorafenib", "ECOG 3"),
    ("ecog3-poor-status", "nivolumab", "ECOG 3"),
    ("karnofsky-only", "sorafenib", "ECOG 2"),  # Karnofsky 60 -> ECOG 2
    ("albi3-poor-liver", "sorafenib", "ALBI grade 3"),
])
def test_poor_status_warns(name, drug, marker):
    card = only(run(name, draft("d", drug)))
    assert_valid_cards([card])
    assert card["indicator"] == "warning"
    assert card["extension"]["hcc-cds.orderCheck"]["check"] == "poor-status"
    assert marker in card["summary"] and "best supportive care" in card["summary"]
    assert "[derived]" in card["detail"]


# -- v2 dose-update rules (clinical-rules.md §4) -------------------------------------------------------------
def _dose_card(result) -> dict:
    return next(c for c in result.cards if c["extension"]["hcc-cds.orderCheck"]["check"] == "lenvatinib-dose")


def test_dose_update_is_recommended_in_tier_fit():
    card = _dose_card(run("afp-high-si-units", draft("len", "lenvatinib", mg=12)))  # 55 kg, fit
    assert card["suggestions"][0]["isRecommended"] is True and new_dose(card) == 8
    assert "too high for the weight" in card["summary"]


def test_dose_update_is_offered_but_not_recommended_in_tier_weigh():
    # Karnofsky 60 -> ECOG 2 -> weigh; 61.5 kg -> 12 mg
    card = _dose_card(run("karnofsky-only", draft("len", "lenvatinib", mg=8)))
    assert card["suggestions"][0]["isRecommended"] is False and new_dose(card) == 12
    assert "lower than the weight-based dose" in card["summary"]


def test_no_increase_is_suggested_at_albi_grade_3():
    card = _dose_card(run("albi3-poor-liver", draft("len", "lenvatinib", mg=8)))  # 68 kg would give 12 mg
    assert "suggestions" not in card
    assert "lower dose kept (ALBI grade 3)" in card["summary"]


def test_a_decrease_is_still_offered_at_albi_grade_3_but_not_recommended():
    card = _dose_card(run("albi3-poor-liver", draft("len", "lenvatinib", mg=16)))
    assert new_dose(card) == 12 and card["suggestions"][0]["isRecommended"] is False


def test_child_pugh_c_keeps_the_label_dose_of_8_mg():
    # Child-Pugh C (12 points): the label's 8 mg whatever the weight (72 kg); 12 mg ordered -> 8 mg, not recommended
    card = _dose_card(run("child-pugh-c-frail", draft("len", "lenvatinib", mg=12)))
    assert new_dose(card) == 8 and card["suggestions"][0]["isRecommended"] is False


def test_failed_lenvatinib_ordered_again_warns():
    result = run("lenva-pembro-first-line", draft("len", "lenvatinib", mg=12))
    assert ("failed-drug", "MedicationRequest/len") in checks(result)


def test_albi3_with_correct_lenvatinib_dose_only_warns_about_liver():
    result = run("albi3-poor-liver", draft("len", "lenvatinib", mg=expected_lenvatinib_mg(68.0)))
    assert checks(result) == [("poor-status", "MedicationRequest/len")]
    assert "HR 1.51" in result.cards[0]["detail"]


# -- ramucirumab-afp -------------------------------------------------------------------------------
def test_ramucirumab_with_low_afp_warns():
    card = only(run("systemic-atezo-bev", draft("ram", "ramucirumab")))
    assert_valid_cards([card])
    assert card["indicator"] == "warning"
    assert "120 ng/mL" in card["summary"] and "12 Nov 2026" in card["detail"]
    assert "only if AFP ≥ 400 ng/mL" in card["detail"]  # R7-ramucirumab sentence


def test_ramucirumab_with_high_afp_is_fine():
    assert run("afp-high-si-units", draft("ram", "ramucirumab")).cards == []  # AFP 850 ng/mL


def test_ramucirumab_without_current_afp_in_ng_per_ml_warns():
    card = only(run("missing-labs", draft("ram", "ramucirumab")))  # AFP only in IU/mL
    assert "no current AFP" in card["summary"] and "IU/mL" in card["detail"]


# -- prior-ctla4 -----------------------------------------------------------------------------------
def test_nivo_ipi_after_stride_is_not_covered_by_the_evidence():
    result = run("new-vascular-invasion-stride", draft("nivo", "nivolumab"), draft("ipi", "ipilimumab"))
    card = only(result)
    assert_valid_cards([card])
    assert checks(result) == [("prior-ctla4", "MedicationRequest/ipi")]
    assert card["indicator"] == "info"
    assert "durvalumab + tremelimumab" in card["summary"] and "anti-PD-(L)1" in card["summary"]


def test_ipilimumab_after_first_line_nivo_ipi():
    # warning first: ipilimumab failed in line 1; then the info that the retrial evidence does not cover it
    result = run("possible-hcc-nivo-ipi", draft("ipi", "ipilimumab"))
    assert checks(result) == [("failed-drug", "MedicationRequest/ipi"), ("prior-ctla4", "MedicationRequest/ipi")]


def test_nivolumab_alone_or_no_prior_ctla4_gives_no_ctla4_card():
    assert run("new-vascular-invasion-stride", draft("nivo", "nivolumab")).cards == []
    assert run("bev-bleed-albi1", draft("nivo", "nivolumab"), draft("ipi", "ipilimumab")).cards == []


# -- applicability, robustness, context errors ------------------------------------------------------
def test_no_cards_when_r0_does_not_hold():
    result = run("hcc-no-ici", draft("len", "lenvatinib", mg=4), draft("ram", "ramucirumab"))
    assert result.cards == [] and result.decision.applicable is False


def test_unknown_order_types_and_other_drugs_are_ignored():
    service_request = {"resourceType": "ServiceRequest", "id": "sr", "status": "draft", "intent": "order",
                       "code": {"text": "CT abdomen"}, "subject": {"reference": "Patient/p1"}}
    nutrition = {"resourceType": "NutritionOrder", "id": "no", "status": "draft"}
    paracetamol = draft("para", None, text="1 g orally", medicationCodeableConcept={"text": "paracetamol"})
    result = run("systemic-atezo-bev", service_request, nutrition, paracetamol, draft("len", "lenvatinib", mg=12),
                 selections=None)
    assert result.cards == []
    assert run("systemic-atezo-bev", service_request, nutrition, selections=["ServiceRequest/sr"]).cards == []


def test_malformed_drafts_never_raise():
    weird = [
        {"resourceType": "MedicationRequest", "id": "a", "status": ["draft"], "intent": 5,
         "medicationCodeableConcept": {"coding": 5, "text": "lenvatinib"},
         "dosageInstruction": [{"timing": {"repeat": {"frequency": "x", "periodUnit": ["d"]}},
                                "doseAndRate": "12 mg"}]},
        {"resourceType": "MedicationRequest", "id": "b", "medicationReference": {"reference": 7},
         "contained": "nope"},
        {"resourceType": "MedicationRequest", "id": "c", "medicationReference": {"display": "Lenvima"},
         "dosageInstruction": [None, "x"]},
        {"resourceType": "MedicationRequest", "id": "d", "medicationCodeableConcept": "lenvatinib"},
    ]
    resources, now, pid = patient("afp-high-si-units")
    entries = {"resourceType": "Bundle", "entry": [{"resource": r} for r in weird] + [5, {"resource": "x"}, {}]}
    result = evaluate_orders(resources, now, pid, entries, None)
    assert_valid_cards(result.cards)


def test_unusable_context_raises_order_context_error():
    resources, now, pid = patient("irae-hepatitis")
    drafts = bundle(draft("nivo", "nivolumab"))
    with pytest.raises(OrderContextError):
        evaluate_orders(resources, now, pid, drafts, ["MedicationRequest/not-there"])
    with pytest.raises(OrderContextError):
        evaluate_orders(resources, now, pid, drafts, "MedicationRequest/nivo")  # type: ignore[arg-type]
    with pytest.raises(OrderContextError):
        evaluate_orders(resources, now, pid, {"resourceType": "Parameters"}, None)
    with pytest.raises(OrderContextError):
        evaluate_orders(resources, now, pid, {"resourceType": "Bundle", "entry": {"resource": {}}}, None)
    assert issubclass(OrderContextError, ValueError)


def test_cards_are_ordered_warnings_first_and_uuids_come_from_the_factory():
    counter = itertools.count()
    result = run("ecog3-poor-status", draft("len", "lenvatinib", mg=8), draft("ram", "ramucirumab"),
                 new_id=lambda: str(uuid.UUID(int=next(counter))))
    # 64 kg -> 12 mg, but ECOG 3 is frail: no increase is suggested (info, no suggestion);
    # ECOG 3 -> poor-status on both; AFP 35 -> ramucirumab-afp
    assert checks(result) == [("poor-status", "MedicationRequest/len"), ("poor-status", "MedicationRequest/ram"),
                              ("ramucirumab-afp", "MedicationRequest/ram"),
                              ("lenvatinib-dose", "MedicationRequest/len")]
    assert [c["indicator"] for c in result.cards] == ["warning", "warning", "warning", "info"]
    assert_valid_cards(result.cards)
    assert "suggestions" not in result.cards[-1] and "lower dose kept" in result.cards[-1]["summary"]
    ids = [c["uuid"] for c in result.cards]
    assert len(set(ids)) == 4 and all(i.startswith("00000000-0000-0000-0000-") for i in ids)


def test_injected_adverse_event_text_is_escaped():
    def add_event(resources):
        resources.append({
            "resourceType": "AdverseEvent", "id": "ae-x", "actuality": "actual",
            "subject": {"reference": "Patient/irae-hepatitis-patient"}, "date": "2026-05-01",
            "event": {"text": "<script>alert(1)</script> **x**"},
            "suspectEntity": [{"instance": {"display": "atezolizumab"}}]})
        return resources

    result = run("irae-hepatitis", draft("nivo", "nivolumab"), mutate=add_event)
    assert_valid_cards(result.cards)
    assert result.cards and all("<script>" not in c["detail"] and "<script>" not in c["summary"]
                                for c in result.cards)


def test_record_text_is_escaped_in_detail():
    order = draft("x", None, mg=12, medicationCodeableConcept={"text": "lenvatinib <script>alert(1)</script>"})
    card = only(run("afp-high-si-units", order))
    assert "<script>" not in card["detail"]


# -- property: whatever the drafts contain, evaluation never fails (service-contract.md §6) ----------
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=3),
                     max_leaves=12)
_fields = st.fixed_dictionaries({}, optional={
    "id": st.sampled_from(["a", "b", "request-123"]) | _json,
    "status": st.sampled_from(["draft", "active", "cancelled"]) | _json,
    "intent": _json,
    "medicationCodeableConcept": st.sampled_from([{"text": "lenvatinib"}, {"text": "Lenvima 4 MG"},
                                                  {"coding": [{"system": RXNORM, "code": RX["nivolumab"]}]},
                                                  {"text": "ramucirumab"}]) | _json,
    "medicationReference": _json,
    "contained": _json,
    "dosageInstruction": st.sampled_from([[{"text": "12 mg daily"}],
                                          [{"doseAndRate": [{"doseQuantity": {"value": 3, "code": "{pill}"}}]}]])
    | _json,
    "category": _json, "reasonCode": _json, "subject": _json, "authoredOn": _json,
})
_RESOURCES, _NOW, _PID = patient("afp-high-si-units")


@settings(max_examples=200, deadline=None)
@given(st.lists(_fields.map(lambda f: {"resourceType": "MedicationRequest", **f}), max_size=3))
def test_random_drafts_never_raise(drafts):
    result = evaluate_orders(_RESOURCES, _NOW, _PID, {"resourceType": "Bundle", "entry": [
        {"resource": d} for d in drafts]}, None)
    assert_valid_cards(result.cards)
