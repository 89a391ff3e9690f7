"""Helpers shared by the service tests: recorded fixture requests, their evaluation time, a JWT issuer, and a
real HTTP server thread for a WSGI app or a plain handler."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ROOT = Path(__file__).resolve().parents[2]
PATIENTS_DIR = ROOT / "fixtures" / "patients"
REQUESTS_DIR = ROOT / "fixtures" / "requests"


@contextlib.contextmanager
def serving(server) -> Iterator[int]:  # type: ignore[no-untyped-def]
    """Run ``server`` (werkzeug's make_server or an http.server) in a thread; yield its port; shut it down."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def fixture_request(name: str, hook: str = "patient-view") -> dict:
    return json.loads((REQUESTS_DIR / f"{name}.{hook}.json").read_text(encoding="utf-8"))


def evaluated_at(request: dict) -> datetime:
    return datetime.fromisoformat(request["extension"]["hcc-cds.fixture"]["evaluatedAt"].replace("Z", "+00:00"))


@dataclass
class Issuer:
    """A CDS Client's ES384 signing key, trusted by the service through a JWKS file."""

    iss: str = "https://ehr.test"
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    kid: str = "test-key-1"

    def write_jwks(self, path: Path) -> Path:
        jwk = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, use="sig", alg="ES384")
        path.write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
        return path

    def token(self, aud: str, jti: str | None = None) -> str:
        now = int(time.time())
        claims = {"iss": self.iss, "aud": aud, "iat": now, "exp": now + 300, "jti": jti or str(uuid.uuid4())}
        return jwt.encode(claims, self.key, algorithm="ES384", headers={"typ": "JWT", "kid": self.kid})

    def headers(self, aud: str, jti: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(aud, jti)}"}
