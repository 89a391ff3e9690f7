"""The record index and JSON parsing after issue 12's performance work: what an independent review checked.

The new fast path of the patient filter took any resource whose subject is the patient, a Patient of another
patient included (fixed: a Patient belongs by its id alone); deep nesting is the documented parser difference."""

from __future__ import annotations

import json
from datetime import date

import pytest

from cards.patient import read_patient
from cards.record import PatientRecord
from service import create_app, jsonparse
from service.config import Settings
from tests.service.support import fixture_request


def test_a_patient_resource_of_another_patient_is_left_out_even_with_a_subject_element() -> None:
    """cards/record.py PatientRecord.__init__: the new fast path accepts any resource whose subject.reference is
    Patient/<own>, before _belongs_to's rule that a Patient belongs only when its id is the patient's."""
    resources = [
        {"resourceType": "Patient", "id": "other", "birthDate": "1990-01-01", "deceasedBoolean": True,
         "subject": {"reference": "Patient/p1"}},
        {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"},
    ]
    record = PatientRecord(resources, "p1")
    assert record.other_patient == ["Patient/other"]
    facts = read_patient(record, date(2026, 1, 1))
    assert (facts.age_years, facts.deceased) == (76, False)


def test_nesting_within_orjson_s_limit_is_parsed_and_answered_beyond_it_refused() -> None:
    """The one documented difference besides big integers (service/jsonparse.py): json.loads raises RecursionError
    near 1,000 levels (the recursion limit minus the caller's stack), orjson parses up to 1,024. A request that deep
    is answered like any other (nothing in the service recurses over it); deeper is refused as before."""
    document = b"[" * 1000 + b"]" * 1000
    with pytest.raises(RecursionError):
        json.loads(document)
    assert jsonparse.loads(document) is not None
    with pytest.raises(RecursionError):
        jsonparse.loads(b"[" * 1100 + b"]" * 1100)

    client = create_app(Settings(auth_mode="off", feedback_db="sqlite://")).test_client()
    body = json.dumps(fixture_request("systemic-atezo-bev"))
    for depth, status in ((1010, 200), (1030, 400)):
        deep = body.replace('"context": {', '"context": {"deep": ' + "[" * depth + "]" * depth + ", ", 1)
        response = client.post("/cds-services/hcc-second-line-patient-view", data=deep,
                               content_type="application/json")
        assert response.status_code == status, response.get_data(as_text=True)[:200]
