"""``service.gather``: OperationOutcomes inside searchsets (prefetch and fetched pages) and the Medication fetch
for ``medicationReference`` (service-contract.md §2; clinical-rules.md §1 Exposure), over real HTTP servers."""

from __future__ import annotations

import copy
import json
import threading
import time

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from service import create_app
from service.cli import mask_uuids
from service.config import Settings
from service.gather import fetch_referenced_medications, gather, medication_ids_to_fetch
from tests.service.fhir_test_servers import HungServer
from tests.service.support import evaluated_at, fixture_request

PATIENT_VIEW = "/cds-services/hcc-second-line-patient-view"
NO_RESULTS = {"resourceType": "OperationOutcome", "issue": [
    {"severity": "warning", "code": "processing", "details": {"coding": [{"code": "4101"}],
                                                                "text": "Resource request returns no results."}}]}
FAILED = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}
ATEZOLIZUMAB = {"resourceType": "Medication", "id": "med-atezo", "code": {"coding": [
    {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1792776", "display": "atezolizumab"}]}}


def searchset(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": list(entries)}


def outcome_entry(outcome: dict) -> dict:
    return {"resource": outcome, "search": {"mode": "outcome"}}


class RouteServer:
    """A real HTTP server on 127.0.0.1: path -> (status, JSON body); records request paths."""

    def __init__(self, routes: dict[str, tuple[int, dict]]) -> None:
        self.routes, self.paths = routes, []

        @Request.application
        def app(request: Request) -> Response:
            self.paths.append(request.path)
            status, body = self.routes.get(request.path.removeprefix("/fhir"), (404, FAILED))
            return Response(json.dumps(body), status, content_type="application/fhir+json")

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RouteServer:
        self.thread.start()
        return self

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/fhir"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


SETTINGS = Settings(auth_mode="off", fhir_allowlist=("*",), fhir_read_timeout=5.0, fhir_deadline=8.0)


@pytest.fixture
def full() -> dict:
    return fixture_request("systemic-atezo-bev")


def _client(tmp_path, request: dict):
    settings = Settings(auth_mode="off", feedback_db=f"sqlite:///{tmp_path}/db.sqlite3", fhir_allowlist=("*",))
    now = evaluated_at(request)
    return create_app(settings, clock=lambda: now).test_client()


def _quality(response) -> str:
    cards = response.get_json()["cards"]
    return " ".join(c["detail"] for c in cards if c["source"]["topic"]["code"] == "data-quality")


# --- OperationOutcome entries -----------------------------------------------------------------------------


def test_a_prefetched_searchset_with_only_a_warning_outcome_means_no_data_not_412(full, tmp_path) -> None:
    client = _client(tmp_path, full)
    with_outcome = copy.deepcopy(full)
    with_outcome["prefetch"]["adverseEvents"] = searchset(outcome_entry(NO_RESULTS))
    with_outcome["prefetch"]["medicationRequests"] = searchset(outcome_entry(NO_RESULTS))
    as_null = copy.deepcopy(full)
    as_null["prefetch"]["adverseEvents"] = None
    as_null["prefetch"]["medicationRequests"] = None
    response = client.post(PATIENT_VIEW, json=with_outcome)  # no fhirServer: nothing could be fetched
    assert response.status_code == 200
    expected = client.post(PATIENT_VIEW, json=as_null).get_json()
    strip = lambda cards: mask_uuids({"cards": cards})["cards"]  # noqa: E731
    assert strip(response.get_json()["cards"]) == strip(expected["cards"])


def test_a_prefetched_searchset_with_an_error_outcome_is_fetched_again(full, tmp_path) -> None:
    request = copy.deepcopy(full)
    request["prefetch"]["conditions"] = searchset(outcome_entry(FAILED), *full["prefetch"]["conditions"]["entry"])
    assert _client(tmp_path, full).post(PATIENT_VIEW, json=request).status_code == 412  # no fhirServer
    with RouteServer({"/Condition": (200, full["prefetch"]["conditions"])}) as server:
        response = _client(tmp_path, full).post(PATIENT_VIEW, json=dict(request, fhirServer=server.base))
    assert response.status_code == 200
    assert server.paths == ["/fhir/Condition"]


def test_a_standalone_warning_outcome_prefetch_still_means_fetch_it(full, tmp_path) -> None:
    request = copy.deepcopy(full)
    request["prefetch"]["conditions"] = NO_RESULTS
    assert _client(tmp_path, full).post(PATIENT_VIEW, json=request).status_code == 412


def test_fetched_pages_warning_outcome_is_no_data_and_error_outcome_is_a_failure(full, tmp_path) -> None:
    request = {k: v for k, v in full.items() if k != "prefetch"}
    request["prefetch"] = {k: v for k, v in full["prefetch"].items() if k not in ("adverseEvents", "conditions")}
    routes = {"/AdverseEvent": (200, searchset(outcome_entry(NO_RESULTS))),
              "/Condition": (200, full["prefetch"]["conditions"])}
    with RouteServer(routes) as server:
        client = _client(tmp_path, full)
        ok = client.post(PATIENT_VIEW, json=dict(request, fhirServer=server.base))
        assert ok.status_code == 200 and "could not be read" not in _quality(ok)
        routes["/AdverseEvent"] = (200, searchset(outcome_entry(FAILED)))
        optional_failed = client.post(PATIENT_VIEW, json=dict(request, fhirServer=server.base))
        assert optional_failed.status_code == 200
        assert "AdverseEvents could not be read (server returned OperationOutcome)" in _quality(optional_failed)
        routes["/Condition"] = (200, searchset(outcome_entry(FAILED)))
        required_failed = client.post(PATIENT_VIEW, json=dict(request, fhirServer=server.base))
    assert required_failed.status_code == 412
    assert "Conditions: server returned OperationOutcome" in required_failed.get_json()["issue"][0]["diagnostics"]


# --- medicationReference -----------------------------------------------------------------------------------


def _record(ref: str, rtype: str = "MedicationRequest") -> dict:
    return {"resourceType": rtype, "id": ref.replace("/", "-"), "medicationReference": {"reference": ref}}


def test_medication_ids_to_fetch() -> None:
    base = "https://ehr.example/fhir"
    records = [
        _record("Medication/m1"), _record("Medication/m1", "MedicationStatement"),  # once
        _record("Medication/m2/_history/3", "MedicationAdministration"),
        _record(f"{base}/Medication/m3"),
        _record("https://other.example/fhir/Medication/m4"),  # another server: never fetched
        _record("#contained"), _record("urn:uuid:5b1f"), _record("Medication/present"),
        _record("urn:uuid:in-bundle"), _record("Medication/in-bundle-by-url"),
        {"resourceType": "Observation", "id": "o", "medicationReference": {"reference": "Medication/x"}},
        {"resourceType": "MedicationRequest", "id": "cc", "medicationCodeableConcept": {"text": "x"}},
        {"resourceType": "MedicationRequest", "id": "bad", "medicationReference": "Medication/m9"},
    ]
    present = [{"resourceType": "Medication", "id": "present"}]
    full_urls = {"urn:uuid:in-bundle", "Medication/in-bundle-by-url"}
    assert medication_ids_to_fetch(records, present, full_urls, base) == ["m1", "m2", "m3"]
    assert medication_ids_to_fetch(records, present, full_urls, None) == ["m1", "m2"]


def _with_ici_as_reference(full: dict, ref: str = "Medication/med-atezo") -> dict:
    request = copy.deepcopy(full)
    for entry in request["prefetch"]["medicationStatements"]["entry"]:
        statement = entry["resource"]
        if statement["medicationCodeableConcept"]["coding"][0]["code"] == "1792776":
            del statement["medicationCodeableConcept"]
            statement["medicationReference"] = {"reference": ref}
    return request


def test_a_server_side_medication_is_fetched_and_gives_the_same_cards(full, tmp_path) -> None:
    client = _client(tmp_path, full)
    expected = client.post(PATIENT_VIEW, json=full).get_json()
    with RouteServer({"/Medication/med-atezo": (200, ATEZOLIZUMAB)}) as server:
        response = client.post(PATIENT_VIEW, json=dict(_with_ici_as_reference(full), fhirServer=server.base))
    assert server.paths == ["/fhir/Medication/med-atezo"]
    strip = lambda cards: mask_uuids({"cards": cards})["cards"]  # noqa: E731
    assert strip(response.get_json()["cards"]) == strip(expected["cards"])


def test_a_medication_in_the_prefetch_is_not_fetched(full, tmp_path) -> None:
    request = _with_ici_as_reference(full, "urn:uuid:7d1c")
    request["prefetch"]["medicationStatements"]["entry"].append(
        {"fullUrl": "urn:uuid:7d1c", "resource": ATEZOLIZUMAB, "search": {"mode": "include"}})
    with RouteServer({}) as server:
        response = _client(tmp_path, full).post(PATIENT_VIEW, json=dict(request, fhirServer=server.base))
    assert response.status_code == 200
    assert server.paths == []


@pytest.mark.parametrize("status", [404, 500])
def test_an_unreadable_medication_is_named_never_412(status, full, tmp_path) -> None:
    request = _with_ici_as_reference(full)
    with RouteServer({"/Medication/med-atezo": (status, FAILED)}) as server:
        response = _client(tmp_path, full).post(PATIENT_VIEW, json=dict(request, fhirServer=server.base))
        gathered = gather(dict(request, fhirServer=server.base), SETTINGS)
    assert response.status_code == 200
    assert gathered.unavailable == (
        f"1 Medication referenced by medication records could not be read (HTTP {status})",)


def test_without_fhir_server_a_referenced_medication_is_named(full, tmp_path) -> None:
    request = _with_ici_as_reference(full)
    assert _client(tmp_path, full).post(PATIENT_VIEW, json=request).status_code == 200
    assert gather(request, SETTINGS).unavailable == (
        "1 Medication referenced by medication records could not be read (no fhirServer)",)


def test_the_medication_fetch_shares_the_call_deadline(full, tmp_path) -> None:
    hung = HungServer().start()
    request = dict(_with_ici_as_reference(full), fhirServer=hung.base_url)
    try:
        started = time.monotonic()
        response = _client(tmp_path, full).post(PATIENT_VIEW, json=request)
        elapsed = time.monotonic() - started
        gathered = gather(request, Settings(auth_mode="off", fhir_allowlist=("*",), fhir_deadline=1.0))
    finally:
        hung.stop()
    assert response.status_code == 200 and elapsed < 5.0
    assert gathered.unavailable == ("1 Medication referenced by medication records could not be read (timed out)",)


def test_fetch_referenced_medications_runs_concurrently_and_keeps_only_the_requested_medication() -> None:
    records = [_record(f"Medication/m{n}") for n in range(4)]
    wrong = dict(ATEZOLIZUMAB, id="someone-else")
    routes = {f"/Medication/m{n}": (200, dict(ATEZOLIZUMAB, id=f"m{n}")) for n in range(3)} | {
        "/Medication/m3": (200, wrong)}
    with RouteServer(routes) as server:
        out = fetch_referenced_medications(records, server.base, "tok", Settings(fhir_allowlist=("*",)))
    assert sorted(m["id"] for m in out.medications) == ["m0", "m1", "m2"]
    assert out.unavailable == ("1 Medication referenced by medication records could not be read "
                               "(not the requested Medication)",)



def test_a_draft_order_medication_reference_is_fetched_too(full) -> None:
    draft = {"resourceType": "MedicationRequest", "id": "draft-1", "status": "draft", "intent": "order",
             "subject": {"reference": f"Patient/{full['context']['patientId']}"},
             "medicationReference": {"reference": "Medication/med-atezo"}}
    context = dict(full["context"], draftOrders={"resourceType": "Bundle", "entry": [{"resource": draft}]})
    with RouteServer({"/Medication/med-atezo": (200, ATEZOLIZUMAB)}) as server:
        gathered = gather(dict(full, hook="order-sign", context=context, fhirServer=server.base), SETTINGS)
    assert server.paths == ["/fhir/Medication/med-atezo"]
    assert ATEZOLIZUMAB in gathered.resources and gathered.unavailable == ()
