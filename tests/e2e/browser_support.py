"""Helpers for the real-browser test: a test issuer (ES384 key + JWKS file), the service as a real process,
and a static server that gives the client page its own origin."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tests.service.support import serving

ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ISSUER = "https://sandbox.test"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Issuer:
    """A CDS Client's signing key, published to the service as a JWKS file."""

    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    kid: str = field(default_factory=lambda: f"e2e-{uuid.uuid4().hex[:8]}")
    iss: str = ISSUER

    def write_jwks(self, path: Path) -> Path:
        jwk = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, use="sig", alg="ES384")
        path.write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
        return path

    def token(self, aud: str, *, age: int = 0) -> str:
        """A sandbox-style JWT for exactly ``aud``: new jti, exp = iat + 300; ``age`` seconds in the past."""
        now = int(time.time()) - age
        claims = {"iss": self.iss, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self.key, algorithm="ES384", headers={"typ": "JWT", "kid": self.kid})


def hcc_cds_executable() -> str:
    candidate = Path(sys.executable).parent / "hcc-cds"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("hcc-cds")
    if not found:
        raise RuntimeError("the hcc-cds console script is not installed (pip install -e .)")
    return found


@dataclass
class ServiceProcess:
    base: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _wait_healthy(base: str, process: subprocess.Popen, log_path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hcc-cds serve exited with {process.returncode}:\n{log_path.read_text()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"hcc-cds serve did not become healthy in {timeout}s:\n{log_path.read_text()}")


@contextlib.contextmanager
def run_service(tmp: Path, jwks_file: Path, iss: str = ISSUER) -> Iterator[ServiceProcess]:
    """``hcc-cds serve --port P`` (demo data on, JWT auth required) as a real process."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HCC_CDS_")}
    env.update({
        "HCC_CDS_AUTH": "required",
        "HCC_CDS_TRUSTED_ISSUERS": json.dumps({iss: str(jwks_file)}),
        "HCC_CDS_FEEDBACK_DB": f"sqlite:///{tmp / 'db.sqlite3'}",
        "PYTHONUNBUFFERED": "1",
    })
    log_path = tmp / "service.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [hcc_cds_executable(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, process, log_path)
        yield ServiceProcess(base, process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def static_server(directory: Path = E2E_DIR) -> Iterator[str]:
    """A plain static HTTP server for the client page, on its own port (hence its own origin)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    with serving(ThreadingHTTPServer(("127.0.0.1", free_port()), handler)) as port:
        yield f"http://127.0.0.1:{port}"


@dataclass
class InProcessService:
    """The demo service on a real HTTP server thread of this process (tokens and the database readable)."""

    base: str
    app: object
    log_stream: object

    def db(self):  # type: ignore[no-untyped-def]
        return self.app.extensions["hcc_cds_db"]()  # type: ignore[attr-defined]

    def issued_tokens(self) -> list[str]:
        return self.app.extensions["hcc_cds_demo_smart"].tokens.keys()  # type: ignore[attr-defined]

    def log_text(self) -> str:
        return self.log_stream.getvalue()  # type: ignore[attr-defined]


@contextlib.contextmanager
def run_in_process(tmp: Path) -> Iterator[InProcessService]:
    """``hcc-cds serve``'s app (demo defaults: auth optional, embedded FHIR + SMART server, demo page)."""
    import io
    import logging

    from werkzeug.serving import make_server

    from service import create_app
    from service.config import Settings

    env = {"HCC_CDS_FEEDBACK_DB": f"sqlite:///{tmp / 'db.sqlite3'}", "HCC_CDS_LOG_LEVEL": "DEBUG",
           "HCC_CDS_APP_FRAME_ANCESTORS": "'self' http://localhost:*"}  # a cross-site "EHR" for the iframe test
    app = create_app(Settings.from_env(env, demo=True))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    try:
        with serving(make_server("127.0.0.1", free_port(), app, threaded=True)) as port:
            yield InProcessService(f"http://127.0.0.1:{port}", app, stream)
    finally:
        logging.getLogger().removeHandler(handler)
