"""The CDS Hooks endpoints: discovery and the three services (service-contract.md §1).

The web layer only validates, authenticates, gathers data and serialises; the decisions live in ``cards``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, g, jsonify, request

from cards.order_checks import OrderContextError, check_order_context, evaluate_orders
from cards.patient_view import evaluate

from .auth import authenticate
from .body import read_json
from .discovery import SERVICES, discovery_document
from .errors import ServiceError
from .feedback import record_issued_cards
from .gather import gather
from .metrics import count_cards
from .validation import request_errors

bp = Blueprint("hooks", __name__)


def clock() -> datetime:
    """The evaluation time: the wall clock, unless the app was built with a fixed one (replay, tests)."""
    fixed: Callable[[], datetime] | None = current_app.extensions.get("hcc_cds_clock")
    return fixed() if fixed else datetime.now(UTC)


@bp.get("/cds-services")
def discovery():
    """CDS Hooks discovery: always 200, whatever Authorization header comes with it (contract §8)."""
    return jsonify(discovery_document())


def app_launch_url(settings) -> str:  # type: ignore[no-untyped-def]
    """The pathway app's SMART launch URL for the card link (contract §3, §10): from HCC_CDS_PUBLIC_URL when set,
    else the URL this request reached."""
    base = settings.public_url or request.host_url.rstrip("/")
    return f"{base}/app/launch"


def _read_request(service_hook: str) -> dict:
    body = read_json()
    if body is None:
        raise ServiceError(400, "request body must be a JSON object", "not-json")
    errors = request_errors(body)
    if errors:
        raise ServiceError(400, "invalid CDS Hooks request: " + "; ".join(errors[:5]), "invalid-request")
    if body["hook"] != service_hook:
        raise ServiceError(400, f"this service answers the '{service_hook}' hook, not '{body['hook']}'", "wrong-hook")
    return body


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str):
    service = SERVICES.get(service_id)
    if service is None:
        raise ServiceError(404, f"unknown CDS service '{service_id}'", "unknown-service")
    g.service_id = service.id
    started = time.perf_counter()
    authenticate()
    body = _read_request(service.hook)
    g.hook_instance = body["hookInstance"]
    settings = current_app.config["HCC_CDS"]
    context = body["context"]
    selections = context.get("selections") if service.hook == "order-select" else None
    if service.hook != "patient-view":
        try:
            check_order_context(context["draftOrders"], selections)  # before any FHIR call
        except OrderContextError as exc:
            raise ServiceError(400, f"invalid order context: {exc}", "invalid-order-context") from exc
    gathered = gather(body, settings)
    g.timings = {"gather_ms": round((time.perf_counter() - started) * 1000, 1)}
    now = clock()
    if service.hook == "patient-view":
        cards = evaluate(gathered.resources, now, context["patientId"], policy=settings.policy,
                         unavailable=gathered.unavailable, app_launch_url=app_launch_url(settings)).cards
    else:
        cards = evaluate_orders(gathered.resources, now, context["patientId"], context["draftOrders"], selections,
                                policy=settings.policy, unavailable=gathered.unavailable).cards
    g.timings["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
    record_issued_cards(service.id, cards)
    count_cards(cards)
    response = jsonify({"cards": cards})
    _free_after_sending(response, body, gathered)
    return response


def _free_after_sending(response: Response, *parsed: object) -> None:
    """Keep the parsed request alive until the server has sent ``response`` (WSGI ``close()``): freeing a long
    record's JSON (about 4 ms for 2,000 Observations) then costs the worker after the answer, not the EHR
    waiting for it."""
    held = list(parsed)
    response.call_on_close(held.clear)
