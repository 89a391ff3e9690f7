"""Patients in the shapes real EHRs send (issue 12), through real FHIR server processes.

The four real-EHR-shaped fixtures in ``fixtures/patients/`` (epic-medication-reference, mcode-style,
oracle-health-style, us-core-style) must give the same cards by full prefetch and by FHIR queries against
``tests/service/ehr_fhir_process.py`` (Epic-style: empty searches answer with a 4101 warning OperationOutcome
entry; Medications only on the server), and through ``tests/service/mangling_proxy.py``, which mangles an
unencoded ``|`` as the SMART launcher's proxy did.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest
import requests

from service import create_app
from service.cli import mask_uuids, parse_now, request_from_bundle
from service.config import Settings
from tests.service.processes import EHR_SERVER, MANGLING_PROXY, server_process
from tests.service.support import PATIENTS_DIR

pytestmark = pytest.mark.integration
PATIENT_VIEW = "/cds-services/hcc-second-line-patient-view"
REAL_EHR = PATIENTS_DIR  # the four real-EHR-shaped fixtures live beside the minimal ones
NAMES = ["epic-medication-reference", "mcode-style", "oracle-health-style", "us-core-style"]


def bundle(name: str) -> dict:
    return json.loads((REAL_EHR / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(EHR FHIR base, request log, proxy FHIR base, proxy log): one server process with every fixture."""
    logs = tmp_path_factory.mktemp("ehr")
    ehr_log, proxy_log = logs / "ehr.log", logs / "proxy.log"
    files = [str(REAL_EHR / f"{name}.json") for name in NAMES]
    with server_process(EHR_SERVER, *files, "--page-size", "3", "--no-results-outcome", "--log", str(ehr_log)) as ehr, \
            server_process(MANGLING_PROXY, ehr, "--log", str(proxy_log)) as proxy:
        yield ehr, ehr_log, proxy, proxy_log


def _client(tmp_path, now):
    # generous FHIR bounds: these tests compare cards, not timings, on a machine shared with other test runs
    settings = Settings(auth_mode="off", feedback_db=f"sqlite:///{tmp_path}/db.sqlite3", fhir_allowlist=("*",),
                        fhir_read_timeout=8.0, fhir_deadline=15.0)
    return create_app(settings, clock=lambda: now).test_client()


def _cards(client, request: dict) -> dict:
    response = client.post(PATIENT_VIEW, json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    return mask_uuids(response.get_json())


def _prefetch_and_fhir(name: str, base: str, tmp_path) -> tuple[dict, dict]:
    full = request_from_bundle(bundle(name))
    client = _client(tmp_path, parse_now(full["extension"]["hcc-cds.fixture"]["evaluatedAt"]))
    by_prefetch = _cards(client, dict(full, fhirServer=base))
    by_fhir = _cards(client, dict(full, prefetch={}, fhirServer=base))
    return by_prefetch, by_fhir


def _topics(response: dict) -> list[str]:
    return sorted(card["source"]["topic"]["code"] for card in response["cards"])


@pytest.mark.parametrize("name", NAMES)
def test_prefetch_and_fhir_queries_give_the_same_cards(name, servers, tmp_path) -> None:
    ehr, _log, _proxy, _plog = servers
    by_prefetch, by_fhir = _prefetch_and_fhir(name, ehr, tmp_path)
    assert by_fhir == by_prefetch


@pytest.mark.parametrize("name", NAMES)
def test_behind_a_proxy_that_mangles_a_bare_pipe_the_cards_are_the_same(name, servers, tmp_path) -> None:
    ehr, _log, proxy, proxy_log = servers
    full = request_from_bundle(bundle(name))
    client = _client(tmp_path, parse_now(full["extension"]["hcc-cds.fixture"]["evaluatedAt"]))
    proxy_log.write_text("")
    through_proxy = _cards(client, dict(full, prefetch={}, fhirServer=proxy))
    assert through_proxy == _cards(client, dict(full, fhirServer=ehr))
    targets = proxy_log.read_text().splitlines()
    observation_queries = [t for t in targets if t.startswith("/fhir/Observation?")]
    assert observation_queries and all("|" not in t for t in targets)
    assert all("code=http%3A%2F%2Floinc.org%7C" in t for t in observation_queries[:1])


def test_the_proxy_really_loses_data_for_an_unencoded_pipe(servers) -> None:
    """The proxy is a meaningful test: the same search with a raw ``|`` comes back empty through it."""
    _ehr, _log, proxy, _plog = servers
    parts = urlsplit(proxy)
    patient = "mcode-style-patient"

    def total(target: str) -> int:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        connection.putrequest("GET", target, skip_accept_encoding=True)  # sent byte for byte
        connection.endheaders()
        body = json.loads(connection.getresponse().read())
        connection.close()
        return body["total"]

    encoded = f"/fhir/Observation?patient={patient}&code=http%3A%2F%2Floinc.org%7C1751-7"
    assert total(encoded) == 2
    assert total(f"/fhir/Observation?patient={patient}&code=http://loinc.org|1751-7") == 0


def test_epic_style_no_prefetch_reads_the_server_side_medications_and_4101_is_no_data(servers, tmp_path) -> None:
    ehr, ehr_log, _proxy, _plog = servers
    name = "epic-medication-reference"
    full = request_from_bundle(bundle(name))
    client = _client(tmp_path, parse_now(full["extension"]["hcc-cds.fixture"]["evaluatedAt"]))
    ehr_log.write_text("")
    response = client.post(PATIENT_VIEW, json=dict(full, prefetch={}, fhirServer=ehr))
    assert response.status_code == 200
    paths = [line.split("\t")[0] for line in ehr_log.read_text().splitlines()]
    assert sorted(p for p in paths if p.startswith("/fhir/Medication/")) == [
        f"/fhir/Medication/{name}-med-atezolizumab", f"/fhir/Medication/{name}-med-bevacizumab"]
    # AdverseEvent, BodyStructure, MedicationStatement, MedicationAdministration searches answered "4101"
    assert "could not be read" not in json.dumps(response.get_json())


def _as_codeable_concept(data: dict) -> dict:
    """The same patient with each medicationReference replaced by the referenced Medication's code."""
    medications = {f"Medication/{e['resource']['id']}": e["resource"] for e in data["entry"]
                   if e["resource"]["resourceType"] == "Medication"}
    entries = []
    for entry in data["entry"]:
        resource = dict(entry["resource"])
        if resource["resourceType"] == "Medication":
            continue
        ref = (resource.get("medicationReference") or {}).get("reference", "")
        if ref in medications:
            del resource["medicationReference"]
            resource["medicationCodeableConcept"] = medications[ref]["code"]
        entries.append(dict(entry, resource=resource))
    return dict(data, entry=entries)


def _reference_vs_codeable_concept(name: str, base: str, tmp_path) -> tuple[dict, dict]:
    by_reference = request_from_bundle(bundle(name))
    by_code = request_from_bundle(_as_codeable_concept(bundle(name)))
    client = _client(tmp_path, parse_now(by_code["extension"]["hcc-cds.fixture"]["evaluatedAt"]))
    return _cards(client, dict(by_reference, prefetch={}, fhirServer=base)), _cards(client, by_code)


def test_ici_as_medication_reference_to_a_server_side_medication_gives_the_codeable_concept_cards(
        servers, tmp_path) -> None:
    """US Core style: atezolizumab only as medicationReference to a Medication the server holds."""
    ehr, _log, _proxy, _plog = servers
    by_reference, by_code = _reference_vs_codeable_concept("us-core-style", ehr, tmp_path)
    assert "second-line-options" in _topics(by_code)
    assert by_reference == by_code


def test_epic_medication_reference_gives_the_codeable_concept_cards(servers, tmp_path) -> None:
    ehr, _log, _proxy, _plog = servers
    by_reference, by_code = _reference_vs_codeable_concept("epic-medication-reference", ehr, tmp_path)
    assert "second-line-options" in _topics(by_code)
    assert by_reference == by_code


@pytest.mark.parametrize("name", NAMES)
def test_each_real_ehr_patient_gets_the_second_line_card_after_first_line_ici(name, servers, tmp_path) -> None:
    ehr, _log, _proxy, _plog = servers
    _by_prefetch, by_fhir = _prefetch_and_fhir(name, ehr, tmp_path)
    assert "second-line-options" in _topics(by_fhir)
    card = next(c for c in by_fhir["cards"] if c["source"]["topic"]["code"] == "second-line-options")
    assessment = card["extension"]["hcc-cds.recommendation"]["assessment"]
    assert assessment["firstLine"]["regimen"] == "atezolizumab-bevacizumab"
    assert assessment["progression"]["documented"] is True
    for item in ("albi", "ecog", "afp"):
        assert assessment[item]["status"] == "current", item


def test_mcode_metastases_coded_128462008_take_the_organ_from_body_site(servers, tmp_path) -> None:
    ehr, _log, _proxy, _plog = servers
    _by_prefetch, by_fhir = _prefetch_and_fhir("mcode-style", ehr, tmp_path)
    card = next(c for c in by_fhir["cards"] if c["source"]["topic"]["code"] == "second-line-options")
    organs = card["extension"]["hcc-cds.recommendation"]["assessment"]["progression"]["organs"]
    assert set(organs) == {"liver", "lung", "lymph-node"}


def test_fixtures_are_dated_before_their_evaluation_time_with_current_labs() -> None:
    for name in NAMES:
        data = bundle(name)
        now = parse_now(data["timestamp"])
        resources = [e["resource"] for e in data["entry"]]
        assert sum(r["resourceType"] == "Patient" for r in resources) == 1, name
        assert all(r["id"].startswith(name) for r in resources), name
        for obs in (r for r in resources if r["resourceType"] == "Observation"):
            assert parse_now(obs["effectiveDateTime"]) < now, obs["id"]
        latest = {}
        for obs in (r for r in resources if r["resourceType"] == "Observation"):
            for coding in obs["code"]["coding"]:
                if coding["system"] == "http://loinc.org":
                    when = parse_now(obs["effectiveDateTime"])
                    latest[coding["code"]] = max(latest.get(coding["code"], when), when)
        needed = {"albumin": {"1751-7"}, "bilirubin": {"1975-2", "14631-6"}, "INR": {"6301-6"}, "ECOG": {"89247-1"},
                  "AFP": {"1834-1"}, "weight": {"29463-7"}}
        for what, codes in needed.items():
            dates = [latest[c] for c in codes if c in latest]
            assert dates and (now - max(dates)).days <= 30, f"{name}: {what} not current"


def test_paging_was_exercised(servers) -> None:
    """The server pages 3 per page, so every Observation search of these patients followed next links."""
    ehr, _log, _proxy, _plog = servers
    page = requests.get(f"{ehr}/Observation?patient=mcode-style-patient", timeout=5).json()
    assert page["total"] > 3 and any(link["relation"] == "next" for link in page["link"])

