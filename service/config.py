"""All ``HCC_CDS_*`` settings, read and validated in one place (service-contract.md §7).

A variable that is set always wins; the demo (``hcc-cds serve`` without ``--no-demo-data``) only changes
the defaults: JWT auth ``optional``, the CDS Hooks sandbox's published key trusted, and any http(s)
``fhirServer`` allowed. A value the service cannot use raises ``ConfigError`` whose message is one line naming
the variable and the reason (the entry points print it and exit; never a traceback).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from cards.policy import Policy, PolicyError, default_policy, load_policy

PACKAGE_DATA = Path(__file__).resolve().parent / "data"
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JWKS_FILE = PACKAGE_DATA / "sandbox-cds-hooks-org-jwks.json"
DEFAULT_FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "patients"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The SMART launcher and the CDS Hooks sandbox show apps in an iframe of their own origin.
DEMO_FRAME_ANCESTORS = "'self' https://launch.smarthealthit.org https://sandbox.cds-hooks.org"
T = TypeVar("T")


class ConfigError(ValueError):
    """A setting has a value the service cannot use; the message names the variable and the reason."""


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"must be a whole number, got {raw[:40]!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value
    return parse


def _float(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"must be a number of seconds, got {raw[:40]!r}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}, got {raw.strip()[:40]}")
        return value
    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {raw[:40]!r}")
        return value
    return parse


def _log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {raw[:40]!r}")
    return value


def _issuers(raw: str) -> dict[str, str]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise ValueError("must be a JSON object of iss -> JWKS URL or file (not valid JSON)") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("must be a JSON object of iss -> JWKS URL or file")
    return value


def _public_url(raw: str) -> str | None:
    value = raw.strip().rstrip("/")
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError("must be an absolute http(s) base URL without query, e.g. https://cds.example.org")
    return value


def _policy(raw: str) -> Policy:
    """The site policy file (service-contract.md §9); an empty value means the bundled default."""
    try:
        return load_policy(raw.strip() or None)
    except PolicyError as exc:
        raise ValueError(str(exc)) from None


def _replaced_by_policy(raw: str) -> None:
    raise ValueError("replaced by the site policy's current.days (set HCC_CDS_POLICY to a policy file; "
                     "`hcc-cds policy show` prints the values in force)")


def _db_url(raw: str) -> str:
    value = raw.strip()
    if not value.startswith(("sqlite:", "postgresql:", "postgresql+")):
        raise ValueError("must be a SQLAlchemy URL: sqlite:///FILE or postgresql+psycopg://USER@HOST/DB")
    return value


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    auth_mode: str = "required"  # required | optional | off
    trusted_issuers: Mapping[str, str] = field(default_factory=dict)  # iss -> JWKS URL or file path
    jku_allowlist: tuple[str, ...] = ()
    fhir_allowlist: tuple[str, ...] = ()  # base-URL prefixes; ("*",) = any http(s) URL
    feedback_db: str = "sqlite:///hcc-cds.sqlite3"
    db_timeout: float = 2.0  # seconds a database statement or lock wait may take before the call goes on without it
    public_url: str | None = None
    cors_origins: tuple[str, ...] = ("*",)
    max_body_bytes: int = 4 * 1024 * 1024
    demo_data: bool = False
    fixtures_dir: Path = DEFAULT_FIXTURES_DIR
    policy: Policy = field(default_factory=default_policy)  # every [derived] value (HCC_CDS_POLICY, contract §9)
    fhir_connect_timeout: float = 1.0
    fhir_read_timeout: float = 2.0
    fhir_deadline: float = 4.0  # overall budget of one hook call, counted from when the request arrived
    fhir_max_bytes: int = 12 * 1024 * 1024  # all responses of one hook call together
    fhir_max_response_bytes: int = 4 * 1024 * 1024  # one response (read as a stream, refused past this)
    fhir_max_pages: int = 50
    fhir_max_requests: int = 60  # outbound requests per hook call, all keys and pages together
    fhir_host_concurrency: int = 6  # hook calls of one worker process fetching from one FHIR host at once
    jwt_leeway: int = 30
    log_level: str = "INFO"
    workers: int = 0  # gunicorn workers; 0 = 2 x cores + 1, at most 8
    threads: int = 8
    forwarded_allow_ips: str = "127.0.0.1,::1"  # proxies whose X-Forwarded-* headers gunicorn trusts
    app_client_id: str = "hcc-cds-pathway-app"  # the pathway app's SMART client id (contract §10)
    app_redirect_url: str | None = None  # unset: {the URL the launch reached}/app/callback
    app_frame_ancestors: str = "'self'"  # CSP frame-ancestors of the app pages (EHR iframes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, demo: bool = False) -> Settings:
        """Settings from ``HCC_CDS_*``; ``ConfigError`` (one line naming the variable) on a bad value."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if demo:
            values = {"auth_mode": "optional", "trusted_issuers": {SANDBOX_ISSUER: str(SANDBOX_JWKS_FILE)},
                      "fhir_allowlist": ("*",), "demo_data": True, "app_frame_ancestors": DEMO_FRAME_ANCESTORS}

        def read(name: str, attr: str, parse: Callable[[str], object]) -> None:
            raw = env.get(f"HCC_CDS_{name}")
            if raw is None:
                return
            try:
                values[attr] = parse(raw)
            except ValueError as exc:
                raise ConfigError(f"HCC_CDS_{name}: {exc}") from None

        read("HOST", "host", lambda raw: raw.strip() or "127.0.0.1")
        read("PORT", "port", _int(1, 65535))
        read("AUTH", "auth_mode", _choice("required", "optional", "off"))
        read("TRUSTED_ISSUERS", "trusted_issuers", _issuers)
        read("JKU_ALLOWLIST", "jku_allowlist", _csv)
        read("FHIR_ALLOWLIST", "fhir_allowlist", _csv)
        read("FEEDBACK_DB", "feedback_db", _db_url)
        read("DB_TIMEOUT", "db_timeout", _float(0.1, 30))
        read("PUBLIC_URL", "public_url", _public_url)
        read("CORS_ORIGINS", "cors_origins", _csv)
        read("MAX_BODY_BYTES", "max_body_bytes", _int(1024, 256 * 1024 * 1024))
        read("FIXTURES_DIR", "fixtures_dir", lambda raw: Path(raw))
        read("POLICY", "policy", _policy)
        read("CURRENT_DAYS", "current_days", _replaced_by_policy)
        read("FHIR_CONNECT_TIMEOUT", "fhir_connect_timeout", _float(0.05, 60))
        read("FHIR_READ_TIMEOUT", "fhir_read_timeout", _float(0.05, 60))
        read("FHIR_DEADLINE", "fhir_deadline", _float(0.1, 60))
        read("FHIR_MAX_BYTES", "fhir_max_bytes", _int(1024, 1024 * 1024 * 1024))
        read("FHIR_MAX_RESPONSE_BYTES", "fhir_max_response_bytes", _int(1024, 1024 * 1024 * 1024))
        read("FHIR_MAX_PAGES", "fhir_max_pages", _int(1, 1000))
        read("FHIR_MAX_REQUESTS", "fhir_max_requests", _int(1, 10000))
        read("FHIR_HOST_CONCURRENCY", "fhir_host_concurrency", _int(1, 1000))
        read("JWT_LEEWAY", "jwt_leeway", _int(0, 300))
        read("LOG_LEVEL", "log_level", _log_level)
        read("WORKERS", "workers", _int(0, 64))
        read("THREADS", "threads", _int(1, 256))
        read("FORWARDED_ALLOW_IPS", "forwarded_allow_ips", lambda raw: raw.strip() or "127.0.0.1,::1")
        read("APP_CLIENT_ID", "app_client_id", lambda raw: raw.strip() or "hcc-cds-pathway-app")
        read("APP_REDIRECT_URL", "app_redirect_url", _public_url)
        read("APP_FRAME_ANCESTORS", "app_frame_ancestors", lambda raw: raw.strip() or "'self'")
        return cls(**values)  # type: ignore[arg-type]


def production_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings of the production entry point (gunicorn, ``service.wsgi``): ``from_env`` plus what serving needs.

    With ``HCC_CDS_AUTH=required`` the JWT ``aud`` must come from configuration, never from the request's Host
    or X-Forwarded-* headers (which a client chooses), so ``HCC_CDS_PUBLIC_URL`` must be set.
    """
    settings = Settings.from_env(environ)
    if settings.auth_mode == "required" and not settings.public_url:
        raise ConfigError("HCC_CDS_PUBLIC_URL: must be set when HCC_CDS_AUTH=required (the JWT audience is the "
                          "configured public URL, never the request's Host header)")
    return settings


def env_or_exit(load: Callable[[], T], status: int = 2) -> T:
    """Run a settings loader; on ``ConfigError`` print its one line and exit with ``status`` (no traceback)."""
    try:
        return load()
    except ConfigError as exc:
        import sys

        print(f"hcc-cds: configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(status) from None
