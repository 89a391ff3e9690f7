"""All ``HCC_CDS_*`` settings, read in one place (service-contract.md §7).

A variable that is set always wins; the demo (``hcc-cds serve`` without ``--no-demo-data``) only changes
the defaults: JWT auth ``optional``, the CDS Hooks sandbox's published key trusted, and any http(s)
``fhirServer`` allowed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cards.policy import Policy, PolicyError, default_policy, load_policy

PACKAGE_DATA = Path(__file__).resolve().parent / "data"
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JWKS_FILE = PACKAGE_DATA / "sandbox-cds-hooks-org-jwks.json"
# The SMART launcher and the CDS Hooks sandbox show apps in an iframe of their own origin.
DEMO_FRAME_ANCESTORS = "'self' https://launch.smarthealthit.org https://sandbox.cds-hooks.org"
DEFAULT_FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "patients"


class ConfigError(ValueError):
    """A setting has a value the service cannot use."""


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _policy(path: str | None) -> Policy:
    """The site policy named by HCC_CDS_POLICY, else the bundled default; a bad file stops start-up in one line."""
    try:
        return load_policy(path or None)
    except PolicyError as exc:
        raise ConfigError(f"HCC_CDS_POLICY: {exc}") from None


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    auth_mode: str = "required"  # required | optional | off
    trusted_issuers: Mapping[str, str] = field(default_factory=dict)  # iss -> JWKS URL or file path
    jku_allowlist: tuple[str, ...] = ()
    fhir_allowlist: tuple[str, ...] = ()  # base-URL prefixes; ("*",) = any http(s) URL
    feedback_db: str = "sqlite:///hcc-cds.sqlite3"
    public_url: str | None = None
    cors_origins: tuple[str, ...] = ("*",)
    max_body_bytes: int = 4 * 1024 * 1024
    demo_data: bool = False
    fixtures_dir: Path = DEFAULT_FIXTURES_DIR
    policy: Policy = field(default_factory=default_policy)  # every [derived] value (HCC_CDS_POLICY, contract §9)
    fhir_connect_timeout: float = 1.0
    fhir_read_timeout: float = 2.0
    fhir_deadline: float = 4.0  # overall budget for FHIR fetches in one hook call
    fhir_max_bytes: int = 20 * 1024 * 1024
    fhir_max_pages: int = 50
    jwt_leeway: int = 30
    log_level: str = "INFO"
    app_client_id: str = "hcc-cds-pathway-app"  # the pathway app's SMART client id (contract §10)
    app_redirect_url: str | None = None  # unset: {the URL the launch reached}/app/callback
    app_frame_ancestors: str = "'self'"  # CSP frame-ancestors of the app pages (EHR iframes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, demo: bool = False) -> Settings:
        env = os.environ if environ is None else environ
        defaults: dict[str, object] = {}
        if demo:
            defaults = {
                "auth_mode": "optional",
                "trusted_issuers": {SANDBOX_ISSUER: str(SANDBOX_JWKS_FILE)},
                "fhir_allowlist": ("*",),
                "demo_data": True,
                "app_frame_ancestors": DEMO_FRAME_ANCESTORS,
            }

        def get(name: str, default: object) -> object:
            return env.get(f"HCC_CDS_{name}", default)

        try:
            issuers_raw = env.get("HCC_CDS_TRUSTED_ISSUERS")
            if issuers_raw is None:
                issuers = defaults.get("trusted_issuers", {})
            else:
                issuers = json.loads(issuers_raw) if issuers_raw.strip() else {}
            if not isinstance(issuers, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in issuers.items()
            ):
                raise ConfigError("HCC_CDS_TRUSTED_ISSUERS must be a JSON object of iss -> JWKS URL/file")
            allow_raw = env.get("HCC_CDS_FHIR_ALLOWLIST")
            allowlist = _csv(allow_raw) if allow_raw is not None else defaults.get("fhir_allowlist", ())
            auth_mode = str(get("AUTH", defaults.get("auth_mode", "required"))).lower()
            if auth_mode not in {"required", "optional", "off"}:
                raise ConfigError("HCC_CDS_AUTH must be required, optional or off")
            settings = cls(
                host=str(get("HOST", "127.0.0.1")),
                port=int(get("PORT", 8080)),
                auth_mode=auth_mode,
                trusted_issuers=dict(issuers),
                jku_allowlist=_csv(str(get("JKU_ALLOWLIST", ""))),
                fhir_allowlist=tuple(allowlist),
                feedback_db=str(get("FEEDBACK_DB", "sqlite:///hcc-cds.sqlite3")),
                public_url=(str(get("PUBLIC_URL", "")).rstrip("/") or None),
                cors_origins=_csv(str(get("CORS_ORIGINS", "*"))),
                max_body_bytes=int(get("MAX_BODY_BYTES", 4 * 1024 * 1024)),
                demo_data=bool(defaults.get("demo_data", False)),
                fixtures_dir=Path(str(get("FIXTURES_DIR", DEFAULT_FIXTURES_DIR))),
                policy=_policy(env.get("HCC_CDS_POLICY")),
                fhir_connect_timeout=float(get("FHIR_CONNECT_TIMEOUT", 1.0)),
                fhir_read_timeout=float(get("FHIR_READ_TIMEOUT", 2.0)),
                fhir_deadline=float(get("FHIR_DEADLINE", 4.0)),
                fhir_max_bytes=int(get("FHIR_MAX_BYTES", 20 * 1024 * 1024)),
                fhir_max_pages=int(get("FHIR_MAX_PAGES", 50)),
                log_level=str(get("LOG_LEVEL", "INFO")).upper(),
                jwt_leeway=int(get("JWT_LEEWAY", 30)),
                app_client_id=str(get("APP_CLIENT_ID", "hcc-cds-pathway-app")).strip() or "hcc-cds-pathway-app",
                app_redirect_url=(str(get("APP_REDIRECT_URL", "")).strip() or None),
                app_frame_ancestors=str(get("APP_FRAME_ANCESTORS", defaults.get("app_frame_ancestors", "'self'"))),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"invalid HCC_CDS_* setting: {exc}") from exc
        return settings
