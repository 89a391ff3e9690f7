"""SMART App Launch 2 client side of the pathway app, on Authlib's OAuth 2 client (service-contract.md §10).

Library decision: fhirclient (4.4) does PKCE S256 but discovers endpoints only from the CapabilityStatement's
``oauth-uris`` extension, not from ``.well-known/smart-configuration`` (SMART App Launch 2 §2.1), posts the
token request without a timeout, and keeps the token in a state dict the app must persist. Authlib's
``OAuth2Session`` gives PKCE S256, ``state`` and the token request with timeouts, and lets the token stay in
the server-side session (:mod:`service.app.sessions`).

Flow: ``.well-known/smart-configuration`` of ``iss`` (on the FHIR allowlist only, bounded time and size) →
authorization URL (``response_type=code``, ``client_id``, ``redirect_uri``, ``scope``, ``state``, ``aud=iss``,
``launch`` for an EHR launch, ``code_challenge`` S256) → code exchange at the token endpoint.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2 import OAuth2Error

from service.config import Settings
from service.fhir import is_allowed

EHR_SCOPE = "launch openid fhirUser patient/*.read"
STANDALONE_SCOPE = "launch/patient openid fhirUser patient/*.read"
MAX_DISCOVERY_BYTES = 256 * 1024


class LaunchError(Exception):
    """A launch that cannot go on; the message is safe to show (no token, no patient data)."""


@dataclass(frozen=True)
class SmartEndpoints:
    authorize: str
    token: str


def _http_url(url: object) -> bool:
    return isinstance(url, str) and urlsplit(url).scheme in {"http", "https"} and bool(urlsplit(url).netloc)


def discover(iss: str, settings: Settings) -> SmartEndpoints:
    """The authorization and token endpoints from ``{iss}/.well-known/smart-configuration``; S256 required."""
    if not is_allowed(iss, settings):
        raise LaunchError("this FHIR server (iss) is not on HCC_CDS_FHIR_ALLOWLIST")
    url = iss.rstrip("/") + "/.well-known/smart-configuration"
    try:
        with requests.get(url, headers={"Accept": "application/json"}, stream=True, allow_redirects=False,
                          timeout=(settings.fhir_connect_timeout, settings.fhir_read_timeout)) as response:
            if response.status_code != 200:
                raise LaunchError(f"SMART discovery answered HTTP {response.status_code}")
            body = response.raw.read(MAX_DISCOVERY_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise LaunchError("SMART discovery failed: the FHIR server's .well-known/smart-configuration is "
                          "unreachable") from exc
    if len(body) > MAX_DISCOVERY_BYTES:
        raise LaunchError("SMART discovery document too large")
    try:
        config = json.loads(body)
    except ValueError as exc:
        raise LaunchError("SMART discovery document is not JSON") from exc
    if not isinstance(config, dict):
        raise LaunchError("SMART discovery document is not a JSON object")
    authorize, token = config.get("authorization_endpoint"), config.get("token_endpoint")
    if not (_http_url(authorize) and _http_url(token)):
        raise LaunchError("SMART discovery names no authorization_endpoint/token_endpoint")
    if "S256" not in (config.get("code_challenge_methods_supported") or []):
        raise LaunchError("the authorization server does not support PKCE S256 (SMART App Launch 2 requires it)")
    return SmartEndpoints(str(authorize), str(token))


def authorization_url(endpoints: SmartEndpoints, iss: str, launch: str | None, client_id: str,
                      redirect_uri: str) -> tuple[str, str, str]:
    """(URL to send the browser to, state, PKCE code verifier)."""
    verifier = secrets.token_urlsafe(64)
    client = OAuth2Session(client_id, redirect_uri=redirect_uri, scope=EHR_SCOPE if launch else STANDALONE_SCOPE,
                           code_challenge_method="S256")
    extra = {"aud": iss, **({"launch": launch} if launch else {})}
    url, state = client.create_authorization_url(endpoints.authorize, state=secrets.token_urlsafe(32),
                                                 code_verifier=verifier, **extra)
    return url, state, verifier


def exchange_code(token_endpoint: str, code: str, verifier: str, client_id: str, redirect_uri: str,
                  settings: Settings) -> dict:
    """The token response (access token, patient, appContext …) for an authorization code."""
    client = OAuth2Session(client_id, redirect_uri=redirect_uri, token_endpoint_auth_method="none")
    try:
        token = client.fetch_token(token_endpoint, grant_type="authorization_code", code=code,
                                   code_verifier=verifier, allow_redirects=False,
                                   timeout=(settings.fhir_connect_timeout, settings.fhir_read_timeout))
    except OAuth2Error as exc:
        raise LaunchError(f"the token endpoint refused the code ({exc.error})") from None
    except (requests.RequestException, ValueError) as exc:
        raise LaunchError("the token endpoint could not be reached or did not answer JSON") from exc
    if not isinstance(token.get("access_token"), str):
        raise LaunchError("the token response has no access_token")
    granted = str(token.get("scope") or "").split()
    if granted and not any(scope.startswith(("patient/", "user/")) for scope in granted):  # v1 .read, v2 .rs
        raise LaunchError("the token grants no FHIR read scope (patient/*.read or patient/*.rs)")
    if not isinstance(token.get("patient"), str) or not token["patient"]:
        raise LaunchError("the authorization server gave no patient context")
    return dict(token)


def card_from_app_context(app_context: object) -> str | None:
    """The card uuid in a SMART link's ``appContext``: ``{"cardUuid": "…"}`` (JSON string) or a bare uuid."""
    if not isinstance(app_context, str) or not app_context.strip() or len(app_context) > 2000:
        return None
    try:
        parsed = json.loads(app_context)
    except ValueError:
        parsed = app_context.strip()
    if isinstance(parsed, dict):
        parsed = parsed.get("cardUuid")
    if isinstance(parsed, str) and 0 < len(parsed) <= 80 and all(c.isalnum() or c in "-_." for c in parsed):
        return parsed
    return None
