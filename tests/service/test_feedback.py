"""Feedback endpoint, issued-card bookkeeping and the feedback report (checklist §1.I F1–F5, §4)."""

from __future__ import annotations

import copy
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from service import create_app
from service.config import Settings
from service.db import FeedbackRecord, IssuedCard
from service.feedback import (
    MAX_ITEMS,
    NO_REASON,
    card_type_of,
    feedback_report,
    feedback_report_data,
    parse_rfc3339,
    record_issued_cards,
)

SERVICE = "hcc-second-line-order-sign"
URL = f"/cds-services/{SERVICE}/feedback"
REASONS = "http://example.org/cds-services/fhir/CodeSystem/override-reasons"
SECRET_COMMENT = "Comment naming Jane Q. Patient, born 1961-02-03, MRN 778899"

# The CDS Hooks 2.0 §feedback examples.
SPEC_ACCEPTED = {
    "feedback": [{
        "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
        "outcomeTimestamp": "2021-12-11T10:05:31Z",
    }]
}
SPEC_OVERRIDDEN = {
    "feedback": [{
        "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
        "outcome": "overridden",
        "outcomeTimestamp": "2020-12-11T00:00:00Z",
    }]
}
SPEC_OVERRIDE_REASON = {
    "feedback": [{
        "card": "9368d37b-283f-44a0-93ea-547cebab93ee",
        "outcome": "overridden",
        "overrideReason": {
            "reason": {"code": "d7ad9c9b-f4b0-4c8a-99a1-0e5ec8f7e0c1", "system": REASONS,
                       "display": "Patient refused"},
            "userComment": "clinician entered comment",
        },
        "outcomeTimestamp": "2020-12-11T00:00:00Z",
    }]
}
# What the CDS Hooks sandbox sends: ms timestamps; a reason with code and maybe system, no display/comment.
SANDBOX_ACCEPTED = {
    "feedback": [{
        "card": "0b9a6f1e-6a53-4a36-9d0e-1d1b5b1f0a01",
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": "1f7c3c1e-7c55-4f0c-8d0e-2a2b5b1f0a02"}],
        "outcomeTimestamp": "2026-05-09T10:11:12.345Z",
    }]
}
SANDBOX_OVERRIDE_CODE_ONLY = {
    "feedback": [{
        "card": "0b9a6f1e-6a53-4a36-9d0e-1d1b5b1f0a03",
        "outcome": "overridden",
        "overrideReason": {"reason": {"code": "patient-declined"}},
        "outcomeTimestamp": "2026-05-09T10:11:13.000Z",
    }]
}
SANDBOX_OVERRIDE_WITH_SYSTEM = {
    "feedback": [{
        "card": "0b9a6f1e-6a53-4a36-9d0e-1d1b5b1f0a04",
        "outcome": "overridden",
        "overrideReason": {"reason": {"code": "already-discussed", "system": REASONS}},
        "outcomeTimestamp": "2026-05-09T10:11:14.999Z",
    }]
}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/fb.sqlite3"


@pytest.fixture
def app(db_url: str):
    app = create_app(Settings(auth_mode="off", feedback_db=db_url))
    yield app
    app.extensions["hcc_cds_engine"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def rows(app) -> list[FeedbackRecord]:
    with app.extensions["hcc_cds_db"]() as session:
        return list(session.scalars(select(FeedbackRecord).order_by(FeedbackRecord.id)))


def accepted(card: str, *suggestions: str, ts: str = "2026-05-09T10:00:00.000Z") -> dict:
    return {"card": card, "outcome": "accepted", "acceptedSuggestions": [{"id": s} for s in suggestions],
            "outcomeTimestamp": ts}


def overridden(card: str, code: str | None = None, system: str | None = None, comment: str | None = None,
               ts: str = "2026-05-09T10:00:00.000Z") -> dict:
    item: dict = {"card": card, "outcome": "overridden", "outcomeTimestamp": ts}
    reason = {k: v for k, v in (("code", code), ("system", system)) if v}
    if reason or comment:
        item["overrideReason"] = {}
        if reason:
            item["overrideReason"]["reason"] = reason
        if comment:
            item["overrideReason"]["userComment"] = comment
    return item


def card(uuid: str, topic: str | None = None, check: str | None = None) -> dict:
    result: dict = {"uuid": uuid, "summary": "s", "indicator": "info", "source": {"label": "hcc-cds"}}
    if topic:
        result["source"]["topic"] = {"system": "urn:x", "code": topic, "display": topic}
    if check:
        result["extension"] = {"hcc-cds.orderCheck": {"check": check, "draftOrder": "MedicationRequest/1"}}
    return result


# ---------------------------------------------------------------------------------------------------------
# Endpoint


def test_accepted_feedback_is_stored(app, client) -> None:
    body = {"feedback": [accepted("card-1", "sugg-a", "sugg-b", ts="2026-05-09T10:11:12.345Z")]}
    response = client.post(URL, json=body)
    assert response.status_code == 200
    assert response.get_json() == {"received": 1, "stored": 1}
    [row] = rows(app)
    assert (row.card_uuid, row.service_id, row.outcome) == ("card-1", SERVICE, "accepted")
    assert row.card_type == "unknown"
    assert row.accepted_suggestions == "sugg-a,sugg-b"
    assert row.override_system is None and row.override_code is None
    stamp = row.outcome_timestamp
    stamp = stamp.astimezone(UTC).replace(tzinfo=None) if stamp.tzinfo else stamp
    assert stamp == datetime(2026, 5, 9, 10, 11, 12, 345000)


@pytest.mark.parametrize(
    "body",
    [SPEC_ACCEPTED, SPEC_OVERRIDDEN, SPEC_OVERRIDE_REASON,
     SANDBOX_ACCEPTED, SANDBOX_OVERRIDE_CODE_ONLY, SANDBOX_OVERRIDE_WITH_SYSTEM],
    ids=["spec-accepted", "spec-overridden", "spec-override-reason",
         "sandbox-accepted", "sandbox-override-code-only", "sandbox-override-with-system"],
)
def test_spec_and_sandbox_bodies_accepted(app, client, body: dict) -> None:
    response = client.post(URL, json=body)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"received": 1, "stored": 1}
    [row] = rows(app)
    item = body["feedback"][0]
    assert row.card_uuid == item["card"] and row.outcome == item["outcome"]
    reason = item.get("overrideReason", {}).get("reason", {})
    assert row.override_code == reason.get("code")
    assert row.override_system == reason.get("system")


def test_batch_of_several_cards(app, client) -> None:
    body = {"feedback": SPEC_ACCEPTED["feedback"] + SANDBOX_OVERRIDE_CODE_ONLY["feedback"]}
    response = client.post(URL, json=body)
    assert response.status_code == 200
    assert response.get_json() == {"received": 2, "stored": 2}
    assert len(rows(app)) == 2


def test_offset_timestamp_is_normalised_to_utc(app, client) -> None:
    body = {"feedback": [accepted("card-tz", "s", ts="2026-05-09T12:00:00.5+02:00")]}
    assert client.post(URL, json=body).status_code == 200
    stamp = rows(app)[0].outcome_timestamp
    stamp = stamp.astimezone(UTC).replace(tzinfo=None) if stamp.tzinfo else stamp
    assert stamp == datetime(2026, 5, 9, 10, 0, 0, 500000)


@pytest.mark.parametrize(
    "item",
    [
        {"card": "c", "outcome": "ignored", "outcomeTimestamp": "2026-05-09T10:00:00Z"},
        {"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-05-09T10:00:00Z"},
        {"card": "c", "outcome": "accepted", "acceptedSuggestions": [],
         "outcomeTimestamp": "2026-05-09T10:00:00Z"},
        {"outcome": "overridden", "outcomeTimestamp": "2026-05-09T10:00:00Z"},
        {"card": "c", "outcome": "overridden"},
        {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-13-45T10:00:00Z"},
        {"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"},
        {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-05-09T10:00:00"},
    ],
    ids=["ignored", "accepted-without-suggestions", "accepted-empty-suggestions", "no-card",
         "no-timestamp", "impossible-date", "not-a-date", "no-offset"],
)
def test_invalid_feedback_is_400(app, client, item: dict) -> None:
    response = client.post(URL, json={"feedback": [item]})
    assert response.status_code == 400
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert rows(app) == []


@pytest.mark.parametrize(
    "body", [{}, {"feedback": "x"}, [], "feedback"], ids=["empty", "not-list", "array", "string"]
)
def test_wrong_shape_is_400(client, body) -> None:
    assert client.post(URL, json=body).status_code == 400


def test_not_json_is_400(client) -> None:
    cases = (("{not json", "application/json"), ("card=1", "text/plain"), ("", "application/json"))
    for data, content_type in cases:
        response = client.post(URL, data=data, content_type=content_type)
        assert response.status_code == 400
        assert response.get_json()["resourceType"] == "OperationOutcome"


def test_oversized_batch_is_rejected(app, client) -> None:
    items = [accepted(f"card-{i}", "s") for i in range(MAX_ITEMS + 1)]
    assert client.post(URL, json={"feedback": items}).status_code == 413
    assert rows(app) == []


def test_unknown_service_is_404(client) -> None:
    response = client.post("/cds-services/no-such-service/feedback", json=SPEC_ACCEPTED)
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_every_service_has_feedback(app, client) -> None:
    for service_id in ("hcc-second-line-patient-view", "hcc-second-line-order-select", SERVICE):
        item = accepted(f"card-{service_id}", "s")
        response = client.post(f"/cds-services/{service_id}/feedback", json={"feedback": [item]})
        assert response.status_code == 200
    assert sorted(r.service_id for r in rows(app)) == sorted(
        ["hcc-second-line-patient-view", "hcc-second-line-order-select", SERVICE])


def test_unsigned_feedback_is_401_when_auth_required(db_url: str) -> None:
    app = create_app(Settings(auth_mode="required", feedback_db=db_url))
    try:
        response = app.test_client().post(URL, json=SPEC_ACCEPTED)
        assert response.status_code == 401
        assert response.get_json()["resourceType"] == "OperationOutcome"
        assert rows(app) == []
    finally:
        app.extensions["hcc_cds_engine"].dispose()


def test_same_body_twice_is_stored_once(app, client) -> None:
    first = client.post(URL, json=SANDBOX_OVERRIDE_WITH_SYSTEM)
    second = client.post(URL, json=SANDBOX_OVERRIDE_WITH_SYSTEM)
    assert first.status_code == second.status_code == 200
    assert first.get_json() == {"received": 1, "stored": 1}
    assert second.get_json() == {"received": 1, "stored": 0}
    assert len(rows(app)) == 1


def test_repeat_inside_one_batch_is_stored_once(app, client) -> None:
    item = accepted("card-rep", "s")
    response = client.post(URL, json={"feedback": [item, copy.deepcopy(item)]})
    assert response.status_code == 200
    assert response.get_json() == {"received": 2, "stored": 1}
    assert len(rows(app)) == 1


def test_accepted_and_overridden_same_card_are_two_rows(app, client) -> None:
    assert client.post(URL, json={"feedback": [accepted("card-2", "s")]}).status_code == 200
    assert client.post(URL, json={"feedback": [overridden("card-2", code="x")]}).status_code == 200
    assert sorted(r.outcome for r in rows(app)) == ["accepted", "overridden"]


def test_card_type_comes_from_issued_cards(app, client) -> None:
    with app.app_context():
        record_issued_cards(SERVICE, [card("card-3", topic="order-check", check="lenvatinib-dose")])
    body = {"feedback": [overridden("card-3", code="dose-adjusted-elsewhere"), accepted("card-9", "s")]}
    assert client.post(URL, json=body).status_code == 200
    types = {r.card_uuid: r.card_type for r in rows(app)}
    assert types == {"card-3": "order-check:lenvatinib-dose", "card-9": "unknown"}


def test_user_comment_is_never_stored(app, client, tmp_path: Path) -> None:
    body = {"feedback": [overridden("card-4", code="c", system=REASONS, comment=SECRET_COMMENT),
                         overridden("card-5", comment=SECRET_COMMENT)]}
    assert client.post(URL, json=body).status_code == 200
    assert len(rows(app)) == 2
    app.extensions["hcc_cds_engine"].dispose()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("fb.sqlite3")]
    assert files
    needles = (SECRET_COMMENT.encode(), b"Jane Q.", b"778899", SECRET_COMMENT.encode("utf-16-le"))
    contents = [path.read_bytes() for path in files]
    assert any(REASONS.encode() in data for data in contents)  # the scan does see stored values
    for path, data in zip(files, contents, strict=True):
        assert not any(needle in data for needle in needles), path.name


def test_feedback_survives_a_restart(db_url: str) -> None:
    first = create_app(Settings(auth_mode="off", feedback_db=db_url))
    with first.app_context():
        record_issued_cards(SERVICE, [card("card-6", check="ramucirumab-afp")])
    assert first.test_client().post(URL, json={"feedback": [accepted("card-6", "s")]}).status_code == 200
    first.extensions["hcc_cds_engine"].dispose()

    second = create_app(Settings(auth_mode="off", feedback_db=db_url))
    try:
        data = feedback_report_data(second.extensions["hcc_cds_db"])
        assert data["cardTypes"] == [{
            "cardType": "order-check:ramucirumab-afp", "feedback": 1, "accepted": 1, "overridden": 0,
            "acceptanceRatePercent": 100.0, "overrideRatePercent": 0.0,
        }]
        assert "order-check:ramucirumab-afp" in feedback_report(second.extensions["hcc_cds_db"])
        # and the repeat after the restart is still a duplicate
        response = second.test_client().post(URL, json={"feedback": [accepted("card-6", "s")]})
        assert response.get_json() == {"received": 1, "stored": 0}
    finally:
        second.extensions["hcc_cds_engine"].dispose()


# ---------------------------------------------------------------------------------------------------------
# Report


# (card uuid, card type as issued or None, feedback item)
EVENTS = [
    ("L1", ("order-check", "lenvatinib-dose"), accepted("L1", "s1")),
    ("L2", ("order-check", "lenvatinib-dose"), accepted("L2", "s1")),
    ("L3", ("order-check", "lenvatinib-dose"), accepted("L3", "s2")),
    ("L4", ("order-check", "lenvatinib-dose"), overridden("L4", code="a", system=REASONS)),
    ("I1", ("order-check", "irae-ici"), overridden("I1", code="a", system=REASONS)),
    ("I2", ("order-check", "irae-ici"), overridden("I2", code="b")),
    ("P1", ("second-line-options", None), accepted("P1", "s")),
    ("P2", ("second-line-options", None), overridden("P2", comment=SECRET_COMMENT)),
    ("X1", None, overridden("X1", code="a", system=REASONS)),
]


def expected_type(issued: tuple | None) -> str:
    if issued is None:
        return "unknown"
    topic, check = issued
    return f"order-check:{check}" if check else topic


def test_report_figures(app, client) -> None:
    cards = [card(uuid, topic=issued[0], check=issued[1]) for uuid, issued, _ in EVENTS if issued]
    with app.app_context():
        record_issued_cards(SERVICE, cards)
    response = client.post(URL, json={"feedback": [item for _, _, item in EVENTS]})
    assert response.get_json() == {"received": len(EVENTS), "stored": len(EVENTS)}

    # Expected figures computed from EVENTS, independently of the service code.
    per_type: dict[str, Counter] = {}
    reasons: Counter = Counter()
    for _, issued, item in EVENTS:
        per_type.setdefault(expected_type(issued), Counter())[item["outcome"]] += 1
        if item["outcome"] == "overridden":
            r = item.get("overrideReason", {}).get("reason")
            reasons[f"{r.get('system', '')}|{r['code']}" if r else NO_REASON] += 1
    n_overrides = sum(reasons.values())

    data = feedback_report_data(app.extensions["hcc_cds_db"])
    assert [r["cardType"] for r in data["cardTypes"]] == sorted(per_type)
    for r in data["cardTypes"]:
        c = per_type[r["cardType"]]
        total = c["accepted"] + c["overridden"]
        assert (r["feedback"], r["accepted"], r["overridden"]) == (total, c["accepted"], c["overridden"])
        assert r["acceptanceRatePercent"] == round(100 * c["accepted"] / total, 1)
        assert r["overrideRatePercent"] == round(100 * c["overridden"] / total, 1)
    assert data["total"]["feedback"] == len(EVENTS)
    assert {r["reason"]: r["count"] for r in data["overrideReasons"]} == dict(reasons)
    for r in data["overrideReasons"]:
        assert r["sharePercent"] == round(100 * reasons[r["reason"]] / n_overrides, 1)

    # The figures spelled out: lenvatinib dose check 3 accepted, 1 overridden → 75 % acceptance.
    lenvatinib = next(r for r in data["cardTypes"] if r["cardType"] == "order-check:lenvatinib-dose")
    assert (lenvatinib["acceptanceRatePercent"], lenvatinib["overrideRatePercent"]) == (75.0, 25.0)
    assert data["overrideReasons"][0] == {"reason": f"{REASONS}|a", "count": 3, "sharePercent": 60.0}
    assert data["total"]["acceptanceRatePercent"] == 44.4

    text = feedback_report(app.extensions["hcc_cds_db"])
    assert text == feedback_report(app.extensions["hcc_cds_db"])  # deterministic
    line = next(x for x in text.splitlines() if x.startswith("order-check:lenvatinib-dose"))
    assert line.split()[1:] == ["4", "3", "1", "75.0", "25.0"]
    reason_line = next(x for x in text.splitlines() if x.startswith(f"{REASONS}|a"))
    assert reason_line.split()[1:] == ["3", "60.0"]
    assert "|b" in text and NO_REASON in text
    assert SECRET_COMMENT not in text


def test_empty_report(app) -> None:
    data = feedback_report_data(app.extensions["hcc_cds_db"])
    assert data["cardTypes"] == [] and data["overrideReasons"] == []
    assert feedback_report(app.extensions["hcc_cds_db"]) == "No feedback recorded.\n"


# ---------------------------------------------------------------------------------------------------------
# Issued cards


def test_card_type_mapping() -> None:
    assert card_type_of(card("u", topic="order-check", check="irae-ici")) == "order-check:irae-ici"
    assert card_type_of(card("u", topic="second-line-options")) == "second-line-options"
    assert card_type_of(card("u", topic="data-quality")) == "data-quality"
    assert card_type_of(card("u", topic="clinical-trials")) == "clinical-trials"
    assert card_type_of(card("u")) == "unknown"
    assert card_type_of({"uuid": "u", "extension": {"hcc-cds.orderCheck": "bad"}, "source": []}) == "unknown"


def test_record_issued_cards(app) -> None:
    cards = [
        card("c1", topic="second-line-options"),
        card("c2", topic="data-quality"),
        card("c3", topic="clinical-trials"),
        card("c4", topic="order-check", check="prior-ctla4"),
        card("c5", topic="order-check", check="bev-event-antivegf"),
        {"summary": "no uuid", "indicator": "info", "source": {"label": "x"}},
        "not a card",
    ]
    with app.app_context():
        record_issued_cards(SERVICE, cards)  # type: ignore[arg-type]
        record_issued_cards(SERVICE, [])
    with app.extensions["hcc_cds_db"]() as session:
        stored = {c.card_uuid: (c.service_id, c.card_type) for c in session.scalars(select(IssuedCard))}
    assert stored == {
        "c1": (SERVICE, "second-line-options"),
        "c2": (SERVICE, "data-quality"),
        "c3": (SERVICE, "clinical-trials"),
        "c4": (SERVICE, "order-check:prior-ctla4"),
        "c5": (SERVICE, "order-check:bev-event-antivegf"),
    }


def test_record_issued_cards_never_raises(app) -> None:
    with app.app_context():
        record_issued_cards(SERVICE, [card("dup", topic="data-quality")])
        record_issued_cards(SERVICE, [card("dup", topic="data-quality")])  # primary key clash
        IssuedCard.__table__.drop(app.extensions["hcc_cds_engine"])
        record_issued_cards(SERVICE, [card("c7", topic="data-quality")])  # table gone


# ---------------------------------------------------------------------------------------------------------
# RFC 3339


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1985-04-12T23:20:50.52Z", datetime(1985, 4, 12, 23, 20, 50, 520000, tzinfo=UTC)),
        ("2026-05-09T10:11:12.345Z", datetime(2026, 5, 9, 10, 11, 12, 345000, tzinfo=UTC)),
        ("2026-05-09t10:11:12z", datetime(2026, 5, 9, 10, 11, 12, tzinfo=UTC)),
        ("2026-05-09T10:11:12.123456789Z", datetime(2026, 5, 9, 10, 11, 12, 123456, tzinfo=UTC)),
        ("1996-12-19T16:39:57-08:00", datetime(1996, 12, 20, 0, 39, 57, tzinfo=UTC)),
        ("1990-12-31T23:59:60Z", datetime(1990, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339(text: str, expected: datetime) -> None:
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize("text", ["2026-05-09", "2026-05-09T10:11:12", "2026-02-30T00:00:00Z",
                                  "2026-05-09T10:11Z",
                                  "2026-05-09T10:11:12+0200", " 2026-05-09T10:11:12Z", 5])
def test_parse_rfc3339_rejects(text) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)
