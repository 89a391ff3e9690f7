"""CDS Hooks 2.0 feedback: ``POST /cds-services/{id}/feedback``, issued-card bookkeeping, and a report.

What is stored (service-contract.md §3): the card uuid, the service, the card type, the outcome, the ids of
accepted suggestions, the override reason's ``system``/``code`` and the outcome time. Never patient data:
``overrideReason.userComment`` is free text that may name the patient, so it is dropped unread.

Feedback is idempotent on (card uuid, outcome): a client that repeats a batch gets the same 200 and no second
row. A card uuid the service has no record of (issued before a redeploy, or by another instance with its own
database) is accepted with card type ``unknown``.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta, timezone

from flask import Blueprint, current_app, g, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from .auth import authenticate
from .body import read_json
from .db import Database, DatabaseUnavailable, FeedbackRecord, IssuedCard
from .discovery import SERVICES
from .errors import ServiceError
from .logs import log_event
from .metrics import FEEDBACK
from .validation import feedback_errors

bp = Blueprint("feedback", __name__)

UNKNOWN_CARD_TYPE = "unknown"
ORDER_CHECK_EXTENSION = "hcc-cds.orderCheck"
NO_REASON = "(no reason given)"

# Column widths of db.FeedbackRecord / db.IssuedCard.
_MAX_UUID = 80
_MAX_CARD_TYPE = 80
_MAX_SUGGESTIONS = 800
_MAX_SYSTEM = 200
_MAX_CODE = 80
_INSERT_ATTEMPTS = 3
MAX_ITEMS = 1000  # feedback items per request; clients send one or a few

# RFC 3339 §5.6 date-time (``T``/``t``, optional fraction, ``Z``/``z`` or a numeric offset).
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


# --------------------------------------------------------------------------------------------------------
# Parsing


def parse_rfc3339(value: object) -> datetime:
    """Parse an RFC 3339 date-time into an aware UTC datetime; ``ValueError`` if it is not one.

    Fractions finer than a microsecond are truncated; a leap second (``:60``) is read as ``:59``.
    """
    if not isinstance(value, str):
        raise ValueError("not a string")
    match = _RFC3339.match(value)
    if not match:
        raise ValueError("not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    fraction = match.group(7) or ""
    microsecond = int((fraction + "000000")[:6])
    if second == 60:
        second = 59
    if match.group(8):
        tz: timezone = UTC
    else:
        offset_hours, offset_minutes = int(match.group(10)), int(match.group(11))
        if offset_hours > 23 or offset_minutes > 59:
            raise ValueError("offset out of range")
        offset = timedelta(hours=offset_hours, minutes=offset_minutes)
        tz = timezone(-offset if match.group(9) == "-" else offset)
    parsed = datetime(year, month, day, hour, minute, second, microsecond, tzinfo=tz)
    return parsed.astimezone(UTC)


def _checked(value: object, limit: int, what: str, index: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ServiceError(400, f"feedback[{index}]: {what} must be a string")
    if len(value) > limit:
        raise ServiceError(400, f"feedback[{index}]: {what} is longer than {limit} characters")
    return value


def records_from_body(service_id: str, body: dict) -> list[dict]:
    """Turn a schema-valid feedback body into column dicts; 400 on what the schema cannot express."""
    rows: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(body.get("feedback") or []):
        card = _checked(item.get("card"), _MAX_UUID, "card", index)
        outcome = item.get("outcome")
        if not card or outcome not in ("accepted", "overridden"):
            raise ServiceError(400, f"feedback[{index}]: card and outcome (accepted|overridden) are required")
        try:
            outcome_timestamp = parse_rfc3339(item.get("outcomeTimestamp"))
        except (ValueError, OverflowError):
            raise ServiceError(
                400, f"feedback[{index}]: outcomeTimestamp must be an RFC 3339 date-time"
            ) from None
        suggestions = None
        if outcome == "accepted":
            ids = [s.get("id") for s in item.get("acceptedSuggestions") or [] if isinstance(s, dict)]
            if not ids or not all(isinstance(i, str) and i for i in ids):
                raise ServiceError(400, f"feedback[{index}]: accepted feedback needs acceptedSuggestions ids")
            suggestions = _checked(",".join(ids), _MAX_SUGGESTIONS, "acceptedSuggestions", index)
        system = code = None
        if outcome == "overridden":
            override = item.get("overrideReason")
            reason = override.get("reason") if isinstance(override, dict) else None
            if isinstance(reason, dict):
                # userComment is deliberately never read: free text may hold patient data.
                system = _checked(reason.get("system"), _MAX_SYSTEM, "overrideReason.reason.system", index)
                code = _checked(reason.get("code"), _MAX_CODE, "overrideReason.reason.code", index)
        key = (card, outcome)
        if key in seen:  # repeated inside one batch: idempotent as well
            continue
        seen.add(key)
        rows.append({
            "service_id": service_id,
            "card_uuid": card,
            "card_type": UNKNOWN_CARD_TYPE,
            "outcome": outcome,
            "accepted_suggestions": suggestions,
            "override_system": system,
            "override_code": code,
            "outcome_timestamp": outcome_timestamp,
        })
    return rows


# --------------------------------------------------------------------------------------------------------
# Storage


def store_feedback(database: Database, rows: list[dict]) -> int:
    """Insert rows whose (card uuid, outcome) is new, in one transaction; return how many were stored.

    Card types come from ``IssuedCard``. A concurrent insert of the same pair makes the transaction fail on
    the unique constraint; it is then retried and the pair is found already stored. ``DatabaseUnavailable``
    when the database cannot be used (the caller answers 503: the client keeps the feedback and retries).
    """
    if not rows:
        return 0
    uuids = sorted({row["card_uuid"] for row in rows})
    for attempt in range(_INSERT_ATTEMPTS):
        try:
            with database.transaction() as session:
                types = dict(session.execute(
                    select(IssuedCard.card_uuid, IssuedCard.card_type)
                    .where(IssuedCard.card_uuid.in_(uuids))
                ).all())
                existing = {tuple(pair) for pair in session.execute(
                    select(FeedbackRecord.card_uuid, FeedbackRecord.outcome)
                    .where(FeedbackRecord.card_uuid.in_(uuids))
                ).all()}
                new = [
                    {**row, "card_type": types.get(row["card_uuid"], UNKNOWN_CARD_TYPE)}
                    for row in rows
                    if (row["card_uuid"], row["outcome"]) not in existing
                ]
                if new:
                    session.execute(insert(FeedbackRecord), new)
            return len(new)
        except IntegrityError:
            if attempt == _INSERT_ATTEMPTS - 1:
                raise
    return 0  # pragma: no cover - the loop either returns or raises


@bp.post("/cds-services/<service_id>/feedback")
def receive_feedback(service_id: str) -> ResponseReturnValue:
    if service_id not in SERVICES:
        raise ServiceError(404, "unknown service", "unknown-service")
    g.service_id = service_id
    authenticate()
    body = read_json()
    if body is None:
        raise ServiceError(400, "request body must be JSON (Content-Type: application/json)", "not-json")
    items = body.get("feedback") if isinstance(body, dict) else None
    if isinstance(items, list) and len(items) > MAX_ITEMS:
        raise ServiceError(413, f"at most {MAX_ITEMS} feedback items per request", "too-many-items")
    errors = feedback_errors(body)
    if errors:
        raise ServiceError(400, "invalid feedback: " + "; ".join(errors), "invalid-feedback")
    rows = records_from_body(service_id, body)
    try:
        stored = store_feedback(current_app.extensions["hcc_cds_database"], rows)
    except (DatabaseUnavailable, IntegrityError) as exc:
        log_event("feedback_store_error", level=logging.ERROR, service_id=service_id,
                  error_type=getattr(exc, "reason", type(exc).__name__))
        raise ServiceError(503, "feedback store unavailable, please retry", "database-unavailable",
                           {"Retry-After": "5"}) from None
    FEEDBACK.labels(outcome="stored").inc(stored)
    FEEDBACK.labels(outcome="duplicate").inc(len(rows) - stored)
    received = len(body.get("feedback") or [])
    log_event("feedback", service_id=service_id, received=received, stored=stored)
    return jsonify({"received": received, "stored": stored}), 200


# --------------------------------------------------------------------------------------------------------
# Issued cards


def card_type_of(card: dict) -> str:
    """``order-check:<check>`` for order-entry cards, else ``source.topic.code``, else ``unknown``."""
    extension = card.get("extension")
    if isinstance(extension, dict):
        order_check = extension.get(ORDER_CHECK_EXTENSION)
        check = order_check.get("check") if isinstance(order_check, dict) else None
        if isinstance(check, str) and check:
            return ("order-check:" + check)[:_MAX_CARD_TYPE]
    source = card.get("source")
    topic = source.get("topic") if isinstance(source, dict) else None
    code = topic.get("code") if isinstance(topic, dict) else None
    if isinstance(code, str) and code:
        return code[:_MAX_CARD_TYPE]
    return UNKNOWN_CARD_TYPE


def record_issued_cards(service_id: str, cards: list[dict]) -> None:
    """Remember uuid -> card type for the cards of one response (one transaction; never raises on DB errors).

    Called by the hook endpoints after building a response; a failure here must not fail the hook call, and
    while the database is known to be down it is not even tried (the cards go out without bookkeeping).
    """
    rows: dict[str, dict] = {}
    for card in cards or []:
        if not isinstance(card, dict):
            continue
        uuid = card.get("uuid")
        if isinstance(uuid, str) and uuid and len(uuid) <= _MAX_UUID and uuid not in rows:
            rows[uuid] = {"card_uuid": uuid, "service_id": service_id, "card_type": card_type_of(card)}
    if not rows:
        return
    database: Database = current_app.extensions["hcc_cds_database"]
    try:
        database.purge_if_due()
        with database.transaction() as session:
            session.execute(insert(IssuedCard), list(rows.values()))
    except (DatabaseUnavailable, SQLAlchemyError) as exc:
        log_event("issued_cards_store_error", level=logging.WARNING, service_id=service_id,
                  error_type=getattr(exc, "reason", type(exc).__name__))


# --------------------------------------------------------------------------------------------------------
# Report


def _rate(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def reason_key(system: str | None, code: str | None) -> str:
    """``system|code`` (``|code`` without a system); overrides without a coded reason share one key."""
    if not code and not system:
        return NO_REASON
    return f"{system or ''}|{code or ''}"


def feedback_report_data(session_factory: sessionmaker) -> dict:
    """Feedback counts and rates per card type and per override reason, deterministically ordered."""
    with session_factory() as session:
        by_type = session.execute(
            select(FeedbackRecord.card_type, FeedbackRecord.outcome, func.count())
            .group_by(FeedbackRecord.card_type, FeedbackRecord.outcome)
        ).all()
        by_reason = session.execute(
            select(FeedbackRecord.override_system, FeedbackRecord.override_code, func.count())
            .where(FeedbackRecord.outcome == "overridden")
            .group_by(FeedbackRecord.override_system, FeedbackRecord.override_code)
        ).all()

    counts: dict[str, dict[str, int]] = {}
    for card_type, outcome, count in by_type:
        counts.setdefault(card_type, {"accepted": 0, "overridden": 0})[outcome] = count

    def row(name: str, accepted: int, overridden: int) -> dict:
        total = accepted + overridden
        return {"cardType": name, "feedback": total, "accepted": accepted, "overridden": overridden,
                "acceptanceRatePercent": _rate(accepted, total),
                "overrideRatePercent": _rate(overridden, total)}

    card_types = [row(name, c["accepted"], c["overridden"]) for name, c in sorted(counts.items())]
    total_accepted = sum(r["accepted"] for r in card_types)
    total_overridden = sum(r["overridden"] for r in card_types)

    reasons: dict[str, int] = {}
    for system, code, count in by_reason:
        key = reason_key(system, code)
        reasons[key] = reasons.get(key, 0) + count
    override_reasons = [
        {"reason": key, "count": count, "sharePercent": _rate(count, total_overridden)}
        for key, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    ]
    return {
        "cardTypes": card_types,
        "total": row("all", total_accepted, total_overridden),
        "overrideReasons": override_reasons,
    }


def feedback_report(session_factory: sessionmaker) -> str:
    """A plain-text table of ``feedback_report_data``."""
    data = feedback_report_data(session_factory)
    if not data["total"]["feedback"]:
        return "No feedback recorded.\n"
    width = max(len("card type"), *(len(r["cardType"]) for r in data["cardTypes"]))
    header = (f"{'card type':<{width}}  {'feedback':>8}  {'accepted':>8}  {'overridden':>10}  "
              f"{'accepted %':>10}  {'overridden %':>12}")
    lines = ["Feedback by card type", header, "-" * len(header)]
    for r in [*data["cardTypes"], data["total"]]:
        if r is data["total"]:
            lines.append("-" * len(header))
        lines.append(f"{r['cardType']:<{width}}  {r['feedback']:>8}  {r['accepted']:>8}  "
                     f"{r['overridden']:>10}  {r['acceptanceRatePercent']:>10.1f}  "
                     f"{r['overrideRatePercent']:>12.1f}")
    lines.append("")
    lines.append("Override reasons (system|code)")
    if data["overrideReasons"]:
        rwidth = max(len("reason"), *(len(r["reason"]) for r in data["overrideReasons"]))
        rheader = f"{'reason':<{rwidth}}  {'count':>6}  {'share of overrides %':>20}"
        lines += [rheader, "-" * len(rheader)]
        lines += [f"{r['reason']:<{rwidth}}  {r['count']:>6}  {r['sharePercent']:>20.1f}"
                  for r in data["overrideReasons"]]
    else:
        lines.append("No overrides recorded.")
    return "\n".join(lines) + "\n"
