"""The SMART pathway app under ``{base}/app/`` (service-contract.md §10; architecture.md "SMART launch").

``/app/launch`` (EHR launch with ``iss`` + ``launch``; standalone with ``iss`` alone) → the authorization
server → ``/app/callback`` (state checked, code exchanged with the PKCE verifier) → ``/app/`` shows the
pathway. Every page load reads the patient through the hooks' bounded FHIR client (:func:`service.gather.gather`)
with the session's token and evaluates with the same core at the current time; nothing about the patient is
kept. ``POST /app/feedback`` stores accept / decline-with-reason as CDS Hooks feedback for the card whose
SMART link launched the app (its uuid from ``appContext``).

Headers on every app response: ``Content-Security-Policy`` (scripts and styles from the app only, no network
but the app itself, ``frame-ancestors`` from ``HCC_CDS_APP_FRAME_ANCESTORS``), ``Referrer-Policy: no-referrer``,
``Cache-Control: no-store``.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from urllib.parse import quote

from flask import Blueprint, Response, current_app, redirect, render_template, request
from sqlalchemy.exc import SQLAlchemyError

from ..config import Settings
from ..db import DatabaseUnavailable
from ..errors import ServiceError
from ..feedback import records_from_body, store_feedback
from ..fhir import fetch, is_allowed
from ..gather import gather
from ..hooks import clock
from ..logs import log_event
from . import pathway, series, smart
from .sessions import Pending, Session, SessionStore, set_cookie

SERVICE_ID = "hcc-second-line-patient-view"
DECLINE_SYSTEM = "urn:hcc-cds:pathway-app:decline-reason"

bp = Blueprint("pathway_app", __name__, url_prefix="/app", template_folder="templates", static_folder="static",
               static_url_path="/static")
_sessions = SessionStore()


def _settings() -> Settings:
    return current_app.config["HCC_CDS"]


@bp.after_request
def _headers(response: Response) -> Response:
    ancestors = _settings().app_frame_ancestors.strip() or "'none'"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        f"form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}")
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _page(template: str, status: int = 200, **context: object) -> Response:
    response = Response(render_template(template, **context), status=status, mimetype="text/html")
    return response


def _error(message: str, status: int = 400) -> Response:
    log_event("app-error", status=status, reason=message[:120])
    return _page("app_error.html", status, message=message)


def _redirect_uri() -> str:
    return _settings().app_redirect_url or request.host_url.rstrip("/") + "/app/callback"


@bp.get("/launch")
def launch() -> Response:
    """EHR launch (``iss`` and ``launch``) or standalone launch (``iss`` only).

    Demo only: the CDS Hooks sandbox opens a SMART link against an *open* FHIR server without any SMART launch,
    as ``{url}?fhirServiceUrl=…&patientId=…`` (its card-list ``modifySmartLaunchUrls``); the app then reads
    that server without a token. Outside the demo that form is refused (an open server the service can reach
    need not be open to the browser's user).
    """
    iss, launch_id = request.args.get("iss", "").strip(), request.args.get("launch", "").strip() or None
    open_server, open_patient = request.args.get("fhirServiceUrl"), request.args.get("patientId")
    if not iss and open_server and open_patient:
        return _open_server_launch(open_server, open_patient)
    if not iss:
        if _settings().demo_data:
            iss = request.host_url.rstrip("/") + "/fhir"
        else:
            return _error("a SMART launch needs the FHIR server's base URL (iss)")
    try:
        endpoints = smart.discover(iss, _settings())
    except smart.LaunchError as exc:
        return _error(str(exc), 502 if "discovery" in str(exc) else 400)
    session = _sessions.get_or_create(request)
    url, state, verifier = smart.authorization_url(endpoints, iss, launch_id, _settings().app_client_id,
                                                   _redirect_uri())
    _sessions.add_pending(session, state, Pending(iss, endpoints.token, verifier, _redirect_uri()))
    response = redirect(url, code=302)
    set_cookie(response, request, session)
    log_event("app-launch", kind="ehr" if launch_id else "standalone")
    return response


def _open_server_launch(fhir_server: str, patient: str) -> Response:
    if not _settings().demo_data:
        return _error("this link needs a SMART launch (iss and launch): the sandbox sends those when its FHIR "
                      "server is secured")
    if not is_allowed(fhir_server, _settings()):
        return _error("this FHIR server (fhirServiceUrl) is not on HCC_CDS_FHIR_ALLOWLIST")
    session = _sessions.get_or_create(request)
    session.iss, session.patient, session.open_server, session.access_token, session.card = (
        fhir_server, patient, True, None, None)
    response = redirect("/app/", code=303)
    set_cookie(response, request, session)
    log_event("app-launch", kind="open-server")
    return response


@bp.get("/callback")
def callback() -> Response:
    session = _sessions.get(request)
    state = request.args.get("state", "")
    pending = _sessions.take_pending(session, state) if session and state else None
    if pending is None:
        return _error("this authorization does not belong to a launch of this browser (state mismatch or "
                      "expired): launch the app again")
    if request.args.get("error"):
        return _error(f"the authorization server refused: {request.args.get('error')}", 403)
    code = request.args.get("code")
    if not code:
        return _error("the authorization server sent no code")
    try:
        token = smart.exchange_code(pending.token_endpoint, code, pending.code_verifier,
                                    _settings().app_client_id, pending.redirect_uri, _settings())
    except smart.LaunchError as exc:
        return _error(str(exc), 502)
    assert session is not None
    lifetime = token.get("expires_in")
    session.access_token = token["access_token"]
    session.token_expires = time.monotonic() + (float(lifetime) if isinstance(lifetime, int | float) else 3600)
    session.iss, session.patient, session.open_server = pending.iss, token["patient"], False
    session.card = smart.card_from_app_context(token.get("appContext"))
    log_event("app-authorized", with_card=session.card is not None)
    return redirect("/app/", code=303)  # the code leaves the address bar; the token never enters it


@bp.get("/")
def page() -> Response:
    session = _sessions.get(request)
    if session is None or not session.authorized():
        return _page("app_start.html", demo=_settings().demo_data)
    settings = _settings()
    body: dict = {"context": {"patientId": session.patient}, "fhirServer": session.iss}
    if session.access_token:
        body["fhirAuthorization"] = {"access_token": session.access_token, "token_type": "Bearer"}
    try:
        gathered = gather(body, settings)
    except ServiceError as exc:
        return _error(exc.message, exc.status)
    result = series.run_core(gathered.resources, clock(), str(session.patient), policy=settings.policy,
                             unavailable=gathered.unavailable)
    banner = _banner(gathered.resources, session, settings)
    ext = ((result.second_line or {}).get("extension") or {}).get(series.EXTENSION) or {}
    items, orders = pathway.quality_items(result.quality)
    a = ext.get("assessment") or {}
    view = {
        "series": result.series.__dict__,
        "markers": {"lineStart": (a.get("firstLine") or {}).get("start"),
                    "progression": (a.get("progression") or {}).get("date")},
        "csrf": session.csrf,
        "card": session.card,
    }
    return _page("app_pathway.html", ext=ext, applicable=result.second_line is not None,
                 nodes=pathway.pathway(ext, settings.policy) if ext else [],
                 options=pathway.options(ext, result.evidence, series.quote), timeline=pathway.timeline(ext),
                 quality=items, orders=orders, policy=result.policy, policy_ref=ext.get("policy"),
                 citation=result.citation, card=session.card, series=result.series,
                 reasons=pathway.DECLINE_REASONS, view=view,
                 evaluated=clock().date().isoformat(), banner=banner)


def _banner(resources: list[dict], session: Session, settings: Settings) -> dict:
    """Name, sex and birth date for the patient banner (SMART ``need_patient_banner``), read with the same
    bounded client; shown, never stored. Falls back to the id when the Patient cannot be read."""
    patient = next((r for r in resources if r.get("resourceType") == "Patient" and r.get("id") == session.patient),
                   None)
    if patient is None and session.iss:
        fetched = fetch({"patient": f"Patient/{quote(str(session.patient), safe='')}"}, session.iss,
                        session.access_token, settings)
        patient = next(iter(fetched.resources.get("patient", [])), None)
    name = ((patient or {}).get("name") or [{}])[0] if isinstance((patient or {}).get("name"), list) else {}
    shown = " ".join([*name.get("given", []), name.get("family", "")]).strip() if isinstance(name, dict) else ""
    return {"name": shown or str(session.patient), "gender": (patient or {}).get("gender", ""),
            "birthDate": (patient or {}).get("birthDate", "")}


@bp.post("/feedback")
def feedback() -> tuple[Response, int] | Response:
    """Accept / decline-with-reason for one option, stored as CDS Hooks feedback on the linking card."""
    session = _sessions.get(request)
    if session is None or not session.authorized():
        return _json({"error": "not launched (or the session expired)"}, 401)
    if request.headers.get("X-CSRF-Token") != session.csrf:
        return _json({"error": "missing or wrong CSRF token"}, 403)
    if session.card is None:
        return _json({"error": "launched without a card: feedback needs the card whose link opened the app"}, 409)
    data = request.get_json(silent=True)
    option = data.get("option") if isinstance(data, dict) else None
    outcome = data.get("outcome") if isinstance(data, dict) else None
    if not isinstance(option, str) or not option or len(option) > 60 or outcome not in ("accepted", "declined"):
        return _json({"error": "option and outcome (accepted|declined) are required"}, 400)
    item: dict = {"card": session.card, "outcomeTimestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
    if outcome == "accepted":
        item.update(outcome="accepted", acceptedSuggestions=[{"id": f"option:{option}"}])
    else:
        reasons = dict(pathway.DECLINE_REASONS)
        reason = data.get("reason")
        if reason not in reasons:
            return _json({"error": "a decline needs one of the listed reasons"}, 400)
        item.update(outcome="overridden", overrideReason={"reason": {"system": DECLINE_SYSTEM, "code": reason,
                                                                     "display": reasons[reason]}})
    try:
        rows = records_from_body(SERVICE_ID, {"feedback": [item]})
        stored = store_feedback(current_app.extensions["hcc_cds_database"], rows)
    except ServiceError as exc:
        return _json({"error": exc.message}, exc.status)
    except (DatabaseUnavailable, SQLAlchemyError):
        return _json({"error": "feedback store unavailable, please retry"}, 503)
    log_event("app-feedback", outcome=item["outcome"], stored=stored)
    return _json({"stored": stored, "outcome": item["outcome"]}, 200)


def _json(body: dict, status: int) -> tuple[Response, int]:
    return Response(json.dumps(body), mimetype="application/json"), status
