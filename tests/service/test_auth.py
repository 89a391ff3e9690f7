"""JWT bearer authentication (service/auth.py; service-contract.md §6, checklist §1.K).

Tests go through a real Flask app from ``create_app`` with a throwaway blueprint whose POST route calls
``authenticate()``, plus the real patient-view endpoint when ``service.hooks`` provides it.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Blueprint, jsonify
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from service import auth as auth_module
from service import create_app
from service.config import SANDBOX_ISSUER, SANDBOX_JWKS_FILE, Settings
from service.db import UsedJti
from service.errors import error_response
from tests.service.fhir_test_servers import closed_port_url

ISS = "https://ehr.example"
PROBE_URL = "http://localhost/probe/svc"
PATIENT_VIEW = "hcc-second-line-patient-view"
DROP = object()


probe = Blueprint("auth_probe", __name__)


@probe.post("/probe/<sid>")
def _probe(sid: str):
    claims = auth_module.authenticate()
    return jsonify({"ok": True, "sid": sid, "iss": (claims or {}).get("iss")})


# --- keys and tokens --------------------------------------------------------------------------------


@dataclasses.dataclass
class Keys:
    ec: ec.EllipticCurvePrivateKey
    rsa: rsa.RSAPrivateKey
    other_ec: ec.EllipticCurvePrivateKey
    ec_kid: str = "ec-key-1"
    rsa_kid: str = "rsa-key-1"

    def jwks(self) -> dict:
        ec_jwk = ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True)
        rsa_jwk = RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True)
        ec_jwk.update(kid=self.ec_kid, use="sig", alg="ES384")
        rsa_jwk.update(kid=self.rsa_kid, use="sig", alg="RS384")
        return {"keys": [ec_jwk, rsa_jwk]}

    def ec_public_pem(self) -> bytes:
        return self.ec.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        ec=ec.generate_private_key(ec.SECP384R1()),
        rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        other_ec=ec.generate_private_key(ec.SECP384R1()),
    )


def claims(**overrides: Any) -> dict:
    now = int(time.time())
    payload: dict[str, Any] = {"iss": ISS, "aud": PROBE_URL, "iat": now, "exp": now + 300,
                               "jti": str(uuid.uuid4())}
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not DROP}


def token(keys: Keys, alg: str = "ES384", *, kid: str | None = None, headers: dict | None = None,
          key: Any = None, **claim_overrides: Any) -> str:
    if key is None:
        key = keys.rsa if alg.startswith(("RS", "PS")) else keys.ec
    if kid is None:
        kid = keys.rsa_kid if alg.startswith(("RS", "PS")) else keys.ec_kid
    header = {"kid": kid, "typ": "JWT", **(headers or {})}
    return jwt.encode(claims(**claim_overrides), key, algorithm=alg, headers=header)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict, payload: dict, sign) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def bearer(tok: str) -> dict:
    return {"Authorization": f"Bearer {tok}"}


# --- apps ---------------------------------------------------------------------------------------------


@pytest.fixture
def jwks_path(tmp_path: Path, keys: Keys) -> Path:
    path = tmp_path / "ehr-jwks.json"
    path.write_text(json.dumps(keys.jwks()))
    return path


def make_settings(tmp_path: Path, jwks_path: Path, **overrides: Any) -> Settings:
    base = Settings(auth_mode="required", trusted_issuers={ISS: str(jwks_path)},
                    feedback_db=f"sqlite:///{tmp_path}/db.sqlite3")
    return dataclasses.replace(base, **overrides)


def make_app(settings: Settings):
    app = create_app(settings)
    app.register_blueprint(probe)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(tmp_path: Path, jwks_path: Path):
    return make_app(make_settings(tmp_path, jwks_path)).test_client()


def unauthorized_body() -> dict:
    from flask import Flask

    with Flask(__name__).app_context():
        return error_response(401, "unauthorized").get_json()


def assert_401(response) -> None:
    assert response.status_code == 401
    assert response.get_json() == unauthorized_body()


# --- accepted -----------------------------------------------------------------------------------------


def test_valid_es384_token(client, keys):
    response = client.post("/probe/svc", headers=bearer(token(keys, "ES384")))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["iss"] == ISS


def test_valid_rs384_token(client, keys):
    response = client.post("/probe/svc", headers=bearer(token(keys, "RS384")))
    assert response.status_code == 200


def test_aud_array_containing_the_url(client, keys):
    tok = token(keys, aud=["https://somewhere.else/x", PROBE_URL])
    assert client.post("/probe/svc", headers=bearer(tok)).status_code == 200


def test_scheme_is_case_insensitive_and_typ_optional(client, keys):
    tok = jwt.encode(claims(), keys.ec, algorithm="ES384", headers={"kid": keys.ec_kid})
    assert client.post("/probe/svc", headers={"Authorization": f"bearer {tok}"}).status_code == 200


def test_query_string_is_not_part_of_aud(client, keys):
    assert client.post("/probe/svc?x=1", headers=bearer(token(keys))).status_code == 200


def test_clock_skew_within_leeway(client, keys):
    now = int(time.time())
    tok = token(keys, iat=now + 10, nbf=now + 10, exp=now - 10)  # leeway 30 s
    assert client.post("/probe/svc", headers=bearer(tok)).status_code == 200


# --- rejected -----------------------------------------------------------------------------------------


def bad_requests(keys: Keys) -> dict[str, dict]:
    now = int(time.time())
    good_header = {"alg": "ES384", "typ": "JWT", "kid": keys.ec_kid}
    hs_header = {"alg": "HS384", "typ": "JWT", "kid": keys.ec_kid}
    pem = keys.ec_public_pem()
    return {
        "missing header": {},
        "empty header": {"Authorization": ""},
        "wrong scheme": {"Authorization": f"Basic {token(keys)}"},
        "bearer without token": {"Authorization": "Bearer "},
        "two tokens": {"Authorization": f"Bearer {token(keys)} {token(keys)}"},
        "not a jwt": {"Authorization": "Bearer not-a-jwt"},
        "alg none": bearer(jwt.encode(claims(), None, algorithm="none", headers={"kid": keys.ec_kid})),
        "alg none hand made": bearer(hand_made({**good_header, "alg": "none"}, claims(), lambda _: b"")),
        "hs384 with public key as secret": bearer(
            hand_made(hs_header, claims(), lambda data: hmac.new(pem, data, hashlib.sha384).digest())
        ),
        "hs256": bearer(jwt.encode(claims(), "secret" * 8, algorithm="HS256", headers={"kid": keys.ec_kid})),
        "rs256": bearer(token(keys, "RS256")),
        "es256 header with es384 key": bearer(
            hand_made({**good_header, "alg": "ES256"}, claims(), lambda _: b"x" * 96)
        ),
        "rs384 header with ec kid": bearer(token(keys, "RS384", kid=keys.ec_kid)),
        "typ not jwt": bearer(token(keys, headers={"typ": "at+jwt"})),
        "missing kid": bearer(jwt.encode(claims(), keys.ec, algorithm="ES384")),
        "unknown kid": bearer(token(keys, kid="no-such-key")),
        "foreign iss": bearer(token(keys, iss="https://evil.example")),
        "missing iss": bearer(token(keys, iss=DROP)),
        "bad signature": bearer(token(keys, key=keys.other_ec)),
        "tampered payload": bearer(
            (lambda t: t.split(".")[0] + "." + b64(json.dumps(claims(aud=PROBE_URL, x=1)).encode())
             + "." + t.split(".")[2])(token(keys))
        ),
        "aud other service": bearer(token(keys, aud="http://localhost/probe/other")),
        "aud discovery url": bearer(token(keys, aud="http://localhost/cds-services")),
        "aud https instead of http": bearer(token(keys, aud="https://localhost/probe/svc")),
        "aud trailing slash": bearer(token(keys, aud=PROBE_URL + "/")),
        "aud array without the url": bearer(token(keys, aud=["http://localhost/probe/other"])),
        "missing aud": bearer(token(keys, aud=DROP)),
        "expired": bearer(token(keys, iat=now - 4000, exp=now - 3600)),
        "missing exp": bearer(token(keys, exp=DROP)),
        "missing iat": bearer(token(keys, iat=DROP)),
        "missing jti": bearer(token(keys, jti=DROP)),
        "empty jti": bearer(token(keys, jti="")),
        "numeric jti": bearer(token(keys, jti=12345)),
        "iat in the future": bearer(token(keys, iat=now + 3600, exp=now + 3900)),
        "nbf in the future": bearer(token(keys, nbf=now + 3600)),
        "crit header": bearer(token(keys, headers={"crit": ["exp"]})),
        "lifetime over an hour": bearer(token(keys, iat=now - 10, exp=now + 3600)),
    }


# case -> the reason code logged (the response is the same 401 for all of them)
BAD_CASES = {
    "missing header": "missing", "empty header": "not-bearer", "wrong scheme": "not-bearer",
    "bearer without token": "not-bearer", "two tokens": "malformed", "not a jwt": "malformed",
    "alg none": "alg-not-allowed", "alg none hand made": "alg-not-allowed",
    "hs384 with public key as secret": "alg-not-allowed", "hs256": "alg-not-allowed",
    "rs256": "alg-not-allowed", "es256 header with es384 key": "alg-not-allowed",
    "rs384 header with ec kid": "key-alg-mismatch", "typ not jwt": "bad-typ", "missing kid": "missing-kid",
    "unknown kid": "unknown-kid", "foreign iss": "untrusted-iss", "missing iss": "missing-iss",
    "bad signature": "bad-signature", "tampered payload": "bad-signature", "aud other service": "wrong-aud",
    "aud discovery url": "wrong-aud", "aud https instead of http": "wrong-aud",
    "aud trailing slash": "wrong-aud", "aud array without the url": "wrong-aud",
    "missing aud": "missing-claim", "expired": "expired", "missing exp": "missing-claim",
    "missing iat": "missing-claim", "missing jti": "missing-claim", "empty jti": "bad-jti",
    "numeric jti": "invalid", "iat in the future": "not-yet-valid", "nbf in the future": "not-yet-valid",
    "crit header": "malformed", "lifetime over an hour": "lifetime",
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_rejected_with_identical_401(client, keys, case, capsys):
    headers = bad_requests(keys)[case]
    response = client.post("/probe/svc", headers=headers)
    assert_401(response)
    err = capsys.readouterr().err
    secret = headers.get("Authorization", "").partition(" ")[2]
    if len(secret) > 8:
        assert secret not in err
    auth_lines = [json.loads(line) for line in err.splitlines() if '"event":"auth"' in line]
    assert len(auth_lines) == 1
    assert auth_lines[0]["outcome"] == "rejected" and auth_lines[0]["level"] == "INFO"
    assert auth_lines[0]["reason"] == BAD_CASES[case]
    assert set(auth_lines[0]) <= {"ts", "level", "logger", "event", "outcome", "reason", "iss", "jti", "kid",
                                  "request_id", "error_type"}


def test_bad_cases_cover_the_list(keys):
    assert set(bad_requests(keys)) == set(BAD_CASES)


def test_alg_checked_before_any_key_lookup(client, keys, monkeypatch):
    def boom(*_a, **_k):
        raise AssertionError("keys must not be touched")

    monkeypatch.setattr(auth_module.KeyStore, "get", boom)
    for case in ("alg none", "hs384 with public key as secret", "rs256"):
        assert_401(client.post("/probe/svc", headers=bad_requests(keys)[case]))


def test_replayed_jti_rejected(client, keys):
    tok = token(keys)
    assert client.post("/probe/svc", headers=bearer(tok)).status_code == 200
    assert_401(client.post("/probe/svc", headers=bearer(tok)))
    # Same jti in a freshly signed token is a replay too.
    jti = jwt.decode(tok, options={"verify_signature": False})["jti"]
    assert_401(client.post("/probe/svc", headers=bearer(token(keys, "RS384", jti=jti))))


def test_replay_rejected_across_two_instances_sharing_the_db(tmp_path, jwks_path, keys):
    settings = make_settings(tmp_path, jwks_path)
    first, second = make_app(settings).test_client(), make_app(settings).test_client()
    tok = token(keys)
    assert first.post("/probe/svc", headers=bearer(tok)).status_code == 200
    assert_401(second.post("/probe/svc", headers=bearer(tok)))
    other = token(keys)
    assert second.post("/probe/svc", headers=bearer(other)).status_code == 200
    assert_401(first.post("/probe/svc", headers=bearer(other)))


def test_jti_rows_expire_and_are_purged(tmp_path, jwks_path, keys):
    from datetime import UTC, datetime, timedelta

    app = make_app(make_settings(tmp_path, jwks_path))
    factory = app.extensions["hcc_cds_db"]
    with factory() as session, session.begin():
        session.add(UsedJti(key=f"{ISS}|old", expires_at=datetime.now(UTC) - timedelta(hours=1)))
    tok = token(keys)
    assert app.test_client().post("/probe/svc", headers=bearer(tok)).status_code == 200
    with factory() as session:
        keys_left = {row.key for row in session.query(UsedJti).all()}
        stored = session.get(UsedJti, f"{ISS}|{jwt.decode(tok, options={'verify_signature': False})['jti']}")
    assert f"{ISS}|old" not in keys_left
    assert stored is not None
    exp = jwt.decode(tok, options={"verify_signature": False})["exp"]
    assert abs(stored.expires_at.replace(tzinfo=UTC).timestamp() - (exp + 30)) < 2


def test_optional_mode(tmp_path, jwks_path, keys):
    c = make_app(make_settings(tmp_path, jwks_path, auth_mode="optional")).test_client()
    assert c.post("/probe/svc").status_code == 200
    assert c.post("/probe/svc", headers=bearer(token(keys))).status_code == 200
    assert_401(c.post("/probe/svc", headers=bearer(token(keys, aud="http://localhost/other"))))
    assert_401(c.post("/probe/svc", headers={"Authorization": "Bearer garbage"}))
    assert_401(c.post("/probe/svc", headers={"Authorization": ""}))


def test_off_mode_ignores_garbage(tmp_path, jwks_path):
    c = make_app(make_settings(tmp_path, jwks_path, auth_mode="off")).test_client()
    assert c.post("/probe/svc", headers={"Authorization": "Bearer garbage"}).status_code == 200
    assert c.post("/probe/svc").status_code == 200


def test_token_never_logged(client, keys, capsys, caplog):
    import logging

    with caplog.at_level(logging.DEBUG):
        good, bad = token(keys), token(keys, aud="http://localhost/x")
        client.post("/probe/svc", headers=bearer(good))
        client.post("/probe/svc", headers=bearer(good))  # replay
        client.post("/probe/svc", headers=bearer(bad))
    assert [r for r in caplog.records if getattr(r, "hcc_fields", {}).get("event") == "auth"]
    err = capsys.readouterr().err
    assert err.count('"event":"auth"') == 2
    for tok in (good, bad):
        for part in tok.split("."):
            assert part not in err
            assert part not in caplog.text
    reasons = [json.loads(line)["reason"] for line in err.splitlines() if '"event":"auth"' in line]
    assert reasons == ["replay", "wrong-aud"]


def test_expected_audience_helper(tmp_path, jwks_path):
    app = make_app(make_settings(tmp_path, jwks_path))
    with app.test_request_context("/cds-services/x?y=1", base_url="http://127.0.0.1:8080"):
        assert auth_module.expected_audience() == "http://127.0.0.1:8080/cds-services/x"
    app = make_app(make_settings(tmp_path, jwks_path, public_url="https://cds.example.org/base"))
    with app.test_request_context("/cds-services/x", base_url="http://10.0.0.5:8080"):
        assert auth_module.expected_audience() == "https://cds.example.org/base/cds-services/x"


def test_aud_follows_the_host_the_client_used(client, keys):
    tok = token(keys, aud="http://127.0.0.1:8080/probe/svc")
    response = client.post("/probe/svc", headers=bearer(tok), base_url="http://127.0.0.1:8080")
    assert response.status_code == 200
    tok = token(keys, aud="http://localhost:8080/probe/svc")
    assert_401(client.post("/probe/svc", headers=bearer(tok), base_url="http://127.0.0.1:8080"))


def test_public_url_sets_the_audience(tmp_path, jwks_path, keys, monkeypatch):
    monkeypatch.setenv("HCC_CDS_PUBLIC_URL", "https://cds.example.org/hcc/")
    monkeypatch.setenv("HCC_CDS_TRUSTED_ISSUERS", json.dumps({ISS: str(jwks_path)}))
    monkeypatch.setenv("HCC_CDS_FEEDBACK_DB", f"sqlite:///{tmp_path}/pub.sqlite3")
    settings = Settings.from_env()
    assert settings.public_url == "https://cds.example.org/hcc"
    c = make_app(settings).test_client()
    ok = token(keys, aud="https://cds.example.org/hcc/probe/svc")
    assert c.post("/probe/svc", headers=bearer(ok)).status_code == 200
    assert_401(c.post("/probe/svc", headers=bearer(token(keys))))  # aud = the URL the request reached


# --- jku and JWKS URLs --------------------------------------------------------------------------------

JWKS_URL = "https://ehr.example/.well-known/jwks.json"


@pytest.fixture
def url_app(tmp_path, keys, monkeypatch):
    fetched: list[str] = []

    def fake_fetch(url: str):
        fetched.append(url)
        return auth_module._parse_jwks(keys.jwks()) if url == JWKS_URL else None

    monkeypatch.setattr(auth_module, "_fetch_jwks", fake_fetch)
    settings = Settings(auth_mode="required", trusted_issuers={ISS: JWKS_URL},
                        jku_allowlist=("https://keys.ehr.example/jwks",),
                        feedback_db=f"sqlite:///{tmp_path}/url.sqlite3")
    return make_app(settings).test_client(), fetched


def test_jwks_url_is_fetched_once_and_cached(url_app, keys):
    c, fetched = url_app
    assert c.post("/probe/svc", headers=bearer(token(keys))).status_code == 200
    assert c.post("/probe/svc", headers=bearer(token(keys, "RS384"))).status_code == 200
    assert fetched == [JWKS_URL]


def test_unknown_kid_refreshes_at_most_once_per_minute(url_app, keys, monkeypatch):
    c, fetched = url_app
    assert c.post("/probe/svc", headers=bearer(token(keys))).status_code == 200
    assert_401(c.post("/probe/svc", headers=bearer(token(keys, kid="rotated"))))
    assert_401(c.post("/probe/svc", headers=bearer(token(keys, kid="rotated-again"))))
    assert fetched == [JWKS_URL]  # the first fetch was < 60 s ago
    real_monotonic = time.monotonic
    monkeypatch.setattr(auth_module.time, "monotonic", lambda: real_monotonic() + 61)
    assert_401(c.post("/probe/svc", headers=bearer(token(keys, kid="rotated"))))
    assert_401(c.post("/probe/svc", headers=bearer(token(keys, kid="rotated"))))
    assert fetched == [JWKS_URL, JWKS_URL]


def test_jku_must_be_the_configured_url_or_allowlisted(url_app, keys):
    c, fetched = url_app
    assert_401(c.post("/probe/svc", headers=bearer(token(keys, headers={"jku": "https://attacker.example/k"}))))
    assert fetched == []  # rejected before any fetch
    assert c.post("/probe/svc", headers=bearer(token(keys, headers={"jku": JWKS_URL}))).status_code == 200
    allowed = token(keys, headers={"jku": "https://keys.ehr.example/jwks"})
    assert c.post("/probe/svc", headers=bearer(allowed)).status_code == 200
    assert fetched == [JWKS_URL]  # keys always come from the issuer's configured URL


def test_jku_ignored_for_a_file_issuer(client, keys, monkeypatch):
    def no_network(*_a, **_k):
        raise AssertionError("must not fetch")

    monkeypatch.setattr(auth_module.requests, "get", no_network)
    tok = token(keys, headers={"jku": "https://attacker.example/jwks.json"})
    assert client.post("/probe/svc", headers=bearer(tok)).status_code == 200


class JwksServer:
    """A real JWKS endpoint on 127.0.0.1; ``drip`` makes it send its body one byte per second (issue 10 #6)."""

    def __init__(self, document: dict) -> None:
        owner = self
        self.body = json.dumps(document).encode()
        self.drip = False
        self.hits = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    if not owner.drip:
                        self.wfile.write(owner.body)
                        return
                    for byte in owner.body[:60]:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(1.0)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server(keys):
    server = JwksServer(keys.jwks())
    yield server
    server.close()


def test_fetch_jwks_from_a_real_endpoint(jwks_server, keys):
    assert set(auth_module._fetch_jwks(jwks_server.url)) == {keys.ec_kid, keys.rsa_kid}
    assert auth_module._fetch_jwks(closed_port_url()) is None


def test_drip_fed_jwks_is_cut_off_at_the_fetch_deadline(jwks_server):
    """Before: a body sent one byte per second was read to its end (60 s here); now the fetch gives up at 2 s."""
    jwks_server.drip = True
    started = time.monotonic()
    assert auth_module._fetch_jwks(jwks_server.url) is None
    assert time.monotonic() - started < auth_module.JWKS_FETCH_DEADLINE + 1.5


def test_slow_jwks_refresh_holds_no_call_of_the_issuer(tmp_path, jwks_server, keys):
    """A refresh stuck on a drip-fed JWKS does not hold calls with a known kid, and unknown-kid calls get their
    401 within the fetch deadline (before: every call of the issuer waited for the fetch, 60 s or more)."""
    settings = Settings(auth_mode="required", trusted_issuers={ISS: jwks_server.url},
                        feedback_db=f"sqlite:///{tmp_path}/slow-jwks.sqlite3")
    app = make_app(settings)
    assert app.test_client().post("/probe/svc", headers=bearer(token(keys))).status_code == 200  # keys cached
    jwks_server.drip = True
    app.extensions["hcc_cds_auth"]["keys"]._sets[jwks_server.url].fetched_at = float("-inf")  # refresh is due
    results: dict[str, tuple[int, float]] = {}

    def call(name: str, tok: str) -> None:
        started = time.monotonic()
        status = app.test_client().post("/probe/svc", headers=bearer(tok)).status_code
        results[name] = (status, time.monotonic() - started)

    unknown = [threading.Thread(target=call, args=(f"rotated-{i}", token(keys, kid="rotated"))) for i in range(4)]
    for thread in unknown:
        thread.start()
    time.sleep(0.3)  # the refresh is now in flight
    call("known", token(keys))
    for thread in unknown:
        thread.join(10)
    assert results["known"][0] == 200 and results["known"][1] < 0.5
    for i in range(4):
        status, elapsed = results[f"rotated-{i}"]
        assert status == 401 and elapsed < auth_module.JWKS_FETCH_DEADLINE + 2.0
    assert jwks_server.hits == 2  # one initial fetch, one refresh shared by the four calls


def test_private_and_symmetric_keys_in_a_jwks_are_ignored(keys):
    ec_private = ECAlgorithm.to_jwk(keys.ec, as_dict=True)
    jwks = {"keys": [{**ec_private, "kid": "priv"}, {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
                     {**ECAlgorithm.to_jwk(keys.ec.public_key(), as_dict=True), "kid": "enc", "use": "enc"},
                     "junk"]}
    assert auth_module._parse_jwks(jwks) == {}
    assert auth_module._parse_jwks("junk") == {}


# --- the CDS Hooks sandbox ------------------------------------------------------------------------------


def test_demo_trusts_the_bundled_sandbox_key_and_it_cannot_be_forged(tmp_path, keys):
    demo = Settings.from_env({}, demo=True)
    assert demo.trusted_issuers == {SANDBOX_ISSUER: str(SANDBOX_JWKS_FILE)}
    sandbox_kid = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
    bundled = json.loads(Path(SANDBOX_JWKS_FILE).read_text())
    assert [k["kid"] for k in bundled["keys"]] == [sandbox_kid]
    assert all("d" not in k for k in bundled["keys"])

    settings = dataclasses.replace(demo, demo_data=False, auth_mode="required",
                                   feedback_db=f"sqlite:///{tmp_path}/demo.sqlite3")
    c = make_app(settings).test_client()
    forged = token(keys, kid=sandbox_kid, iss=SANDBOX_ISSUER,
                   headers={"jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json"})
    assert_401(c.post("/probe/svc", headers=bearer(forged)))
    # An issuer the demo does not trust is rejected too, whatever key signed it.
    assert_401(c.post("/probe/svc", headers=bearer(token(keys))))


# --- the real service endpoint ---------------------------------------------------------------------------


def test_patient_view_endpoint_requires_a_valid_token(tmp_path, jwks_path, keys):
    app = make_app(make_settings(tmp_path, jwks_path))
    path = f"/cds-services/{PATIENT_VIEW}"
    body = {
        "hookInstance": str(uuid.uuid4()),
        "hook": "patient-view",
        "context": {"patientId": "nobody", "userId": "Practitioner/1"},
        "prefetch": {},
    }
    c = app.test_client()
    assert_401(c.post(path, json=body))
    assert_401(c.post(path, json=body, headers=bearer(token(keys, aud="http://localhost/cds-services"))))
    ok = token(keys, aud=f"http://localhost{path}")
    response = c.post(path, json=body, headers=bearer(ok))
    assert response.status_code != 401
    assert response.status_code < 500
