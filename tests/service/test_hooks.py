"""The CDS Hooks endpoints through the Flask test client: discovery, patient-view, envelope errors, 412."""

from __future__ import annotations

import copy
import json

import pytest

from service import create_app
from service.config import Settings
from service.discovery import PREFETCH, SERVICES
from service.validation import discovery_errors, null_or_empty_paths, response_errors
from tests.service.support import evaluated_at, fixture_request

PV = "/cds-services/hcc-second-line-patient-view"


@pytest.fixture
def client(tmp_path, fixed_now):
    settings = Settings(auth_mode="off", feedback_db=f"sqlite:///{tmp_path}/db.sqlite3", fhir_allowlist=("*",))
    return create_app(settings, clock=lambda: fixed_now).test_client()


def test_discovery_lists_the_three_services_and_validates(client) -> None:
    response = client.get("/cds-services", headers={"Authorization": "Bearer whatever"})
    assert response.status_code == 200
    body = response.get_json()
    assert discovery_errors(body) == []
    assert null_or_empty_paths(body) == []
    assert {s["id"]: s["hook"] for s in body["services"]} == {
        "hcc-second-line-patient-view": "patient-view",
        "hcc-second-line-order-select": "order-select",
        "hcc-second-line-order-sign": "order-sign",
    }


def test_prefetch_templates_use_only_allowed_parameters() -> None:
    allowed = {"patient", "subject", "code", "status", "_count"}
    for template, _required in PREFETCH.values():
        _type, _, query = template.partition("?")
        if not query:  # a read (contract §2: Patient/{{context.patientId}} for age and deceased status)
            assert template == "Patient/{{context.patientId}}"
            continue
        names = {part.split("=")[0] for part in query.split("&")}
        assert names <= allowed, template
        assert "category" not in template and "_include" not in template


def test_discovery_has_no_trailing_slash_redirect(client) -> None:
    assert client.get("/cds-services").status_code == 200
    assert client.get("/cds-services/").status_code == 404  # never a 30x redirect


def test_patient_view_full_prefetch_gives_second_line_card(client) -> None:
    response = client.post(PV, json=fixture_request("systemic-atezo-bev"))
    assert response.status_code == 200
    body = response.get_json()
    assert response_errors(body) == [] and null_or_empty_paths(body) == []
    topics = [c["source"]["topic"]["code"] for c in body["cards"]]
    # this fixture has no INR: Child-Pugh is not computable and the data-quality card offers the INR order
    assert topics == ["second-line-options", "data-quality", "clinical-trials"]
    labels = [s["label"] for s in body["cards"][1]["suggestions"]]
    assert labels == ["Order INR"]
    [link] = body["cards"][0]["links"]
    assert link["type"] == "smart" and link["url"] == "http://localhost/app/launch"


def test_no_card_patient_answers_exactly_empty_cards(client) -> None:
    response = client.post(PV, json=fixture_request("not-hcc-cholangio"))
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


def test_same_request_twice_gives_two_200s_with_fresh_uuids(client) -> None:
    request = fixture_request("systemic-atezo-bev")
    first = client.post(PV, json=request).get_json()
    second = client.post(PV, json=request).get_json()
    assert {c["uuid"] for c in first["cards"]}.isdisjoint({c["uuid"] for c in second["cards"]})


def test_unknown_members_and_extensions_are_tolerated(client) -> None:
    request = fixture_request("systemic-atezo-bev")
    plain = client.post(PV, json=request).get_json()
    request = copy.deepcopy(request)
    request["extension"]["org.example.x"] = {"a": 1}
    request["context"]["somethingNew"] = "x"
    request["unknownTopLevel"] = True
    response = client.post(PV, json=request)
    assert response.status_code == 200
    assert [c["summary"] for c in response.get_json()["cards"]] == [c["summary"] for c in plain["cards"]]


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda r: r.pop("hookInstance"), 400),
        (lambda r: r.pop("context"), 400),
        (lambda r: r["context"].pop("patientId"), 400),
        (lambda r: r.update(hook="order-sign"), 400),
        (lambda r: r.update(fhirAuthorization={"access_token": "t", "token_type": "Bearer", "expires_in": 30,
                                               "scope": "patient/*.read", "subject": "x"}), 400),
        (lambda r: r["prefetch"].update(conditions=[1, 2]), 400),
        (lambda r: r["prefetch"].update(conditions={"no": "resourceType"}), 400),
        (lambda r: r["prefetch"].update(conditions={"resourceType": "Bundle", "entry": {"x": 1}}), 400),
        (lambda r: r.update(prefetch="nope"), 400),
    ],
    ids=["no-hookInstance", "no-context", "no-patientId", "wrong-hook", "auth-without-fhirServer",
         "prefetch-list", "prefetch-no-resourceType", "entry-not-list", "prefetch-string"],
)
def test_bad_envelopes_are_4xx_json(client, mutate, status) -> None:
    request = fixture_request("systemic-atezo-bev")
    mutate(request)
    response = client.post(PV, json=request)
    assert response.status_code == status
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert "Traceback" not in response.get_data(as_text=True)


def test_not_json_is_400(client) -> None:
    response = client.post(PV, data=b"{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_json_with_charset_and_plain_text_content_type_are_read(client) -> None:
    body = json.dumps(fixture_request("systemic-atezo-bev"))
    for content_type in ("application/json; charset=utf-8", "text/plain"):
        assert client.post(PV, data=body, content_type=content_type).status_code == 200


def test_unknown_service_404_and_get_on_service_405(client) -> None:
    assert client.post("/cds-services/nope", json={}).status_code == 404
    response = client.get(PV)
    assert response.status_code == 405
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_body_over_limit_is_413_json(tmp_path, fixed_now) -> None:
    settings = Settings(auth_mode="off", feedback_db=f"sqlite:///{tmp_path}/db.sqlite3", max_body_bytes=2000)
    client = create_app(settings, clock=lambda: fixed_now).test_client()
    response = client.post(PV, json=fixture_request("systemic-atezo-bev"))
    assert response.status_code == 413
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_no_prefetch_and_no_fhir_server_is_412(client) -> None:
    request = fixture_request("systemic-atezo-bev")
    request.pop("prefetch")
    response = client.post(PV, json=request)
    assert response.status_code == 412
    assert "required data" in response.get_json()["issue"][0]["diagnostics"]


def test_operation_outcome_prefetch_without_server_is_412(client) -> None:
    request = fixture_request("systemic-atezo-bev")
    request["prefetch"]["observations"] = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "timeout"}]}
    assert client.post(PV, json=request).status_code == 412


def test_null_prefetch_values_mean_no_data_not_412(client) -> None:
    request = fixture_request("systemic-atezo-bev")
    request["prefetch"] = dict.fromkeys(PREFETCH)
    response = client.post(PV, json=request)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}  # no HCC in the (empty) record


def test_missing_optional_data_without_server_names_it_on_data_quality_card(client) -> None:
    request = fixture_request("systemic-atezo-bev")
    del request["prefetch"]["bodyStructures"]
    response = client.post(PV, json=request)
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    quality = [c for c in cards if c["source"]["topic"]["code"] == "data-quality"]
    assert quality and "BodyStructures" in quality[0]["detail"]


def test_fhir_server_not_on_allowlist_is_refused_with_412(tmp_path, fixed_now) -> None:
    settings = Settings(auth_mode="off", feedback_db=f"sqlite:///{tmp_path}/db.sqlite3",
                        fhir_allowlist=("https://ehr.example/fhir",))
    client = create_app(settings, clock=lambda: fixed_now).test_client()
    request = fixture_request("systemic-atezo-bev")
    request.pop("prefetch")
    request["fhirServer"] = "http://169.254.169.254/latest"
    response = client.post(PV, json=request)
    assert response.status_code == 412
    assert "ALLOWLIST" in response.get_json()["issue"][0]["diagnostics"]


def test_recorded_time_drives_replay_not_the_wall_clock(tmp_path) -> None:
    request = fixture_request("systemic-atezo-bev")
    late = evaluated_at(request).replace(year=2030)
    settings = Settings(auth_mode="off", feedback_db=f"sqlite:///{tmp_path}/db.sqlite3")
    body = create_app(settings, clock=lambda: late).test_client().post(PV, json=request).get_json()
    albi = body["cards"][0]["extension"]["hcc-cds.recommendation"]["assessment"]["albi"]
    assert albi["status"] == "stale"  # the same labs are years old in 2030


def test_every_service_is_in_discovery() -> None:
    assert set(SERVICES) == {"hcc-second-line-patient-view", "hcc-second-line-order-select",
                             "hcc-second-line-order-sign"}


def test_chunked_body_over_the_limit_is_413_not_400(tmp_path, fixed_now) -> None:
    import io

    settings = Settings(auth_mode="off", feedback_db=f"sqlite:///{tmp_path}/db.sqlite3", max_body_bytes=5000)
    client = create_app(settings, clock=lambda: fixed_now).test_client()
    body = json.dumps(fixture_request("systemic-atezo-bev")).encode()
    response = client.post(PV, input_stream=io.BytesIO(body), content_type="application/json",
                           headers={"Transfer-Encoding": "chunked"})
    assert response.status_code == 413
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_deeply_nested_json_is_400_not_500(client) -> None:
    body = b'{"hook":"patient-view","hookInstance":"x","context":{},"extension":{"x":' + b"[" * 100_000
    response = client.post(PV, data=body, content_type="application/json")
    assert response.status_code == 400


def test_the_parsed_request_is_freed_after_the_answer_is_sent_not_before(client, monkeypatch) -> None:
    """A long record's parsed JSON is released when the WSGI server closes the response (after sending it), so
    freeing it does not delay the cards (hooks._free_after_sending); it is released then, not kept."""
    import gc
    import weakref

    import service.hooks

    seen: list[weakref.ref] = []
    real_gather = service.hooks.gather

    def gather_and_watch(body, settings):  # type: ignore[no-untyped-def]
        gathered = real_gather(body, settings)
        seen.append(weakref.ref(gathered))
        return gathered

    monkeypatch.setattr(service.hooks, "gather", gather_and_watch)
    response = client.post(PV, json=fixture_request("systemic-atezo-bev"))
    assert response.status_code == 200 and response.get_json()["cards"]
    gc.collect()
    assert seen[0]() is not None, "freed before the response was closed"
    response.close()
    gc.collect()
    assert seen[0]() is None, "still held after the response was closed"
