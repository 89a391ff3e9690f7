"""The embedded demo FHIR endpoint: what the CDS Hooks sandbox, the SMART launcher and FHIR clients need
(service-contract.md §4, §8), through the Flask test client and through a real server + fhirclient."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from flask import Flask
from flask.testing import FlaskClient

from demo.fhir_endpoint import create_blueprint
from demo.fhirstore import FhirStore, patient_has_given_name
from tests.service.support import serving

LOINC = "http://loinc.org"
ALBUMIN, BILIRUBIN = "1751-7", "1975-2"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "patients"
N_OBSERVATIONS = 7


def observation(oid: str, patient: str, code: str, day: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": oid, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": f"2026-03-{day:02d}T08:00:00Z",
        "valueQuantity": {"value": 35.0, "unit": "g/L", "system": "http://unitsofmeasure.org", "code": "g/L"},
    }


def write_bundle(directory: Path, name: str, resources: list[dict[str, Any]]) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "timestamp": "2026-03-20T09:00:00Z",
              "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources]}
    (directory / name).write_text(json.dumps(bundle), encoding="utf-8")


@pytest.fixture
def fixtures_dir(tmp_path: Path) -> Path:
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "Lima", "given": ["Ana"]}],
         "gender": "female", "birthDate": "1958-06-30"},
    ]
    resources += [observation(f"o{i}", "p1", ALBUMIN if i % 2 else BILIRUBIN, i + 1)
                  for i in range(N_OBSERVATIONS)]
    write_bundle(tmp_path, "ana.json", resources)
    write_bundle(tmp_path, "ben.json", [
        {"resourceType": "Patient", "id": "p2", "name": [{"family": "Okafor", "given": ["Ben"]}]},
        observation("q1", "p2", ALBUMIN, 2),
    ])
    return tmp_path


def make_app(fixtures_dir: Path, **kwargs: Any) -> Flask:
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(fixtures_dir, shift_to=kwargs.pop("shift_to", None), **kwargs))
    return app


@pytest.fixture
def client(fixtures_dir: Path) -> FlaskClient:
    return make_app(fixtures_dir).test_client()


def follow_pages(client: FlaskClient, first: dict[str, Any], base_url: str) -> list[dict[str, Any]]:
    """All pages by following ``next`` links as given (absolute URLs)."""
    pages = [first]
    while nxt := [link["url"] for link in pages[-1]["link"] if link["relation"] == "next"]:
        assert nxt[0].startswith(base_url)
        response = client.get(nxt[0][len(base_url):], base_url=base_url)
        assert response.status_code == 200
        pages.append(response.get_json(force=True))
    return pages


# ---- metadata ------------------------------------------------------------------------------------


def test_metadata_is_json_without_accept_and_has_rest_security(client: FlaskClient) -> None:
    response = client.get("/fhir/metadata", headers={"Accept": ""})
    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"
    body = json.loads(response.data)
    assert body["resourceType"] == "CapabilityStatement"
    assert body["fhirVersion"] == "4.0.1"
    assert "json" in body["format"]
    rest = body["rest"][0]
    assert rest["mode"] == "server"
    assert rest["security"]["cors"] is True and rest["security"]["description"]
    by_type = {resource["type"]: resource for resource in rest["resource"]}
    assert {"Patient", "Practitioner", "Observation", "AdverseEvent", "BodyStructure"} <= set(by_type)
    assert {i["code"] for i in by_type["Observation"]["interaction"]} == {"read", "search-type"}
    assert {"patient", "code", "_id"} <= {p["name"] for p in by_type["Observation"]["searchParam"]}
    CapabilityStatement.model_validate(body)


def test_metadata_even_when_the_browser_asks_for_html(client: FlaskClient) -> None:
    response = client.get("/fhir/metadata", headers={"Accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"


# ---- read ----------------------------------------------------------------------------------------


def test_read_resource(client: FlaskClient) -> None:
    response = client.get("/fhir/Patient/p1")
    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"
    assert response.get_json(force=True)["name"][0]["given"] == ["Ana"]


@pytest.mark.parametrize("path", ["/fhir/Patient/nope", "/fhir/Nonsense/p1", "/fhir/Nonsense",
                                  "/fhir/Patient/p1/_history/1", "/fhir"])
def test_not_found_is_an_operation_outcome_with_cors(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.mimetype == "application/fhir+json"
    assert response.get_json(force=True)["resourceType"] == "OperationOutcome"
    assert response.headers.getlist("Access-Control-Allow-Origin") == ["*"]


@pytest.mark.parametrize(("method", "path"), [("PUT", "/fhir/Patient/p1"), ("DELETE", "/fhir/Patient/p1"),
                                              ("POST", "/fhir/Patient"), ("PATCH", "/fhir/Observation/o1")])
def test_writes_are_405_json(client: FlaskClient, method: str, path: str) -> None:
    response = client.open(path, method=method, json={"resourceType": "Patient", "id": "p1"})
    assert response.status_code == 405
    assert response.get_json(force=True)["issue"][0]["code"] == "not-supported"
    assert "GET" in response.headers["Allow"]
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# ---- search --------------------------------------------------------------------------------------


def test_search_returns_a_searchset_bundle(client: FlaskClient) -> None:
    response = client.get(f"/fhir/Observation?patient=p1&code={LOINC}|{ALBUMIN}")
    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"
    body = response.get_json(force=True)
    assert body["type"] == "searchset"
    assert body["total"] == 3
    assert [e["resource"]["id"] for e in body["entry"]] == ["o1", "o3", "o5"]
    assert all(e["search"] == {"mode": "match"} for e in body["entry"])
    assert body["entry"][0]["fullUrl"] == "http://localhost/fhir/Observation/o1"
    assert [link["relation"] for link in body["link"]] == ["self", "first"]
    Bundle.model_validate(body)


def test_get_patient_without_parameters_lists_all_patients(client: FlaskClient) -> None:
    response = client.get("/fhir/Patient", headers={"Authorization": "Bearer whatever"})
    assert response.status_code == 200
    body = response.get_json(force=True)
    assert [e["resource"]["id"] for e in body["entry"]] == ["p1", "p2"]


def test_there_is_always_a_practitioner(client: FlaskClient) -> None:
    body = client.get("/fhir/Practitioner").get_json(force=True)
    assert body["total"] >= 1
    assert body["entry"][0]["resource"]["name"][0]["given"]


def test_empty_search_result_has_no_entry_member(client: FlaskClient) -> None:
    body = client.get("/fhir/AdverseEvent?subject=Patient/p1").get_json(force=True)
    assert body["total"] == 0 and "entry" not in body
    Bundle.model_validate(body)


def test_paging_links_and_full_urls_use_the_request_host_and_prefix(client: FlaskClient) -> None:
    base = "http://proxy.example:9999/x"
    response = client.get("/fhir/Observation?patient=Patient/p1&_count=3", base_url=base)
    first = response.get_json(force=True)
    assert first["total"] == N_OBSERVATIONS
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert links["self"].startswith(f"{base}/fhir/Observation?")
    assert parse_qs(urlsplit(links["next"]).query) == {
        "patient": ["Patient/p1"], "_count": ["3"], "_offset": ["3"]}
    assert first["entry"][0]["fullUrl"] == f"{base}/fhir/Observation/o0"

    pages = follow_pages(client, first, base)
    assert len(pages) == 3
    seen = [e["resource"]["id"] for page in pages for e in page.get("entry", [])]
    assert seen == [f"o{i}" for i in range(N_OBSERVATIONS)]  # every result once, in a stable order
    last_links = {link["relation"]: link["url"] for link in pages[-1]["link"]}
    assert "next" not in last_links
    assert parse_qs(urlsplit(last_links["previous"]).query)["_offset"] == ["3"]
    assert all(e["fullUrl"].startswith(f"{base}/fhir/") for page in pages for e in page["entry"])


def test_post_search_with_form_body_equals_get(client: FlaskClient) -> None:
    query = {"patient": "p1", "code": f"{LOINC}|{BILIRUBIN},{LOINC}|{ALBUMIN}", "_count": "4"}
    got = client.get("/fhir/Observation", query_string=query).get_json(force=True)
    posted = client.post("/fhir/Observation/_search", data=query).get_json(force=True)
    assert posted["total"] == got["total"] == N_OBSERVATIONS
    assert posted["entry"] == got["entry"]
    assert posted["link"] == got["link"]


def test_post_search_merges_query_string_and_body(client: FlaskClient) -> None:
    body = client.post("/fhir/Observation/_search?patient=p2", data={"code": f"{LOINC}|{ALBUMIN}"})
    assert [e["resource"]["id"] for e in body.get_json(force=True)["entry"]] == ["q1"]


def test_post_search_with_json_body_is_rejected_not_misread(client: FlaskClient) -> None:
    response = client.post("/fhir/Observation/_search", json={"patient": "p1"})
    assert response.status_code == 415
    assert response.get_json(force=True)["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("query", ["patient=p1&date=ge2026-01-01", "code:text=albumin", "_count=many",
                                   "_count=-1", "patient=", "_include=Observation:subject", "_summary=nope"])
def test_bad_search_is_400_operation_outcome(client: FlaskClient, query: str) -> None:
    response = client.get(f"/fhir/Observation?{query}")
    assert response.status_code == 400
    body = response.get_json(force=True)
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["diagnostics"]
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_count_above_maximum_is_capped_and_summary_count_gives_total_only(client: FlaskClient) -> None:
    capped = client.get("/fhir/Observation?_count=5000").get_json(force=True)
    assert "_count=1000" in capped["link"][0]["url"]
    assert len(capped["entry"]) == capped["total"] == N_OBSERVATIONS + 1
    counted = client.get("/fhir/Observation?patient=p1&_summary=count").get_json(force=True)
    assert counted["total"] == N_OBSERVATIONS and "entry" not in counted


def test_xml_format_is_406(client: FlaskClient) -> None:
    assert client.get("/fhir/Patient?_format=xml").status_code == 406
    assert client.get("/fhir/Patient?_format=application/fhir%2Bjson").status_code == 200


# ---- CORS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/fhir/metadata", "/fhir/Observation/_search", "/fhir/Patient/p1",
                                  "/fhir/Nonsense/x/y"])
def test_preflight_without_token(client: FlaskClient, path: str) -> None:
    response = client.options(path, headers={
        "Origin": "https://launch.smarthealthit.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert 200 <= response.status_code < 300
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed


def test_cors_header_is_set_once_even_if_the_app_sets_it_too(fixtures_dir: Path) -> None:
    app = make_app(fixtures_dir)

    @app.after_request
    def app_cors(response):  # what an app-wide CORS module may do
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    response = app.test_client().get("/fhir/Patient/nope", headers={"Origin": "http://x.example"})
    assert response.headers.getlist("Access-Control-Allow-Origin") == ["*"]


# ---- loading -------------------------------------------------------------------------------------


def test_dates_are_shifted_to_the_requested_day(fixtures_dir: Path) -> None:
    client = make_app(fixtures_dir, shift_to="2026-03-30").test_client()  # bundle timestamp 2026-03-20: +10
    shifted = client.get("/fhir/Observation/o0").get_json(force=True)
    assert shifted["effectiveDateTime"] == "2026-03-11T08:00:00Z"


def test_missing_or_empty_fixture_directory_serves_an_empty_server(tmp_path: Path) -> None:
    for directory in (tmp_path / "missing", tmp_path):
        client = make_app(directory).test_client()
        assert client.get("/fhir/Patient").get_json(force=True)["total"] == 0
        assert client.get("/fhir/Practitioner").get_json(force=True)["total"] == 1


def test_bundled_fixture_patients_load_and_suit_the_smart_launcher() -> None:
    files = sorted(FIXTURES.glob("*.json"))
    assert len(files) >= 14
    for file in files:
        bundle = json.loads(file.read_text(encoding="utf-8"))
        assert bundle.get("type") == "collection" and bundle.get("timestamp"), file.name
    store = FhirStore.from_directory(FIXTURES)  # no duplicate type/id across the files
    assert store.patients()
    for patient in store.patients():
        assert patient_has_given_name(patient), f"Patient/{patient['id']} has no name[0].given"

    client = make_app(FIXTURES, shift_to="today").test_client()
    listed = client.get("/fhir/Patient?_count=1000").get_json(force=True)
    assert listed["total"] == len(store.patients())
    assert client.get("/fhir/Practitioner").get_json(force=True)["total"] >= 1


# ---- a real server and a real FHIR client --------------------------------------------------------


@pytest.fixture
def live_base(fixtures_dir: Path) -> Iterator[str]:
    import logging

    from werkzeug.serving import make_server

    # As service.logs does for ``hcc-cds serve``: no request lines (they carry patient ids in query strings).
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with serving(make_server("127.0.0.1", 0, make_app(fixtures_dir), threaded=True)) as port:
        yield f"http://127.0.0.1:{port}/fhir"


@pytest.mark.integration
def test_fhirclient_reads_capability_pages_search_and_reads(live_base: str) -> None:
    from fhirclient import server as fhir_server
    from fhirclient.models.observation import Observation
    from fhirclient.models.patient import Patient

    fhir = fhir_server.FHIRServer(None, base_uri=live_base)
    fhir.get_capability()
    assert fhir.capabilityStatement.rest[0].security.cors is True

    search = Observation.where(struct={"patient": "p1", "_count": "2"})
    pages = list(search.perform_iter(fhir))
    assert len(pages) == 4  # 7 observations, 2 per page
    observations = [entry.resource for page in pages for entry in page.entry or []]
    assert [o.id for o in observations] == [f"o{i}" for i in range(N_OBSERVATIONS)]
    assert all(o.subject.reference == "Patient/p1" for o in observations)

    albumin = Observation.where(struct={"patient": "Patient/p1", "code": f"{LOINC}|{ALBUMIN}"})
    assert [o.id for o in albumin.perform_resources_iter(fhir)] == ["o1", "o3", "o5"]

    patient = Patient.read("p1", fhir)
    assert patient.name[0].given == ["Ana"]


def test_post_search_without_content_type_reads_the_body_as_a_form(tmp_path) -> None:
    """Never wrong data: a form body without Content-Type must not be ignored (which would list everyone)."""
    from flask import Flask

    from demo.fhir_endpoint import create_blueprint

    app = Flask("demo-no-content-type")
    app.register_blueprint(create_blueprint(FIXTURES, shift_to=None))
    client = app.test_client()
    get_total = client.get("/fhir/Observation?patient=oligoprogression-patient").get_json()["total"]
    post = client.post("/fhir/Observation/_search", data=b"patient=oligoprogression-patient",
                       headers={"Content-Type": ""})
    assert post.status_code == 200
    assert post.get_json()["total"] == get_total > 0


def test_sort_by_date_ascending_and_descending(client: FlaskClient) -> None:
    def dates(query: str) -> list[str]:
        bundle = client.get(f"/fhir/Observation?patient=p1&_sort={query}").get_json()
        return [e["resource"]["effectiveDateTime"] for e in bundle["entry"]]

    ascending, descending = dates("date"), dates("-date")
    assert ascending == sorted(ascending) and descending == sorted(descending, reverse=True)
    assert ascending != descending


def test_sort_key_that_cannot_be_applied_is_400_under_strict_handling(client: FlaskClient) -> None:
    strict = client.get("/fhir/Observation?patient=p1&_sort=value-quantity", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert "value-quantity" in strict.get_json()["issue"][0]["diagnostics"]


def test_sort_key_that_cannot_be_applied_is_left_out_of_the_self_link_when_lenient(client: FlaskClient) -> None:
    lenient = client.get("/fhir/Observation?patient=p1&_sort=value-quantity").get_json()
    self_link = next(link["url"] for link in lenient["link"] if link["relation"] == "self")
    assert "_sort" not in self_link


def test_applied_sort_stays_in_the_paging_links(client: FlaskClient) -> None:
    bundle = client.get("/fhir/Observation?patient=p1&_sort=-date&_count=2").get_json()
    assert all("_sort=-date" in link["url"] for link in bundle["link"])
