"""Property-based robustness: whatever arrives, the answer is < 500 and a JSON body (service-contract.md §6).

Runs against the demo app (``Settings.from_env({}, demo=True)``: auth optional, sandbox key trusted, any
http(s) fhirServer allowed) with a temporary feedback database and the network switched off, so a random
``fhirServer`` fails fast instead of being called. Every fuzzed endpoint must be routed.
"""

from __future__ import annotations

import copy
import json
import socket
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service import create_app
from service.config import Settings

SERVICE_IDS = ["hcc-second-line-patient-view", "hcc-second-line-order-select", "hcc-second-line-order-sign"]
HOOK_OF = {
    "hcc-second-line-patient-view": "patient-view",
    "hcc-second-line-order-select": "order-select",
    "hcc-second-line-order-sign": "order-sign",
}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    db = tmp_path_factory.mktemp("fuzz") / "feedback.sqlite3"
    demo = Settings.from_env({"HCC_CDS_FEEDBACK_DB": f"sqlite:///{db}"}, demo=True)

    def no_network(*_args, **_kwargs):
        raise requests.ConnectionError("network disabled in fuzz tests")

    def no_socket(*_args, **_kwargs):
        raise OSError("network disabled in fuzz tests")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(requests.adapters.HTTPAdapter, "send", no_network)
        mp.setattr(socket, "getaddrinfo", no_socket)
        mp.setattr(socket.socket, "connect", no_socket)
        mp.setattr(socket, "create_connection", no_socket)
        application = create_app(demo)
        application.config["PROPAGATE_EXCEPTIONS"] = False
        yield application


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def require_route(app, path: str, method: str) -> None:
    """Every endpoint under fuzz must exist: a missing route is a failure, not a skip."""
    app.url_map.bind("localhost").match(path, method=method)


def require_service(app, service_id: str, suffix: str = "") -> str:
    """The service's path, which must be routed."""
    path = f"/cds-services/{service_id}{suffix}"
    require_route(app, path, "POST")
    return path


def check(response) -> None:
    body = response.get_data()
    assert response.status_code < 500, body[:500]
    if response.status_code == 204:
        return
    try:
        json.loads(body)
    except ValueError as exc:  # pragma: no cover - failure message
        raise AssertionError(f"{response.status_code} body is not JSON: {body[:200]!r}") from exc


# --- strategies ------------------------------------------------------------------------------------------

text = st.text(max_size=40)
ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
leaf = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False) | text)
json_values = st.recursive(
    leaf, lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=25,
)
RESOURCE_TYPES = ["Patient", "Condition", "Observation", "MedicationStatement", "MedicationRequest",
                  "MedicationAdministration", "AdverseEvent", "BodyStructure", "Bundle", "OperationOutcome",
                  "Practitioner", "", "patient"]
SYSTEMS = ["http://loinc.org", "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10"]
CODES = ["1751-7", "1975-2", "89247-1", "K75.4", "C22.0", "1834-1"]
UNITS = ["mg/dL", "g/dL", "umol/L", "ng/mL", "kg"]
codings = st.fixed_dictionaries({}, optional={"system": st.sampled_from(SYSTEMS) | text,
                                              "code": st.sampled_from(CODES) | text, "display": text})
resources = st.fixed_dictionaries(
    {"resourceType": st.sampled_from(RESOURCE_TYPES) | text},
    optional={
        "id": text | json_values,
        "status": st.sampled_from(["final", "active", "completed", "stopped", "draft"]) | json_values,
        "code": st.fixed_dictionaries({}, optional={"coding": st.lists(codings, max_size=3) | json_values,
                                                    "text": text}) | json_values,
        "subject": st.just({"reference": "Patient/p1"}) | json_values,
        "valueQuantity": st.fixed_dictionaries({}, optional={"value": leaf, "unit": text,
                                                            "code": st.sampled_from(UNITS)}) | json_values,
        "effectiveDateTime": st.sampled_from(["2026-11-01", "2026-11-01T10:00:00Z", "yesterday", ""]) | leaf,
        "entry": json_values,
        "medicationCodeableConcept": st.fixed_dictionaries({"coding": st.lists(codings, max_size=2)})
        | json_values,
        "category": json_values,
        "extension": json_values,
    },
)
bundles = st.fixed_dictionaries(
    {"resourceType": st.just("Bundle")},
    optional={
        "type": st.sampled_from(["searchset", "collection", "transaction"]) | leaf,
        "entry": st.lists(st.fixed_dictionaries({}, optional={"resource": resources | json_values,
                                                              "fullUrl": text}) | json_values, max_size=6)
        | json_values,
        "link": st.lists(st.fixed_dictionaries({"relation": st.sampled_from(["next", "self"]) | text,
                                                "url": text}), max_size=2) | json_values,
        "total": leaf,
    },
)
PREFETCH_KEYS = ["patient", "conditions", "observations", "medicationStatements", "medicationRequests",
                 "medicationAdministrations", "adverseEvents", "bodyStructures"]
prefetch = st.dictionaries(st.sampled_from(PREFETCH_KEYS) | text,
                           st.none() | bundles | resources | json_values, max_size=8) | json_values
contexts = st.fixed_dictionaries(
    {},
    optional={
        "patientId": st.sampled_from(["p1", "smart-1288992", "", "../../etc/passwd"]) | text | json_values,
        "userId": st.sampled_from(["Practitioner/COREPRACTITIONER1", "PractitionerRole/1"]) | json_values,
        "encounterId": text | json_values,
        "selections": st.lists(st.sampled_from(["MedicationRequest/request-123"]) | text, max_size=3)
        | json_values,
        "draftOrders": bundles | json_values,
    },
)


def hook_requests(hook: str):
    return st.fixed_dictionaries(
        {},
        optional={
            "hook": st.just(hook) | st.sampled_from(list(HOOK_OF.values())) | text | json_values,
            "hookInstance": st.uuids().map(str) | text | json_values,
            "fhirServer": st.sampled_from(["http://fhir.invalid/fhir", "https://fhir.invalid", "ftp://x",
                                           "javascript:alert(1)", "", "http://localhost/fhir"]) | json_values,
            "fhirAuthorization": st.fixed_dictionaries(
                {"access_token": ascii_text, "token_type": st.just("Bearer"), "expires_in": leaf,
                 "scope": text, "subject": text}) | json_values,
            "context": contexts,
            "prefetch": prefetch,
            "extension": json_values,
        },
    )


# Recorded hook requests (real patients' prefetch) mutated at random paths: valid envelopes that reach the
# data gathering and the rules, with wrongly typed, missing or absurd values deep inside the resources.
REQUEST_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "requests"
SEEDS: list[dict] = [json.loads(p.read_text()) for p in sorted(REQUEST_FIXTURES.glob("*.json"))][:20]
ODD_VALUES = st.sampled_from(["", " ", "2026-13-45", "2026-02-30T25:00:00Z", "NaN", "-1", "1e400", "x" * 5000,
                              0, -1, 1e308, -1e308, 2**64, True, [], {}, None, [None], {"": None}])


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _parent(root: Any, path: tuple) -> Any:
    for step in path[:-1]:
        root = root[step]
    return root


def _draft_orders(seed: dict) -> dict:
    """Draft MedicationRequests for the order hooks: the patient's own medications plus the sandbox's."""
    entries = []
    subject = {"reference": f"Patient/{seed['context']['patientId']}"}
    for key in ("medicationStatements", "medicationRequests"):
        bundle = (seed.get("prefetch") or {}).get(key) or {}
        for entry in (bundle.get("entry") or [])[:3]:
            concept = (entry.get("resource") or {}).get("medicationCodeableConcept")
            if concept:
                draft = {"resourceType": "MedicationRequest", "id": f"draft-{len(entries)}",
                         "status": "draft", "intent": "order", "subject": subject,
                         "medicationCodeableConcept": concept}
                entries.append({"resource": draft})
    entries.append({"resource": {"resourceType": "MedicationRequest", "id": "request-123", "status": "draft",
                                 "category": {"text": "outpatient"}, "reasonCode": {"text": "x"},
                                 "subject": subject}})
    return {"resourceType": "Bundle", "entry": entries}


@st.composite
def mutated_requests(draw, hook: str) -> dict:
    body = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    body["hook"] = hook
    body["hookInstance"] = str(draw(st.uuids()))
    if hook != "patient-view":
        body["context"]["draftOrders"] = _draft_orders(body)
        ids = [f"MedicationRequest/{e['resource']['id']}" for e in body["context"]["draftOrders"]["entry"]]
        if hook == "order-select":
            body["context"]["selections"] = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=3))
    if draw(st.integers(0, 4)) == 0:  # some prefetch keys missing: FHIR server needed (network is off)
        for key in draw(st.lists(st.sampled_from(sorted(body.get("prefetch") or {"x": 0})), max_size=3)):
            (body.get("prefetch") or {}).pop(key, None)
        body["fhirServer"] = draw(st.sampled_from(["http://fhir.invalid/fhir", "http://localhost/fhir"]))
    region = {"prefetch": body.get("prefetch"), "context": body["context"]}
    for _ in range(draw(st.integers(0, 8))):
        candidates = [("prefetch", *p) for p in _paths(region["prefetch"])]
        candidates += [("context", *p) for p in _paths(region["context"]) if p[:1] == ("draftOrders",)]
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent = _parent(body, path)
        operation = draw(st.sampled_from(["replace", "odd", "delete", "duplicate"]))
        if operation == "delete":
            del parent[path[-1]]
        elif operation == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
        elif operation == "odd":  # a copy: sampled_from hands out the same [] / {} objects every time
            parent[path[-1]] = copy.deepcopy(draw(ODD_VALUES))
        else:
            parent[path[-1]] = draw(json_values)
        region = {"prefetch": body.get("prefetch"), "context": body["context"]}
        if not isinstance(region["prefetch"], dict | list) or not isinstance(region["context"], dict):
            break
    return body


feedback_bodies = st.fixed_dictionaries(
    {},
    optional={
        "feedback": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "card": st.uuids().map(str) | text | json_values,
                    "outcome": st.sampled_from(["accepted", "overridden"]) | text | json_values,
                    "outcomeTimestamp": st.sampled_from(["2026-11-01T10:00:00.000Z", "2026-11-01", "x"])
                    | json_values,
                    "acceptedSuggestions": st.lists(st.fixed_dictionaries({"id": text | json_values}),
                                                    max_size=3) | json_values,
                    "overrideReason": st.fixed_dictionaries(
                        {}, optional={"reason": st.fixed_dictionaries({}, optional={"code": text,
                                                                                     "system": text}),
                                      "userComment": text}) | json_values,
                },
            ) | json_values,
            max_size=4,
        ) | json_values,
    },
)

header_values = ascii_text
random_headers = st.fixed_dictionaries(
    {},
    optional={
        "Authorization": st.sampled_from(["Bearer ", "Bearer a.b.c", "Basic dXNlcjpwdw==", ""])
        | header_values | header_values.map(lambda v: f"Bearer {v}"),
        "Content-Type": st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain",
                                         "application/x-www-form-urlencoded", "multipart/form-data",
                                         "application/fhir+json", ""]) | header_values,
        "Accept": st.sampled_from(["application/json", "*/*", "text/html", ""]) | header_values,
        "Origin": st.sampled_from(["https://sandbox.cds-hooks.org", "null"]) | header_values,
        "Content-Encoding": st.sampled_from(["gzip", "identity"]) | header_values,
        "X-Forwarded-Proto": header_values,
        "Prefer": header_values,
    },
)


# --- service calls ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("service_id", SERVICE_IDS)
@FUZZ
@given(body=st.data())
def test_service_near_valid_requests(app, client, service_id, body):
    path = require_service(app, service_id)
    payload = body.draw(hook_requests(HOOK_OF[service_id]))
    check(client.post(path, json=payload))


@pytest.mark.parametrize("service_id", SERVICE_IDS)
@FUZZ
@given(data=st.data())
def test_service_mutated_recorded_requests(app, client, service_id, data):
    path = require_service(app, service_id)
    assert SEEDS, "fixtures/requests has no recorded requests"
    payload = data.draw(mutated_requests(HOOK_OF[service_id]))
    response = client.post(path, json=payload)
    check(response)
    if response.status_code == 200:
        cards = response.get_json()["cards"]
        assert isinstance(cards, list)
        for card in cards:
            assert card["uuid"] and card["summary"] and len(card["summary"]) <= 139


@pytest.mark.parametrize("service_id", SERVICE_IDS)
@FUZZ
@given(payload=json_values)
def test_service_random_json(app, client, service_id, payload):
    path = require_service(app, service_id)
    check(client.post(path, json=payload))


@pytest.mark.parametrize("service_id", SERVICE_IDS)
@FUZZ
@given(raw=st.binary(max_size=2000) | st.text(max_size=500).map(str.encode))
def test_service_random_bytes(app, client, service_id, raw):
    path = require_service(app, service_id)
    check(client.post(path, data=raw, headers={"Content-Type": "application/json"}))


@pytest.mark.parametrize("service_id", SERVICE_IDS)
@FUZZ
@given(headers=random_headers, raw=st.binary(max_size=200))
def test_service_random_headers(app, client, service_id, headers, raw):
    path = require_service(app, service_id)
    valid = {"hookInstance": str(uuid.uuid4()), "hook": HOOK_OF[service_id],
             "context": {"patientId": "p1", "userId": "Practitioner/1"}, "prefetch": {}}
    data = json.dumps(valid).encode() if raw[:1] in (b"", b"\x00") else raw
    check(client.post(path, data=data, headers=headers))


# --- feedback ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service_id", SERVICE_IDS)
@FUZZ
@given(payload=feedback_bodies | json_values)
def test_feedback_random_json(app, client, service_id, payload):
    path = require_service(app, service_id, "/feedback")
    check(client.post(path, json=payload))


@FUZZ
@given(raw=st.binary(max_size=1000), headers=random_headers)
def test_feedback_random_bytes_and_headers(app, client, raw, headers):
    path = f"/cds-services/{SERVICE_IDS[0]}/feedback"
    require_route(app, path, "POST")
    check(client.post(path, data=raw, headers=headers))


# --- unknown service, discovery, embedded FHIR ------------------------------------------------------------


@FUZZ
@given(payload=json_values | hook_requests("patient-view"))
def test_unknown_service(app, client, payload):
    path = "/cds-services/unknown"
    require_route(app, path, "POST")
    response = client.post(path, json=payload)
    check(response)
    assert response.status_code == 404


@FUZZ
@given(headers=random_headers, query=st.dictionaries(text, text, max_size=4))
def test_discovery_random_headers_and_query(app, client, headers, query):
    require_route(app, "/cds-services", "GET")
    response = client.get("/cds-services", query_string=query, headers=headers)
    check(response)
    assert response.status_code == 200  # whatever Authorization comes with it (contract §8)


FHIR_PATHS = ["metadata", "Patient", "Practitioner", "Observation", "Condition", "MedicationRequest",
              "MedicationStatement", "AdverseEvent", "Bundle", "Nope", "Patient/p1", "Patient/../../x",
              "Observation/_history"]
FHIR_PARAMS = ["patient", "subject", "code", "status", "_count", "_getpages", "_offset", "page", "_id",
               "_format", "category", "date"]


@FUZZ
@given(
    path=st.sampled_from(FHIR_PATHS) | st.text(st.characters(min_codepoint=33, max_codepoint=126,
                                                              exclude_characters="?#"), max_size=30),
    query=st.lists(st.tuples(st.sampled_from(FHIR_PARAMS) | text, text | st.integers().map(str)), max_size=5),
    headers=random_headers,
)
def test_fhir_random_queries(app, client, path, query, headers):
    require_route(app, "/fhir/metadata", "GET")
    response = client.get(f"/fhir/{path.lstrip('/')}?{urlencode(query)}", headers=headers)
    check(response)


@FUZZ
@given(resource=st.sampled_from(["Patient", "Observation", "Condition", "Nope"]),
       form=st.lists(st.tuples(st.sampled_from(FHIR_PARAMS) | text, text), max_size=5),
       raw=st.binary(max_size=300), use_raw=st.booleans())
def test_fhir_post_search(app, client, resource, form, raw, use_raw):
    require_route(app, "/fhir/metadata", "GET")
    path = f"/fhir/{resource}/_search"
    if use_raw:
        response = client.post(path, data=raw, headers={"Content-Type": "application/x-www-form-urlencoded"})
    else:
        response = client.post(path, data=urlencode(form),
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    check(response)


# --- anything else (active now: error handling, CORS and logging on arbitrary requests) --------------------


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="?#"), max_size=40),
    headers=random_headers,
    raw=st.binary(max_size=300),
)
def test_arbitrary_requests(app, client, method, path, headers, raw):
    response = client.open("/" + path.lstrip("/"), method=method, headers=headers,
                           data=raw if method not in {"GET", "HEAD", "OPTIONS"} else None)
    assert response.status_code < 500, response.get_data()[:300]
    page = path.strip("/") == "" or path.lstrip("/").startswith(("app", "demo/"))  # HTML pages (contract §10)
    if method not in {"HEAD", "OPTIONS"} and response.status_code != 204 and not page:
        json.loads(response.get_data())
