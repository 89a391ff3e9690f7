"""CDS Hooks 2.0 JSON Schemas (service/schemas) and service.validation.

Positive fixtures are the specification's own examples (CDS Hooks 2.0 §Discovery example, §Calling a CDS
Service example, §CDS Service Response example, §Action, §Feedback examples; also published as the
binary-CDSHook*.json examples of the FHIR Tools IG), copied inline. Negative cases follow
cds-hooks-checklist.md §1 and §8.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from service.validation import (
    discovery_errors,
    feedback_errors,
    null_or_empty_paths,
    request_errors,
    response_errors,
)

# --- specification examples ---------------------------------------------------------------------------

SPEC_DISCOVERY: dict[str, Any] = {
    "services": [
        {
            "hook": "patient-view",
            "title": "Static CDS Service Example",
            "description": "An example of a CDS Service that returns a static set of cards",
            "id": "static-patient-greeter",
            "prefetch": {"patientToGreet": "Patient/{{context.patientId}}"},
        },
        {
            "hook": "order-select",
            "title": "Order Echo CDS Service",
            "description": "An example of a CDS Service that simply echoes the order(s) being placed",
            "id": "order-echo",
            "prefetch": {
                "patient": "Patient/{{context.patientId}}",
                "medications": "MedicationRequest?patient={{context.patientId}}",
            },
        },
        {
            "hook": "order-sign",
            "title": "Pharmacogenomics CDS Service",
            "description": "An example of a more advanced, precision medicine CDS Service",
            "id": "pgx-on-order-sign",
            "usageRequirements": "Note: functionality of this CDS Service is degraded without access to a "
            "FHIR Restful API as part of CDS recommendation generation.",
        },
    ]
}

SPEC_REQUEST_PV: dict[str, Any] = {
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "fhirServer": "http://hooks.smarthealthit.org:9080",
    "hook": "patient-view",
    "fhirAuthorization": {
        "access_token": "some-opaque-fhir-access-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "user/Patient.read user/Observation.read",
        "subject": "cds-service4",
    },
    "context": {"userId": "Practitioner/example", "patientId": "1288992", "encounterId": "89284"},
    "prefetch": {
        "patientToGreet": {
            "resourceType": "Patient",
            "gender": "male",
            "birthDate": "1925-12-23",
            "id": "1288992",
            "active": True,
        }
    },
}

SPEC_RESPONSE: dict[str, Any] = {
    "cards": [
        {
            "uuid": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
            "summary": "Example Card",
            "indicator": "info",
            "detail": "This is an example card.",
            "source": {
                "label": "Static CDS Service Example",
                "url": "https://example.com",
                "icon": "https://example.com/img/icon-100px.png",
            },
            "links": [
                {"label": "Google", "url": "https://google.com", "type": "absolute"},
                {"label": "Github", "url": "https://github.com", "type": "absolute"},
                {
                    "label": "SMART Example App",
                    "url": "https://smart.example.com/launch",
                    "type": "smart",
                    "appContext": '{"session":3456356,"settings":{"module":4235}}',
                },
            ],
        },
        {
            "summary": "Another card",
            "indicator": "warning",
            "source": {"label": "Static CDS Service Example"},
            "overrideReasons": [
                {
                    "code": "reason-code-provided-by-service",
                    "system": "http://example.org/cds-services/fhir/CodeSystem/override-reasons",
                    "display": "Patient refused",
                },
                {
                    "code": "12354",
                    "system": "http://example.org/cds-services/fhir/CodeSystem/override-reasons",
                    "display": "Contraindicated",
                },
            ],
        },
    ]
}

# §Source example and the three §Action examples, put into one card with suggestions.
SPEC_ACTIONS_CARD: dict[str, Any] = {
    "uuid": "0b2c5d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e",
    "summary": "Zika virus management",
    "indicator": "warning",
    "source": {
        "label": "Zika Virus Management",
        "url": "https://example.com/cdc-zika-virus-mgmt",
        "icon": "https://example.com/cdc-zika-virus-mgmt/100.png",
        "topic": {
            "system": "http://example.org/cds-services/fhir/CodeSystem/topics",
            "code": "12345",
            "display": "Mosquito born virus",
        },
    },
    "selectionBehavior": "at-most-one",
    "suggestions": [
        {
            "label": "Prescribe acetaminophen",
            "uuid": "e56e1945-20b3-4393-8503-a1a20fd73152",
            "isRecommended": True,
            "actions": [
                {
                    "type": "create",
                    "description": "Create a prescription for Acetaminophen 250 MG",
                    "resource": {"resourceType": "MedicationRequest", "id": "medrx001"},
                }
            ],
        },
        {
            "label": "Record appropriateness and remove the order",
            "actions": [
                {
                    "type": "update",
                    "description": "Update the order to record the appropriateness score",
                    "resource": {"resourceType": "ServiceRequest", "id": "procedure-request-1"},
                },
                {
                    "type": "delete",
                    "description": "Remove the inappropriate order",
                    "resourceId": "ServiceRequest/procedure-request-1",
                },
            ],
        },
    ],
}

SPEC_FEEDBACK_ACCEPTED = {
    "feedback": [
        {
            "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
            "outcomeTimestamp": "2021-12-11T10:05:31Z",
        }
    ]
}
SPEC_FEEDBACK_OVERRIDDEN = {
    "feedback": [
        {"card": "f6b95768-b1c8-40dc-8385-bf3504b82ffb", "outcome": "overridden",
         "outcomeTimestamp": "2020-12-11T00:00:00Z"}
    ]
}
SPEC_FEEDBACK_OVERRIDE_REASON = {
    "feedback": [
        {
            "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
            "outcome": "overridden",
            "overrideReason": {
                "reason": {"code": "d7ecf885", "system": "https://example.com/cds-hooks/override-reason-system"},
                "userComment": "A comment entered by the clinician.",
            },
            "outcomeTimestamp": "2020-12-11T00:00:00Z",
        }
    ]
}

# --- CDS Hooks sandbox shapes (checklist §4) -----------------------------------------------------------

SANDBOX_DRAFT = {
    "resourceType": "MedicationRequest",
    "id": "request-123",
    "status": "draft",
    "subject": {"reference": "Patient/smart-1288992"},
    "category": {"coding": [{"code": "outpatient"}]},  # an object: not valid R4
    "reasonCode": {"text": "HCC"},  # an object: not valid R4; no intent, no medication[x]
}
SANDBOX_ORDER_SELECT = {
    "hookInstance": "0f8c0a4e-8f6e-4d8a-9a55-1f1b7d8c2a10",
    "hook": "order-select",
    "fhirServer": "https://launch.smarthealthit.org/v/r4/fhir",
    "context": {
        "userId": "Practitioner/COREPRACTITIONER1",
        "patientId": "smart-1288992",
        "selections": ["MedicationRequest/request-123"],
        "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": SANDBOX_DRAFT}]},
    },
}
SANDBOX_OVERRIDE_FEEDBACK = {
    "feedback": [
        {"card": "4e0a3a1e-3283-4575-ab82-028d55fe2719", "outcome": "overridden",
         "overrideReason": {"reason": {"code": "patient-declined"}},
         "outcomeTimestamp": "2026-11-27T10:15:30.123Z"}
    ]
}


def _card(**changes: Any) -> dict[str, Any]:
    card: dict[str, Any] = {
        "uuid": "5c2e8f0a-1b3d-4e5f-8a9b-0c1d2e3f4a5b",
        "summary": "Second-line options after first-line immunotherapy",
        "indicator": "info",
        "source": {"label": "HCC second-line CDS"},
    }
    card.update(changes)
    return card


def _response(**changes: Any) -> dict[str, Any]:
    return {"cards": [_card(**changes)]}


# --- positives -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "body"),
    [
        (discovery_errors, SPEC_DISCOVERY),
        (discovery_errors, {"services": []}),
        (request_errors, SPEC_REQUEST_PV),
        (request_errors, SANDBOX_ORDER_SELECT),
        (response_errors, SPEC_RESPONSE),
        (response_errors, {"cards": [SPEC_ACTIONS_CARD]}),
        (response_errors, {"cards": []}),
        (feedback_errors, SPEC_FEEDBACK_ACCEPTED),
        (feedback_errors, SPEC_FEEDBACK_OVERRIDDEN),
        (feedback_errors, SPEC_FEEDBACK_OVERRIDE_REASON),
        (feedback_errors, SANDBOX_OVERRIDE_FEEDBACK),
    ],
)
def test_valid_examples_pass(check: Any, body: dict[str, Any]) -> None:
    assert check(body) == []


def test_summary_of_139_characters_passes() -> None:
    assert response_errors(_response(summary="x" * 139)) == []


def test_request_variants_that_must_be_tolerated() -> None:
    body = copy.deepcopy(SPEC_REQUEST_PV)
    body["context"].pop("encounterId")
    body["context"]["org.example.newField"] = True  # unknown context member (§Hook version)
    body["extension"] = {"org.example.x": 1}
    body["somethingNew"] = 1  # unknown top-level member
    body["prefetch"]["missing"] = None  # client has no data for this key
    assert request_errors(body) == []
    order_sign = copy.deepcopy(SANDBOX_ORDER_SELECT)
    order_sign["hook"] = "order-sign"
    del order_sign["context"]["selections"]
    assert request_errors(order_sign) == []


def test_systemactions_and_extension_pass() -> None:
    body = _response(extension={"hcc-cds.recommendation": {"contractVersion": "1", "end": None}})
    body["systemActions"] = [{"type": "update", "description": "Record the rating",
                              "resource": {"resourceType": "ServiceRequest", "id": "example-MRI-59879846"}}]
    assert response_errors(body) == []


# --- negatives -----------------------------------------------------------------------------------------

RESPONSE_NEGATIVES = {
    "summary 140 chars": _response(summary="x" * 140),
    "summary with newline": _response(summary="two\nlines"),
    "indicator hard-stop": _response(indicator="hard-stop"),
    "missing source": {"cards": [{"summary": "s", "indicator": "info"}]},
    "unknown card member": _response(severity="high"),
    "suggestions without selectionBehavior": _response(suggestions=[{"label": "Do it"}]),
    "empty suggestions": _response(suggestions=[], selectionBehavior="any"),
    "two recommended with at-most-one": _response(
        selectionBehavior="at-most-one",
        suggestions=[{"label": "a", "isRecommended": True}, {"label": "b", "isRecommended": True}]),
    "override reason without display": _response(overrideReasons=[{"system": "http://x.org", "code": "c"}]),
    "absolute link with appContext": _response(
        links=[{"label": "App", "url": "https://x.org", "type": "absolute", "appContext": "ctx"}]),
    "link without type": _response(links=[{"label": "App", "url": "https://x.org"}]),
    "action without description": _response(selectionBehavior="any", suggestions=[{"label": "a", "actions": [
        {"type": "create", "resource": {"resourceType": "ServiceRequest"}}]}]),
    "update without resource": _response(selectionBehavior="any", suggestions=[{"label": "a", "actions": [
        {"type": "update", "description": "Update"}]}]),
    "delete without resourceId": _response(selectionBehavior="any", suggestions=[{"label": "a", "actions": [
        {"type": "delete", "description": "Remove", "resource": {"resourceType": "MedicationRequest"}}]}]),
    "empty systemActions": {"cards": [], "systemActions": []},
    "bad card uuid": _response(uuid="not-a-uuid"),
    "relative source url": _response(source={"label": "s", "url": "/about"}),
    "topic without system": _response(source={"label": "s", "topic": {"code": "data-quality"}}),
    "detail empty": _response(detail=""),
}


@pytest.mark.parametrize("name", RESPONSE_NEGATIVES)
def test_invalid_responses_fail(name: str) -> None:
    assert response_errors(RESPONSE_NEGATIVES[name]) != []


def _request(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(SPEC_REQUEST_PV)
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


def _order_select(**context_changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(SANDBOX_ORDER_SELECT)
    body["context"].update(context_changes)
    body["context"] = {key: value for key, value in body["context"].items() if value is not None}
    return body


_AUTH = SPEC_REQUEST_PV["fhirAuthorization"]

REQUEST_NEGATIVES = {
    "missing hookInstance": _request(hookInstance=None),
    "missing context": _request(context=None),
    "fhirAuthorization without fhirServer": _request(fhirServer=None),
    "lowercase bearer": _request(fhirAuthorization={**_AUTH, "token_type": "bearer"}),
    "fhirAuthorization without subject": _request(
        fhirAuthorization={k: v for k, v in _AUTH.items() if k != "subject"}),
    "expires_in as string": _request(fhirAuthorization={**_AUTH, "expires_in": "300"}),
    "non-http fhirServer": _request(fhirServer="ftp://hooks.example.org"),
    "patient-view without patientId": _request(context={"userId": "Practitioner/example"}),
    "patientId as reference": _request(context={"userId": "Practitioner/example", "patientId": "Patient/1"}),
    "prefetch value not an object": _request(prefetch={"patientToGreet": ["Patient"]}),
    "prefetch resource without resourceType": _request(prefetch={"patientToGreet": {"id": "1"}}),
    "order-select without selections": _order_select(selections=None),
    "order-select with empty selections": _order_select(selections=[]),
    "selection not a reference": _order_select(selections=["request-123"]),
    "draftOrders not a Bundle": _order_select(draftOrders={"resourceType": "List"}),
    "draftOrders entry not a list": _order_select(draftOrders={"resourceType": "Bundle", "entry": {}}),
    "draft order without resourceType": _order_select(
        draftOrders={"resourceType": "Bundle", "entry": [{"resource": {"id": "x"}}]}),
}


@pytest.mark.parametrize("name", REQUEST_NEGATIVES)
def test_invalid_requests_fail(name: str) -> None:
    assert request_errors(REQUEST_NEGATIVES[name]) != []


@pytest.mark.parametrize("body", [None, [], "x", 1])
def test_non_object_bodies_fail(body: object) -> None:
    assert request_errors(body) == ["$: expected object"]


def _discovery(**changes: Any) -> dict[str, Any]:
    service = {**SPEC_DISCOVERY["services"][0], **changes}
    return {"services": [{key: value for key, value in service.items() if value is not None}]}


DISCOVERY_NEGATIVES = {
    "missing description": _discovery(description=None),
    "id with slash": _discovery(id="a/b"),
    "id with trailing newline": _discovery(id="static-patient-greeter\n"),
    "empty prefetch": _discovery(prefetch={}),
    "draftOrders token": _discovery(prefetch={"x": "MedicationRequest?_id={{context.draftOrders}}"}),
    "nested context token": _discovery(prefetch={"x": "Medication/{{context.medication.id}}"}),
    "unknown token": _discovery(prefetch={"x": "Patient/{{patientId}}"}),
    "unknown member": _discovery(version="2.0"),
}


@pytest.mark.parametrize("name", DISCOVERY_NEGATIVES)
def test_invalid_discovery_fails(name: str) -> None:
    assert discovery_errors(DISCOVERY_NEGATIVES[name]) != []


def test_user_tokens_are_allowed_in_prefetch() -> None:
    assert discovery_errors(_discovery(prefetch={"me": "Practitioner/{{userPractitionerId}}"})) == []


def _feedback(**changes: Any) -> dict[str, Any]:
    item = {**SPEC_FEEDBACK_ACCEPTED["feedback"][0], **changes}
    return {"feedback": [{key: value for key, value in item.items() if value is not None}]}


FEEDBACK_NEGATIVES = {
    "accepted without acceptedSuggestions": _feedback(acceptedSuggestions=None),
    "empty acceptedSuggestions": _feedback(acceptedSuggestions=[]),
    "outcome ignored": _feedback(outcome="ignored"),
    "missing timestamp": _feedback(outcomeTimestamp=None),
    "timestamp not RFC 3339": _feedback(outcomeTimestamp="11/12/2021 10:05"),
    "impossible date": _feedback(outcomeTimestamp="2021-13-11T10:05:31Z"),
    "reason without code": _feedback(outcome="overridden", acceptedSuggestions=None,
                                     overrideReason={"reason": {"system": "http://x.org"}}),
    "empty feedback list": {"feedback": []},
}


@pytest.mark.parametrize("name", FEEDBACK_NEGATIVES)
def test_invalid_feedback_fails(name: str) -> None:
    assert feedback_errors(FEEDBACK_NEGATIVES[name]) != []


# --- messages ------------------------------------------------------------------------------------------


def test_messages_name_the_path_and_problem() -> None:
    assert request_errors(_request(hookInstance=None)) == ['$: missing required member "hookInstance"']
    assert request_errors(_request(fhirServer=None)) == [
        '$: "fhirServer" is required when "fhirAuthorization" is present']
    [message] = response_errors(_response(summary="x" * 140))
    assert message == "$.cards[0].summary: must have at most 139 characters (has 140)"
    [message] = response_errors(_response(indicator="hard-stop"))
    assert message.startswith("$.cards[0].indicator: must be one of") and '"hard-stop"' in message


def test_messages_never_echo_tokens_or_long_values() -> None:
    secret = "eyJhbGciOiJSUzI1NiJ9.SECRET-ACCESS-TOKEN"
    auth = {"access_token": secret, "token_type": secret, "expires_in": secret, "scope": 7, "subject": "s"}
    errors = request_errors(_request(fhirAuthorization=auth, fhirServer=secret))
    assert errors and not any("SECRET" in line for line in errors)
    long_value = "hard-stop-" + "y" * 200
    errors = response_errors(_response(indicator=long_value, summary=long_value))
    assert errors and all(len(line) < 200 for line in errors)
    assert not any("y" * 61 in line for line in errors)


# --- null_or_empty_paths -------------------------------------------------------------------------------


def test_null_or_empty_paths_finds_nulls_and_empties() -> None:
    body = {
        "cards": [
            _card(detail=None, links=[], source={"label": "s", "topic": {}}, suggestions=[{"label": ""}]),
        ],
        "systemActions": [],
    }
    assert null_or_empty_paths(body) == [
        "$.cards[0].source.topic",
        "$.cards[0].detail",
        "$.cards[0].links",
        "$.cards[0].suggestions[0].label",
        "$.systemActions",
    ]


def test_null_or_empty_paths_allows_what_the_spec_allows() -> None:
    assert null_or_empty_paths({"cards": []}) == []
    assert null_or_empty_paths({"services": []}) == []
    assert null_or_empty_paths({"hook": "patient-view", "prefetch": {"patient": None}}) == []
    recommendation = {"firstLine": {"end": None}, "progression": {"organs": []}, "adverseEvents": {}}
    assert null_or_empty_paths(_response(extension={"hcc-cds.recommendation": recommendation})) == []
    assert null_or_empty_paths(SPEC_RESPONSE) == []


def test_null_or_empty_paths_reports_nested_empties_and_empty_extension() -> None:
    nested = {"cards": [{"x": [[], {"y": {}}]}]}
    assert null_or_empty_paths(nested) == ["$.cards[0].x[0]", "$.cards[0].x[1].y"]
    assert null_or_empty_paths({"cards": [_card(extension={})]}) == ["$.cards[0].extension"]
    assert null_or_empty_paths({"services": [{"weird key": None}]}) == ['$.services[0]["weird key"]']
    assert null_or_empty_paths({"nested": {"cards": []}}) == ["$.nested.cards"]
