"""JWT bearer authentication of CDS Clients (CDS Hooks 2.0 "Trusting CDS Clients"; service-contract.md §6).

``authenticate()`` is called by every protected view (service calls and feedback; discovery does not call
it). Mode ``off`` ignores the Authorization header, ``optional`` verifies a token only when the header is
there, ``required`` demands a valid one. Every failure raises ``ServiceError(401, "unauthorized")`` with the
same body; the reason is logged as a short code with the token's ``iss``/``kid``/``jti`` only, never the
token itself.

Verification order (cheap, key-free checks first):

1. ``Authorization: Bearer <JWT>`` (scheme case-insensitive, one token, bounded size).
2. JOSE header: ``alg`` is ES384 or RS384 (``none``, ``HS*`` and everything else are rejected before any key
   is looked at), ``typ`` is ``JWT`` when present, ``kid`` is a non-empty string, no ``crit``.
3. ``iss`` (read unverified only to choose the key source) is a configured trusted issuer.
4. Key source: the issuer's JWKS *file* (a token ``jku`` is then ignored and never fetched) or the issuer's
   JWKS *URL* (a token ``jku`` must equal that URL or be in ``HCC_CDS_JKU_ALLOWLIST``, else reject; keys are
   always fetched from the configured URL, so a ``jku`` can never inject keys). URL key sets are cached per
   app and refreshed on an unknown ``kid`` at most once per 60 s; a fetch gives up after 2 s in all, and no lock is
   held while it runs.
5. The key selected by ``kid`` must match ``alg`` (EC P-384 for ES384, RSA >= 2048 bits for RS384).
6. Signature, ``iss``, ``aud`` (exactly the expected URL; string or array), ``exp``/``iat``/``jti`` present,
   ``exp``/``nbf``/``iat`` checked with ``HCC_CDS_JWT_LEEWAY`` seconds of clock skew.
7. ``jti`` replay: a row ``UsedJti(iss|jti)`` is inserted through the shared database; a primary-key conflict
   means the token was already used (shared by all workers and instances on the same database). While the
   database is down, this process's memory of used ids stands in (a database outage is never a 401).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import requests
import urllib3
from flask import current_app, g, request
from sqlalchemy.exc import IntegrityError

from .db import Database, DatabaseUnavailable, UsedJti
from .errors import ServiceError
from .logs import log_event

ALLOWED_ALGORITHMS = frozenset({"ES384", "RS384"})
UNAUTHORIZED = "unauthorized"
JWKS_FETCH_TIMEOUT = 1.0  # seconds per connect / socket read
JWKS_FETCH_DEADLINE = 2.0  # seconds for the whole fetch, body included
JWKS_REFRESH_INTERVAL = 60.0  # seconds between two fetches of the same JWKS URL
JWKS_MAX_BYTES = 256 * 1024
MAX_TOKEN_CHARS = 16 * 1024
MAX_TOKEN_LIFETIME = 3600  # seconds between iat and exp; CDS Hooks asks for short-lived JWTs (≤ 1 h)
MAX_JTI_CHARS = 255
MIN_RSA_BITS = 2048
_EXTENSION = "hcc_cds_auth"
# RFC 6750 §3: a 401 names the scheme; the error detail stays in the log, not in the response.
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="hcc-cds", error="invalid_token"'}


class _Reject(Exception):
    """Internal: verification failed for ``reason`` (a short code, safe to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _is_url(source: str) -> bool:
    return source.startswith(("https://", "http://"))


# --------------------------------------------------------------------------------------------- key sets


@dataclass
class _KeySet:
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # kid -> JWK
    fetched_at: float = float("-inf")  # monotonic time of the last attempt (successful or not)
    stamp: object = None  # file: (mtime_ns, size)


def _parse_jwks(document: Any) -> dict[str, dict[str, Any]]:
    """kid -> JWK for the public signature keys of a JWK Set; anything else is skipped."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        return {}
    keys: dict[str, dict[str, Any]] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, Mapping):
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or jwk.get("kty") not in {"EC", "RSA"}:
            continue
        if "d" in jwk or "p" in jwk:  # a private key has no business in a trust store
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        keys.setdefault(kid, dict(jwk))
    return keys


class KeyStore:
    """JWKS files and URLs, cached per app. Thread-safe.

    A JWKS URL is fetched by one thread at a time with no lock held over the network call: other requests for
    the same issuer wait for that fetch (at most its deadline) or use the keys they already have.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the dicts and each _KeySet; never held over I/O
        self._sets: dict[str, _KeySet] = {}
        self._in_flight: dict[str, threading.Event] = {}

    def clear(self) -> None:
        with self._lock:
            self._sets.clear()

    def get(self, source: str, kid: str) -> dict[str, Any] | None:
        if _is_url(source):
            return self._from_url(source, kid)
        return self._from_file(source, kid)

    def _from_file(self, path: str, kid: str) -> dict[str, Any] | None:
        try:
            stat = Path(path).stat()
        except OSError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._sets.get(path)
        if cached is None or cached.stamp != stamp:
            try:
                document = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            cached = _KeySet(keys=_parse_jwks(document), stamp=stamp)
            with self._lock:
                self._sets[path] = cached
        return cached.keys.get(kid)

    def _from_url(self, url: str, kid: str) -> dict[str, Any] | None:
        with self._lock:
            cached = self._sets.setdefault(url, _KeySet())
            if kid in cached.keys:
                return cached.keys[kid]
            in_flight = self._in_flight.get(url)
            fetch_now = in_flight is None and time.monotonic() - cached.fetched_at >= JWKS_REFRESH_INTERVAL
            if fetch_now:
                cached.fetched_at = time.monotonic()  # one attempt per interval, successful or not
                in_flight = self._in_flight[url] = threading.Event()
        if in_flight is None:
            return None  # unknown kid, refreshed recently: do not hammer the issuer
        if not fetch_now:
            in_flight.wait(JWKS_FETCH_DEADLINE)  # someone else is fetching: wait for it, bounded
            with self._lock:
                return self._sets[url].keys.get(kid)
        keys = None
        try:
            keys = _fetch_jwks(url)
        finally:
            with self._lock:
                if keys is not None:
                    self._sets[url].keys = keys
                self._in_flight.pop(url, None)
            in_flight.set()
        return (keys or {}).get(kid)


def _fetch_jwks(url: str, deadline: float = JWKS_FETCH_DEADLINE) -> dict[str, dict[str, Any]] | None:
    """The JWK Set at ``url``, read within ``deadline`` seconds in all (a drip-fed body is cut off); None when it
    cannot be fetched or parsed in time (the old keys stay in use)."""
    ends = time.monotonic() + deadline
    try:
        with requests.get(url, timeout=(JWKS_FETCH_TIMEOUT, JWKS_FETCH_TIMEOUT),
                          headers={"Accept": "application/json"}, stream=True, allow_redirects=False) as response:
            if response.status_code != 200:
                return None
            read = getattr(response.raw, "read1", None) or response.raw.read
            body = bytearray()
            while chunk := read(16 * 1024, decode_content=True):
                body += chunk
                if len(body) > JWKS_MAX_BYTES or time.monotonic() > ends:
                    return None
            return _parse_jwks(json.loads(body))
    except (requests.RequestException, urllib3.exceptions.HTTPError, ValueError, OSError):
        return None


def _key_store() -> KeyStore:
    return current_app.extensions.setdefault(_EXTENSION, {}).setdefault("keys", KeyStore())


def _public_key(jwk: Mapping[str, Any], alg: str) -> jwt.PyJWK:
    """The JWK as a PyJWK bound to ``alg``; rejects keys of the wrong type, curve, size or declared alg."""
    declared = jwk.get("alg")
    if declared is not None and declared != alg:
        raise _Reject("key-alg-mismatch")
    if alg == "ES384" and (jwk.get("kty") != "EC" or jwk.get("crv") != "P-384"):
        raise _Reject("key-alg-mismatch")
    if alg == "RS384" and jwk.get("kty") != "RSA":
        raise _Reject("key-alg-mismatch")
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=alg)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        raise _Reject("bad-key") from None
    if alg == "RS384" and getattr(key.key, "key_size", 0) < MIN_RSA_BITS:
        raise _Reject("bad-key")
    return key


# ------------------------------------------------------------------------------------------ verification


def expected_audience() -> str:
    """The URL this request was sent to, which the token's ``aud`` must name exactly.

    ``HCC_CDS_PUBLIC_URL`` + the request path when configured (behind a proxy), else the URL the request
    actually reached, without the query string.
    """
    settings = current_app.config["HCC_CDS"]
    if settings.public_url:
        return settings.public_url.rstrip("/") + request.path
    return request.base_url


def _bearer_token(header: str) -> str:
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _Reject("not-bearer")
    if len(token) > MAX_TOKEN_CHARS or any(ch.isspace() for ch in token) or token.count(".") != 2:
        raise _Reject("malformed")
    return token


def _verify(token: str, settings: Any, fields: dict[str, Any]) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.InvalidTokenError, ValueError, TypeError):
        raise _Reject("malformed") from None
    if not isinstance(header, dict):
        raise _Reject("malformed")
    kid = header.get("kid")
    if isinstance(kid, str):
        fields["kid"] = kid
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
        raise _Reject("alg-not-allowed")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
        raise _Reject("bad-typ")
    if "crit" in header:
        raise _Reject("crit-not-supported")
    if not isinstance(kid, str) or not kid:
        raise _Reject("missing-kid")

    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except (jwt.InvalidTokenError, ValueError, TypeError):
        raise _Reject("malformed") from None
    iss = unverified.get("iss")
    if not isinstance(iss, str) or not iss:
        raise _Reject("missing-iss")
    fields["iss"] = iss
    jti = unverified.get("jti")
    if isinstance(jti, str):
        fields["jti"] = jti
    source = settings.trusted_issuers.get(iss)
    if not source:
        raise _Reject("untrusted-iss")

    if _is_url(source):
        jku = header.get("jku")
        allowed = isinstance(jku, str) and (jku == source or jku in settings.jku_allowlist)
        if jku is not None and not allowed:
            raise _Reject("jku-not-allowed")
    # A JWKS file is the out-of-band key configuration: the token's jku is ignored and never fetched.

    jwk = _key_store().get(source, kid)
    if jwk is None:
        raise _Reject("unknown-kid")
    key = _public_key(jwk, alg)

    try:
        claims = jwt.decode(
            token,
            key=key,
            algorithms=[alg],
            audience=expected_audience(),
            issuer=iss,
            leeway=settings.jwt_leeway,
            options={
                "require": ["exp", "iat", "iss", "aud", "jti"],
                "verify_signature": True,
                "verify_exp": True,
                "verify_nbf": True,
                "verify_iat": True,
                "verify_aud": True,
                "verify_iss": True,
                "verify_jti": True,
                "enforce_minimum_key_length": True,
            },
        )
    except jwt.InvalidSignatureError:
        raise _Reject("bad-signature") from None
    except jwt.ExpiredSignatureError:
        raise _Reject("expired") from None
    except jwt.ImmatureSignatureError:
        raise _Reject("not-yet-valid") from None
    except jwt.InvalidAudienceError:
        raise _Reject("wrong-aud") from None
    except jwt.MissingRequiredClaimError:
        raise _Reject("missing-claim") from None
    except (jwt.InvalidTokenError, jwt.PyJWKError, ValueError, TypeError, OverflowError):
        raise _Reject("invalid") from None

    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_CHARS:
        raise _Reject("bad-jti")
    exp, iat = claims.get("exp"), claims.get("iat")
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in (exp, iat)):
        raise _Reject("invalid")
    if exp - iat > MAX_TOKEN_LIFETIME:  # a long-lived token would be replayable (and its jti kept) for that long
        raise _Reject("lifetime")
    _remember_jti(iss, jti, float(exp) + settings.jwt_leeway)
    return claims


def _remember_jti(iss: str, jti: str, expires_epoch: float) -> None:
    """Record ``iss|jti`` until it expires; raise ``_Reject("replay")`` when it was seen before.

    The shared database is the replay store. While it is unreachable (service-contract.md §11: never a 401 for
    that) the check falls back to this process's own memory, so a replay within one worker is still refused.
    """
    database: Database = current_app.extensions["hcc_cds_database"]
    key = f"{iss}|{jti}"
    local = _local_jtis()
    if local.seen(key):
        raise _Reject("replay")
    try:
        database.purge_if_due()
        with database.transaction() as session:
            session.add(UsedJti(key=key, expires_at=datetime.fromtimestamp(expires_epoch, UTC)))
    except IntegrityError:
        raise _Reject("replay") from None
    except DatabaseUnavailable as exc:
        log_event("jti_store_unavailable", level=logging.WARNING, reason=exc.reason)
    local.add(key, expires_epoch)


class _LocalJtis:
    """Recently used JWT ids of this process (bounded; entries leave at their expiry)."""

    MAX = 100_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}

    def seen(self, key: str) -> bool:
        with self._lock:
            expires = self._expiry.get(key)
            return expires is not None and expires >= time.time()

    def add(self, key: str, expires_epoch: float) -> None:
        with self._lock:
            if len(self._expiry) >= self.MAX:
                now = time.time()
                self._expiry = {k: v for k, v in self._expiry.items() if v >= now}
                while len(self._expiry) >= self.MAX:  # all still live: drop the soonest to expire
                    self._expiry.pop(min(self._expiry, key=self._expiry.__getitem__))
            self._expiry[key] = expires_epoch


def _local_jtis() -> _LocalJtis:
    return current_app.extensions.setdefault(_EXTENSION, {}).setdefault("local_jtis", _LocalJtis())


def _clip(value: Any) -> Any:
    return value[:200] if isinstance(value, str) else value


def authenticate() -> dict | None:
    """Verify the request's bearer JWT according to ``HCC_CDS_AUTH``.

    Returns the verified claims, or None when auth is ``off`` or (``optional``) no Authorization header was
    sent. Raises ``ServiceError(401, "unauthorized")`` on any failure.
    """
    settings = current_app.config["HCC_CDS"]
    mode = settings.auth_mode
    if mode == "off":
        return None
    header = request.headers.get("Authorization")
    if header is None and mode == "optional":
        return None
    fields: dict[str, Any] = {}
    try:
        if header is None:
            raise _Reject("missing")
        claims = _verify(_bearer_token(header), settings, fields)
    except _Reject as rejection:
        log_event("auth", outcome="rejected", reason=rejection.reason,
                  **{k: _clip(v) for k, v in fields.items()})
        raise ServiceError(401, UNAUTHORIZED, "auth:" + rejection.reason, _CHALLENGE) from None
    except Exception as exc:  # anything unexpected is still a plain 401, never a 500 with details
        log_event("auth", outcome="rejected", reason="error", error_type=type(exc).__name__,
                  **{k: _clip(v) for k, v in fields.items()})
        raise ServiceError(401, UNAUTHORIZED, "auth:error", _CHALLENGE) from None
    g.auth_iss = claims.get("iss")
    return claims
