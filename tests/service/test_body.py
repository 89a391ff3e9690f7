"""Request bodies (service/body.py): hostile input is a JSON 400, never a 500.

Issue 10 #1: a lone UTF-16 surrogate ("\\ud800") in hook, feedback outcome, patientId or a draft-order id gave 500
(the value could not be encoded again for the error message and the log line). The invalid chunk size is tested
through gunicorn in test_production.py.
"""

from __future__ import annotations

import copy
import json

import pytest

from service import create_app
from service.config import Settings
from tests.service.support import fixture_request

PATIENT_VIEW = "/cds-services/hcc-second-line-patient-view"
ORDER_SIGN = "/cds-services/hcc-second-line-order-sign"
FEEDBACK = PATIENT_VIEW + "/feedback"


@pytest.fixture
def client(tmp_path):
    return create_app(Settings(auth_mode="off", feedback_db=f"sqlite:///{tmp_path}/b.sqlite3")).test_client()


def _hook() -> tuple[str, dict]:
    return PATIENT_VIEW, dict(fixture_request("systemic-atezo-bev"), hook="\ud800")


def _patient_id() -> tuple[str, dict]:
    body = copy.deepcopy(fixture_request("systemic-atezo-bev"))
    body["context"]["patientId"] = "\ud800"
    return PATIENT_VIEW, body


def _feedback_outcome() -> tuple[str, dict]:
    return FEEDBACK, {"feedback": [{"card": "c1", "outcome": "\ud800", "outcomeTimestamp": "2026-11-20T09:00:00Z"}]}


def _draft_order_id() -> tuple[str, dict]:
    body = copy.deepcopy(fixture_request("lenvatinib-12mg-55kg", "order-sign"))
    body["context"]["draftOrders"]["entry"][0]["resource"]["id"] = "\ud800"
    return ORDER_SIGN, body


@pytest.mark.parametrize("case", [_hook, _patient_id, _feedback_outcome, _draft_order_id],
                         ids=["hook", "patientId", "feedback-outcome", "draft-order-id"])
@pytest.mark.parametrize("encoding", ["escaped", "raw-bytes"])
def test_lone_surrogate_is_a_json_400(client, case, encoding, capsys) -> None:
    url, body = case()
    data = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as the escape \ud800
    if encoding == "raw-bytes":
        data = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    response = client.post(url, data=data, content_type="application/json")
    assert response.status_code == 400
    assert "lone UTF-16 surrogate" in response.get_json()["issue"][0]["diagnostics"]
    assert '"reason":"lone-surrogate"' in capsys.readouterr().err


def test_surrogate_pairs_are_fine(client) -> None:
    body = copy.deepcopy(fixture_request("systemic-atezo-bev"))
    body["hookInstance"] = "emoji-\ud83d\ude00"  # a valid pair, escaped as JSON does
    response = client.post(PATIENT_VIEW, data=json.dumps(body).encode(), content_type="application/json")
    assert response.status_code == 200
