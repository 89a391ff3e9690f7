"""Server-side sessions of the pathway app: the access token stays here, the browser holds only a random id.

A session is a cookie ``hcc_app_session`` (random, HttpOnly; ``Secure; SameSite=None; Partitioned`` whenever
the page is served over HTTPS or from a loopback host, so it works inside an EHR's iframe) naming an entry of
an in-memory table with expiry. No patient data are kept: only the FHIR base, the patient id, the card uuid
from ``appContext``, the token and its expiry, pending ``state``/PKCE verifiers and a CSRF token.

In-memory means per process: run the app's service with one worker process (threads are fine) or sticky
sessions; a lost session only asks the user to launch again.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from flask import Request, Response

from service.expiring import ExpiringMap

COOKIE = "hcc_app_session"
LIFETIME = 3600  # seconds; never longer than the token's own expiry
PENDING_LIFETIME = 600  # an authorization must come back within 10 minutes
MAX_SESSIONS = 5000
MAX_PENDING = 8  # launches in flight per browser session


@dataclass
class Pending:
    """One authorization in flight (keyed by its ``state``)."""

    iss: str
    token_endpoint: str
    code_verifier: str
    redirect_uri: str
    created: float = field(default_factory=time.monotonic)


@dataclass
class Session:
    id: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    pending: dict[str, Pending] = field(default_factory=dict)
    iss: str | None = None
    patient: str | None = None
    card: str | None = None  # the uuid of the card whose SMART link launched the app
    access_token: str | None = field(default=None, repr=False)
    token_expires: float = 0.0
    open_server: bool = False  # the CDS Hooks sandbox's open-server link (demo only): no token at all

    def authorized(self) -> bool:
        if self.open_server:
            return bool(self.patient and self.iss)
        return bool(self.access_token and self.patient and self.iss) and time.monotonic() < self.token_expires

    def __repr__(self) -> str:  # never print the token (or the id) into a log
        return f"Session(authorized={self.authorized()})"


class SessionStore:
    """Thread-safe table of sessions with expiry; the oldest entries go first when it is full."""

    def __init__(self) -> None:
        self._sessions: ExpiringMap[Session] = ExpiringMap(LIFETIME, MAX_SESSIONS)
        self._lock = threading.Lock()  # a session's pending authorizations

    def get(self, req: Request) -> Session | None:
        sid = req.cookies.get(COOKIE)
        return self._sessions.get(sid) if sid else None

    def get_or_create(self, req: Request) -> Session:
        existing = self.get(req)
        if existing is not None:
            return existing
        session = Session(secrets.token_urlsafe(32))
        self._sessions.put(session.id, session)
        return session

    def add_pending(self, session: Session, state: str, pending: Pending) -> None:
        with self._lock:
            now = time.monotonic()
            session.pending = {k: p for k, p in session.pending.items() if now - p.created < PENDING_LIFETIME}
            while len(session.pending) >= MAX_PENDING:
                del session.pending[next(iter(session.pending))]
            session.pending[state] = pending

    def take_pending(self, session: Session, state: str) -> Pending | None:
        with self._lock:
            pending = session.pending.pop(state, None)
        if pending is None or time.monotonic() - pending.created >= PENDING_LIFETIME:
            return None
        return pending


def set_cookie(response: Response, req: Request, session: Session) -> None:
    """The session cookie; third-party-iframe friendly where the browser allows Secure cookies."""
    host = (req.host.rsplit(":", 1)[0] if not req.host.startswith("[") else req.host.split("]")[0] + "]").lower()
    secure = req.is_secure or host in {"localhost", "127.0.0.1", "[::1]"}
    response.set_cookie(COOKIE, session.id, max_age=LIFETIME, path="/app", httponly=True, secure=secure,
                        samesite="None" if secure else "Lax", partitioned=secure)
