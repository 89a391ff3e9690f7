"""GET /metrics (service/metrics.py): Prometheus text, counts by service/hook/status, no patient data in labels;
and every 4xx log line carries its reason code (service-contract.md §11)."""

from __future__ import annotations

import copy
import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service import create_app
from service.config import Settings
from tests.service.support import evaluated_at, fixture_request

PATIENT_VIEW = "/cds-services/hcc-second-line-patient-view"


@pytest.fixture
def client(tmp_path):
    request = fixture_request("systemic-atezo-bev")
    now = evaluated_at(request)
    settings = Settings(auth_mode="off", feedback_db=f"sqlite:///{tmp_path}/m.sqlite3")
    return create_app(settings, clock=lambda: now).test_client()


def _samples(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def test_requests_and_cards_are_counted_without_patient_data(client) -> None:
    request = fixture_request("systemic-atezo-bev")
    before = _samples(client)
    assert client.post(PATIENT_VIEW, json=request).status_code == 200
    assert client.post("/cds-services/no-such-service", json=request).status_code == 404
    after = _samples(client)
    key = ("hcc_cds_requests_total", (("endpoint", "/cds-services/<service_id>"), ("hook", "patient-view"),
                                      ("service", "hcc-second-line-patient-view"), ("status", "200")))
    assert after[key] - before.get(key, 0) == 1
    unknown = ("hcc_cds_requests_total", (("endpoint", "/cds-services/<service_id>"), ("hook", "-"),
                                          ("service", "-"), ("status", "404")))
    assert after[unknown] - before.get(unknown, 0) == 1
    cards = {k: v - before.get(k, 0) for k, v in after.items() if k[0] == "hcc_cds_cards_total"}
    assert sum(cards.values()) >= 1
    text = client.get("/metrics").get_data(as_text=True)
    assert request["context"]["patientId"] not in text and "no-such-service" not in text


def test_every_4xx_log_line_carries_its_reason(client, capsys) -> None:
    request = fixture_request("systemic-atezo-bev")
    no_patient = copy.deepcopy(request)
    del no_patient["context"]["patientId"]
    cases = {
        "not-json": client.post(PATIENT_VIEW, data=b"{", content_type="application/json"),
        "wrong-hook": client.post("/cds-services/hcc-second-line-order-sign", json=request),
        "invalid-request": client.post(PATIENT_VIEW, json=no_patient),
        "unknown-service": client.post("/cds-services/nope", json=request),
        "required-data-unobtainable": client.post(PATIENT_VIEW, json=dict(request, prefetch={})),
        "method-not-allowed": client.get(PATIENT_VIEW),
    }
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if '"event":"request"' in line]
    reasons = [line.get("reason") for line in lines if line["status"] >= 400]
    assert reasons == list(cases)
    assert all(response.status_code >= 400 for response in cases.values())
    assert request["context"]["patientId"] not in json.dumps(lines)
