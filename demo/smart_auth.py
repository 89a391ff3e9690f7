"""The demo SMART authorization server of the embedded FHIR endpoint (service-contract.md §10).

Built on Authlib's OAuth 2 authorization server (authorization code grant, RFC 7636 PKCE with S256 required,
public client without a secret): no hand-written token handling. It serves

- ``{base}/fhir/.well-known/smart-configuration`` (SMART App Launch 2 discovery),
- ``{base}/fhir/auth/authorize``: auto-approves the demo user; an EHR launch names the patient through the
  ``launch`` id the demo EHR page created (with the card's ``appContext``), a standalone launch with
  ``launch/patient`` shows a patient picker;
- ``{base}/fhir/auth/token``: the token response carries ``patient`` and, when the launch had one,
  ``appContext`` (CDS Hooks 2.0: a SMART link's appContext reaches the app in the token response);
- ``POST {base}/fhir/_services/smart/Launch`` ``{"launchUrl", "parameters": {"patient", "appContext"}}`` →
  ``{"launch_id"}``: the launch-context call the CDS Hooks sandbox makes for a card's SMART link against a
  secured FHIR server (its ``launch-context-retrieval.js``); the demo EHR page uses it too.

Only the configured client id (``HCC_CDS_APP_CLIENT_ID``) is registered, with the app's redirect URL on the
host the request reached (or ``HCC_CDS_APP_REDIRECT_URL``). Tokens live in memory for an hour; ``{base}/fhir``
checks a bearer token only when a request carries one (the open demo keeps working for the sandbox).
``openid`` and ``fhirUser`` are not granted (no id_token is issued), which the token response's ``scope`` says.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlencode

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, InvalidRequestError, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request

from service.expiring import ExpiringMap

from .fhirstore import FhirStore

TOKEN_LIFETIME = 3600
CODE_LIFETIME = 120
LAUNCH_LIFETIME = 600
MAX_APP_CONTEXT = 2000
MAX_ENTRIES = 10_000  # per table; the oldest entries go first
GRANTABLE = ("launch", "launch/patient", "patient/*.read", "patient/*.rs", "user/*.read", "user/*.rs")


@dataclass
class LaunchContext:
    patient: str
    app_context: str | None = None


@dataclass
class DemoClient(ClientMixin):
    """The pathway app as a registered public client."""

    client_id: str
    redirect_url: str | None  # None: {host the request reached}/app/callback

    def _redirect(self) -> str:
        return self.redirect_url or request.host_url.rstrip("/") + "/app/callback"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self._redirect()

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in GRANTABLE)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self._redirect()

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    context: LaunchContext | None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass(frozen=True)
class DemoUser:
    """The auto-approved demo clinician, carrying the launch context of this authorization."""

    context: LaunchContext | None

    def get_user_id(self) -> str:
        return "demo-practitioner"


class _CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["none"]

    def save_authorization_code(self, code: str, req: Any) -> None:
        data = req.payload.data
        state(current_app).codes.put(code, Code(
            code, req.client.get_client_id(), req.payload.redirect_uri, req.scope or "",
            data.get("code_challenge"), data.get("code_challenge_method"), req.user.context))

    def query_authorization_code(self, code: str, client: ClientMixin) -> Code | None:
        found = state(current_app).codes.get(code)
        return found if found is not None and found.client_id == client.get_client_id() else None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        state(current_app).codes.pop(authorization_code.code)

    def authenticate_user(self, authorization_code: Code) -> DemoUser:
        return DemoUser(authorization_code.context)

    def create_token_response(self):  # type: ignore[no-untyped-def]
        status, body, headers = super().create_token_response()
        context: LaunchContext | None = self.request.user.context
        if context is not None:
            body["patient"] = context.patient
            body["need_patient_banner"] = True
            if context.app_context:
                body["appContext"] = context.app_context
        return status, body, headers


class _S256Required(CodeChallenge):
    """PKCE as SMART App Launch 2 wants it: a ``code_challenge`` with method S256 on every authorization
    request (Authlib alone would accept ``plain``, and a missing challenge until the token request)."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE is required: code_challenge with code_challenge_method=S256")
        super().validate_code_challenge(grant, redirect_uri)


@dataclass
class SmartState:
    """Everything the demo authorization server keeps (in memory, for this process)."""

    store: FhirStore
    client: DemoClient
    launches: ExpiringMap = field(default_factory=lambda: ExpiringMap(LAUNCH_LIFETIME, MAX_ENTRIES))
    codes: ExpiringMap = field(default_factory=lambda: ExpiringMap(CODE_LIFETIME, MAX_ENTRIES))
    tokens: ExpiringMap = field(default_factory=lambda: ExpiringMap(TOKEN_LIFETIME, MAX_ENTRIES))
    server: AuthorizationServer | None = None

    def new_launch(self, context: LaunchContext) -> str:
        launch = secrets.token_urlsafe(16)
        self.launches.put(launch, context)
        return launch


def state(app: Flask) -> SmartState:
    return app.extensions["hcc_cds_demo_smart"]


#: Types outside the patient compartment that a patient-scoped token may still read (drug definitions, the
#: metadata endpoint, the practitioner banner).
_SHARED_TYPES = frozenset({"metadata", "Medication", "Practitioner", "Organization"})


def token_check(token: str) -> str | None:
    """For the FHIR endpoint: None when ``token`` is a live token of this server allowed to make this request,
    else why not. A ``patient/`` token reads only its patient's compartment: ``Patient/{id}`` itself and
    searches whose ``patient``/``subject``/``_id`` names that patient."""
    granted = state(current_app).tokens.get(token)
    if granted is None:
        return "unknown or expired access token"
    scopes = granted["scope"].split()
    if not any(s.startswith(("patient/", "user/")) for s in scopes):
        return "the token grants no FHIR read scope"
    patient = granted.get("patient")
    if any(s.startswith("user/") for s in scopes) or patient is None:
        return None
    parts = [p for p in request.path.split("/") if p][1:]  # after the FHIR prefix
    if not parts or parts[0] in _SHARED_TYPES:
        return None
    if parts[0] == "Patient" and len(parts) == 2:
        return None if parts[1] == patient else "the token is for another patient"
    named = [v for key in ("patient", "subject", "_id") for v in request.values.getlist(key)]
    if named and all(v.split("/")[-1] == patient for v in named):
        return None
    return "a patient-scoped token reads only its patient's data (search by patient or subject)"


def smart_configuration(fhir_base: str) -> dict[str, Any]:
    """SMART App Launch 2 discovery document (``.well-known/smart-configuration``)."""
    return {
        "issuer": fhir_base,
        "authorization_endpoint": f"{fhir_base}/auth/authorize",
        "token_endpoint": f"{fhir_base}/auth/token",
        "token_endpoint_auth_methods_supported": ["none"],
        "grant_types_supported": ["authorization_code"],
        "response_types_supported": ["code"],
        "scopes_supported": list(GRANTABLE),
        "code_challenge_methods_supported": ["S256"],
        "capabilities": ["launch-ehr", "launch-standalone", "client-public", "context-ehr-patient",
                         "context-standalone-patient", "permission-patient", "permission-v1", "permission-v2"],
    }


def init_app(app: Flask, store: FhirStore, client_id: str, redirect_url: str | None,
             prefix: str = "/fhir") -> Callable[[str], str | None]:
    """Register the authorization server on ``app``; returns the FHIR endpoint's bearer-token check."""
    smart = SmartState(store, DemoClient(client_id, redirect_url))

    def query_client(wanted: str) -> DemoClient | None:
        return smart.client if wanted == smart.client.client_id else None

    def save_token(token: dict[str, Any], req: Any) -> None:
        context: LaunchContext | None = req.user.context if req.user is not None else None
        smart.tokens.put(token["access_token"], {"scope": token.get("scope", ""), "client": client_id,
                                                 "patient": context.patient if context else None})

    server = AuthorizationServer(app, query_client=query_client, save_token=save_token)
    server.register_grant(_CodeGrant, [_S256Required(required=True)])
    smart.server = server
    app.extensions["hcc_cds_demo_smart"] = smart
    app.register_blueprint(_blueprint(smart, prefix))
    return token_check


def _blueprint(smart: SmartState, prefix: str) -> Blueprint:
    bp = Blueprint("demo_smart", __name__, url_prefix=prefix, template_folder="templates")

    def fhir_base() -> str:
        return request.url_root.rstrip("/") + prefix

    @bp.after_request
    def _no_store(response: Response) -> Response:
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.get("/.well-known/smart-configuration")
    def well_known() -> Response:
        return jsonify(smart_configuration(fhir_base()))

    @bp.get("/auth/authorize")
    def authorize() -> Response | str:
        server = smart.server
        assert server is not None
        context: LaunchContext | None = None
        launch = request.args.get("launch")
        scopes = (request.args.get("scope") or "").split()
        if launch:
            context = smart.launches.get(launch)
            if context is None:
                return _error_redirect_or_page(server, "invalid_request", "unknown or expired launch")
        elif "launch/patient" in scopes:
            patient = request.args.get("patient")
            if not patient:
                return render_template("demo_pick_patient.html", patients=_patients(smart.store),
                                       params=[(k, v) for k, v in request.args.items(multi=True) if k != "patient"])
            if smart.store.read("Patient", patient) is None:
                return _error_redirect_or_page(server, "invalid_request", "unknown patient")
            context = LaunchContext(patient)
        if request.args.get("aud", "").rstrip("/") != fhir_base():
            return _error_redirect_or_page(server, "invalid_request", "aud must be this FHIR server's base URL")
        user = DemoUser(context)
        try:
            grant = server.get_consent_grant(end_user=user)
        except OAuth2Error as error:
            return server.handle_error_response(None, error)
        return server.create_authorization_response(grant=grant, grant_user=user)

    @bp.post("/_services/smart/Launch")
    def create_launch() -> tuple[Response, int] | Response:
        body = request.get_json(silent=True)
        parameters = body.get("parameters") if isinstance(body, dict) else None
        patient = parameters.get("patient") if isinstance(parameters, dict) else None
        app_context = parameters.get("appContext") if isinstance(parameters, dict) else None
        if not isinstance(patient, str) or smart.store.read("Patient", patient) is None:
            return jsonify({"error": "parameters.patient must be the id of a patient on this server"}), 400
        if app_context is not None and (not isinstance(app_context, str) or len(app_context) > MAX_APP_CONTEXT):
            return jsonify({"error": f"parameters.appContext must be a string of at most {MAX_APP_CONTEXT} "
                                     "characters"}), 400
        return jsonify({"launch_id": smart.new_launch(LaunchContext(patient, app_context))})

    @bp.post("/auth/token")
    def token() -> Response:
        server = smart.server
        assert server is not None
        return server.create_token_response()

    def _error_redirect_or_page(server: AuthorizationServer, error: str, description: str) -> Response:
        """An OAuth error: redirected to the client when its redirect URL checks out, else a 400 JSON body."""
        try:
            server.get_consent_grant(end_user=DemoUser(None))
        except OAuth2Error as exc:
            return server.handle_error_response(None, exc)
        redirect_uri = request.args.get("redirect_uri", "")
        query = {"error": error, "error_description": description}
        if request.args.get("state"):
            query["state"] = request.args["state"]
        response = Response(status=302)
        response.headers["Location"] = f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(query)}"
        return response

    return bp


def _patients(store: FhirStore) -> list[tuple[str, str]]:
    """(id, display name) of the demo patients, for the standalone-launch picker."""
    out = []
    for patient in store.patients():
        name = (patient.get("name") or [{}])[0]
        shown = " ".join([*name.get("given", []), name.get("family", "")]).strip() or patient["id"]
        out.append((patient["id"], shown))
    return out
