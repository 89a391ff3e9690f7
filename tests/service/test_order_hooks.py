"""order-select and order-sign through the Flask app (service-contract.md §1, §3; checklist §1.F, §1.G, §4).

Requests are built with ``service.cli.request_from_bundle`` (full prefetch) from the fixture patients and the
draft-order Bundles in ``fixtures/orders/``; the recorded requests in ``fixtures/requests/*.order-*.json`` are
replayed too. Expected checks follow the rules (clinical-rules.md §4) and the fixture data.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest

from service import create_app
from service.cli import request_from_bundle
from service.config import Settings
from service.validation import null_or_empty_paths, response_errors

ROOT = Path(__file__).resolve().parents[2]
SIGN = "/cds-services/hcc-second-line-order-sign"
SELECT = "/cds-services/hcc-second-line-order-select"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def load(kind: str, name: str) -> dict:
    return json.loads((ROOT / "fixtures" / kind / f"{name}.json").read_text(encoding="utf-8"))


def evaluated_at(bundle_or_request: dict) -> datetime:
    stamp = (bundle_or_request.get("timestamp")
             or bundle_or_request["extension"]["hcc-cds.fixture"]["evaluatedAt"])
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def client_at(tmp_path, now: datetime):
    settings = Settings(auth_mode="off", feedback_db=f"sqlite:///{tmp_path}/db.sqlite3")
    return create_app(settings, clock=lambda: now).test_client()


def post(tmp_path, url: str, request: dict, now: datetime):
    response = client_at(tmp_path, now).post(url, json=request)
    return response.status_code, response.get_json()


def checks(body: dict) -> list[tuple[str, str]]:
    return [(c["extension"]["hcc-cds.orderCheck"]["check"], c["extension"]["hcc-cds.orderCheck"]["draftOrder"])
            for c in body["cards"]]


def assert_contract(body: dict, request: dict) -> None:
    assert response_errors(body) == []
    assert null_or_empty_paths(body) == []
    drafts = {f"{e['resource']['resourceType']}/{e['resource']['id']}"
              for e in request["context"]["draftOrders"]["entry"]}
    for card in body["cards"]:
        assert len(card["overrideReasons"]) == 4
        assert card["extension"]["hcc-cds.orderCheck"]["draftOrder"] in drafts
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                assert action["type"] == "update"
                MedicationRequest.model_validate(action["resource"])
                assert f"MedicationRequest/{action['resource']['id']}" in drafts  # Inferno G5


def test_order_sign_lenvatinib_dose_suggestion(tmp_path):
    bundle = load("patients", "afp-high-si-units")  # 55 kg
    drafts = load("orders", "lenvatinib-12mg-55kg")
    request = request_from_bundle(bundle, "order-sign", drafts)
    status, body = post(tmp_path, SIGN, request, evaluated_at(bundle))
    assert status == 200
    assert_contract(body, request)
    assert checks(body) == [("lenvatinib-dose", "MedicationRequest/draft-lenvatinib")]
    (card,) = body["cards"]
    assert card["indicator"] == "info" and card["selectionBehavior"] == "at-most-one"
    resource = card["suggestions"][0]["actions"][0]["resource"]
    assert resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 8  # 55 kg < 60 kg


def test_order_select_evaluates_only_the_selection(tmp_path):
    bundle = load("patients", "irae-hepatitis")  # severe irAE K75.4 on atezolizumab-bevacizumab
    drafts = load("orders", "ici-after-irae")  # nivolumab + ipilimumab
    now = evaluated_at(bundle)
    request = request_from_bundle(bundle, "order-select", drafts, ["MedicationRequest/draft-nivolumab"])
    status, body = post(tmp_path, SELECT, request, now)
    assert status == 200
    assert_contract(body, request)
    assert checks(body) == [("irae-ici", "MedicationRequest/draft-nivolumab")]
    assert body["cards"][0]["indicator"] == "warning"
    sign = request_from_bundle(bundle, "order-sign", drafts)
    status, body = post(tmp_path, SIGN, sign, now)
    assert status == 200
    assert sorted(checks(body)) == [("irae-ici", "MedicationRequest/draft-ipilimumab"),
                                    ("irae-ici", "MedicationRequest/draft-nivolumab")]


def test_order_sign_ramucirumab_with_low_afp(tmp_path):
    bundle = load("patients", "systemic-atezo-bev")  # AFP 120 ng/mL
    request = request_from_bundle(bundle, "order-sign", load("orders", "ramucirumab-low-afp"))
    status, body = post(tmp_path, SIGN, request, evaluated_at(bundle))
    assert status == 200
    assert checks(body) == [("ramucirumab-afp", "MedicationRequest/draft-ramucirumab")]
    assert body["cards"][0]["indicator"] == "warning"


def test_sandbox_style_order_select_is_accepted(tmp_path):
    """No Bundle.type, category/reasonCode objects, no intent, selections ["MedicationRequest/request-123"]."""
    bundle = load("patients", "afp-high-si-units")
    drafts = load("orders", "sandbox-style")
    assert "type" not in drafts and isinstance(drafts["entry"][0]["resource"]["category"], dict)
    request = request_from_bundle(bundle, "order-select", drafts, ["MedicationRequest/request-123"])
    status, body = post(tmp_path, SELECT, request, evaluated_at(bundle))
    assert status == 200
    assert_contract(body, request)
    # 3 x "lenvatinib 4 MG Oral Capsule" = 12 mg/day for 55 kg -> 8 mg
    assert checks(body) == [("lenvatinib-dose", "MedicationRequest/request-123")]
    resource = body["cards"][0]["suggestions"][0]["actions"][0]["resource"]
    assert isinstance(resource["category"], list) and resource["intent"] == "order"


def test_sandbox_style_incomplete_draft_gives_no_cards(tmp_path):
    """The sandbox before the form is complete: no medication, no intent -> nothing to check, still 200."""
    bundle = load("patients", "afp-high-si-units")
    drafts = copy.deepcopy(load("orders", "sandbox-style"))
    resource = drafts["entry"][0]["resource"]
    for key in ("medicationCodeableConcept", "dosageInstruction", "intent"):
        resource.pop(key, None)
    request = request_from_bundle(bundle, "order-select", drafts, ["MedicationRequest/request-123"])
    status, body = post(tmp_path, SELECT, request, evaluated_at(bundle))
    assert (status, body) == (200, {"cards": []})


def test_selection_not_in_draft_orders_is_a_400(tmp_path):
    bundle = load("patients", "irae-hepatitis")
    request = request_from_bundle(bundle, "order-select", load("orders", "ici-after-irae"),
                                  ["MedicationRequest/not-a-draft"])
    status, body = post(tmp_path, SELECT, request, evaluated_at(bundle))
    # cards.order_checks.OrderContextError must map to 400 in service/hooks.py (not a 500)
    assert status == 400, f"OrderContextError is not mapped to HTTP 400 (got {status})"
    assert body["resourceType"] == "OperationOutcome"
    assert "not-a-draft" not in json.dumps(body)


def test_non_applicable_patient_gets_no_cards(tmp_path):
    bundle = load("patients", "hcc-no-ici")
    drafts = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
        "resourceType": "MedicationRequest", "id": "len", "status": "draft", "intent": "order",
        "subject": {"reference": "Patient/hcc-no-ici-patient"},
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1603296"}], "text": "lenvatinib"},
        "dosageInstruction": [{"text": "4 mg orally once daily"}]}}]}
    request = request_from_bundle(bundle, "order-sign", drafts)
    status, body = post(tmp_path, SIGN, request, evaluated_at(bundle))
    assert (status, body) == (200, {"cards": []})


def test_other_order_types_are_ignored(tmp_path):
    bundle = load("patients", "systemic-atezo-bev")
    drafts = {"resourceType": "Bundle", "entry": [
        {"resource": {"resourceType": "ServiceRequest", "id": "sr", "status": "draft", "intent": "order",
                      "code": {"text": "CT chest"}, "subject": {"reference": "Patient/systemic-atezo-bev-patient"}}},
        {"resource": {"resourceType": "NutritionOrder", "id": "no", "status": "draft", "intent": "order"}}]}
    request = request_from_bundle(bundle, "order-select", drafts, ["ServiceRequest/sr"])
    status, body = post(tmp_path, SELECT, request, evaluated_at(bundle))
    assert (status, body) == (200, {"cards": []})


@pytest.mark.parametrize(("fixture", "expected"), [
    ("lenvatinib-12mg-55kg.order-sign", [("lenvatinib-dose", "MedicationRequest/draft-lenvatinib")]),
    ("ici-after-irae.order-select", [("irae-ici", "MedicationRequest/draft-nivolumab")]),
    ("ramucirumab-low-afp.order-sign", [("ramucirumab-afp", "MedicationRequest/draft-ramucirumab")]),
    ("sandbox-style.order-select", [("lenvatinib-dose", "MedicationRequest/request-123")]),
    ("antivegf-after-bleed.order-sign", [("bev-event-antivegf", "MedicationRequest/draft-lenvatinib")]),
    ("nivo-ipi-after-stride.order-sign", [("prior-ctla4", "MedicationRequest/draft-ipilimumab")]),
])
def test_recorded_order_requests(tmp_path, fixture, expected):
    request = load("requests", fixture)
    url = SELECT if request["hook"] == "order-select" else SIGN
    status, body = post(tmp_path, url, request, evaluated_at(request))
    assert status == 200
    assert_contract(body, request)
    assert checks(body) == expected
    for card in body["cards"]:
        uuid.UUID(card["uuid"])


def test_bad_selection_is_400_before_any_fhir_call(tmp_path) -> None:
    """No prefetch and no fhirServer: a 412 would mean data were sought before the context was checked."""
    from service import create_app as make_app
    from service.config import Settings as AppSettings

    app = make_app(AppSettings(auth_mode="off", feedback_db=f"sqlite:///{tmp_path}/db.sqlite3"))
    request = {"hook": "order-select", "hookInstance": "h-1",
               "context": {"userId": "Practitioner/x", "patientId": "p", "selections": ["MedicationRequest/zzz"],
                           "draftOrders": {"resourceType": "Bundle", "entry": [
                               {"resource": {"resourceType": "MedicationRequest", "id": "a"}}]}}}
    response = app.test_client().post("/cds-services/hcc-second-line-order-select", json=request)
    assert response.status_code == 400
