"""The production stack as users run it (deploy/stack.py = `make prod-local`): nginx -> gunicorn with the shipped
gunicorn.conf.py -> PostgreSQL, JWT auth required, every part a real process on 127.0.0.1.

Issue 10: #1 a chunked body with an invalid chunk size gave 500; #2 a token for another host, sent with that
Host and X-Forwarded-Proto, got 200; #4 5 slow-header connections hung 2 of 6 normal calls (60 hung all of
them); #5 40 calls against a hung FHIR server pushed an unrelated call to 15 s; #7 fresh SQLite deployments
failed to boot 3 times in 10 and gunicorn exited when PostgreSQL was down at start; #8 gunicorn's errors were
HTML, its log quoted a malformed Authorization line, and no Cache-Control/nosniff/WWW-Authenticate were sent.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from deploy.stack import Gunicorn, allocator_env, production_stack
from tests.service.fhir_test_servers import HungServer
from tests.service.support import Issuer, fixture_request

pytestmark = pytest.mark.integration
PATIENT_VIEW = "/cds-services/hcc-second-line-patient-view"


class Stack:
    def __init__(self, postgres, gunicorn, nginx, issuer: Issuer, hung: HungServer, log: Path) -> None:
        self.postgres, self.gunicorn, self.nginx = postgres, gunicorn, nginx
        self.issuer, self.hung, self.log = issuer, hung, log

    def headers(self, path: str = PATIENT_VIEW) -> dict[str, str]:
        return self.issuer.headers(self.nginx.url + path)


@pytest.fixture(scope="module")
def stack():
    directory = Path(tempfile.mkdtemp(prefix="hcc-cds-stack-"))
    issuer = Issuer()
    hung = HungServer().start()
    jwks = issuer.write_jwks(directory / "jwks.json")
    port = None
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"HCC_CDS_AUTH": "required", "HCC_CDS_TRUSTED_ISSUERS": json.dumps({issuer.iss: str(jwks)}),
           "HCC_CDS_PUBLIC_URL": f"http://127.0.0.1:{port}", "HCC_CDS_FHIR_ALLOWLIST": hung.base_url,
           "HCC_CDS_LOG_LEVEL": "info"}
    try:
        with production_stack(directory, env, port) as (postgres, gunicorn, nginx):
            yield Stack(postgres, gunicorn, nginx, issuer, hung, directory / "gunicorn.log")
    finally:
        hung.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                    break
        return b"".join(chunks)


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?i)content-length: *(\d+)", head)
    return match is not None and len(body) >= int(match.group(1))


def _status_and_json(data: bytes) -> tuple[int, dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_invalid_chunk_size_is_a_json_400_through_gunicorn_and_nginx(stack) -> None:
    for port in (stack.gunicorn.port, stack.nginx.port):
        request = (f"POST {PATIENT_VIEW} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   f"Authorization: {stack.headers()['Authorization']}\r\nTransfer-Encoding: chunked\r\n"
                   "Connection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n").encode()
        status, body = _status_and_json(_raw(port, request))
        assert status == 400 and body["resourceType"] == "OperationOutcome"


def test_gunicorn_parse_errors_are_json_and_never_logged_verbatim(stack) -> None:
    secret = "eyJzZWNyZXQiOiJ0b2tlbi1pbi1hLWJyb2tlbi1oZWFkZXIifQ"
    answer = _raw(stack.gunicorn.port, f"GET /cds-services HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}"
                                       "\x01\r\n\r\n".encode())
    status, body = _status_and_json(answer)
    assert status == 400 and body["issue"][0]["code"] == "invalid"
    assert b"application/fhir+json" in answer and b"<html" not in answer
    time.sleep(0.3)
    log = stack.log.read_text(encoding="utf-8", errors="replace")
    assert secret not in log
    assert '"server":"gunicorn"' in log and '"reason":"invalid-header"' in log


def test_security_headers_on_every_kind_of_answer(stack) -> None:
    ok = requests.get(stack.nginx.url + "/cds-services", timeout=5)
    unauthorized = requests.post(stack.nginx.url + PATIENT_VIEW, json={}, timeout=5)
    too_large = requests.post(stack.nginx.url + PATIENT_VIEW, data=b"x" * (5 * 1024 * 1024), timeout=10,
                              headers={"Content-Type": "application/json"})
    assert (ok.status_code, unauthorized.status_code, too_large.status_code) == (200, 401, 413)
    for response in (ok, unauthorized, too_large):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Type"].startswith(("application/json", "application/fhir+json"))
    internal = requests.get(stack.nginx.url + "/_errors/400.json", timeout=5)  # nginx's own 404, as JSON
    assert internal.status_code == 404 and internal.json()["issue"][0]["code"] == "not-found"
    assert unauthorized.headers["WWW-Authenticate"].startswith("Bearer ")
    assert too_large.json()["resourceType"] == "OperationOutcome"  # nginx's own error, as JSON


def test_audience_comes_from_configuration_never_from_host_headers(stack) -> None:
    body = fixture_request("systemic-atezo-bev")
    forged = stack.issuer.headers("https://evil.example" + PATIENT_VIEW)
    forged.update({"Host": "evil.example", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"})
    assert requests.post(stack.nginx.url + PATIENT_VIEW, json=body, headers=forged, timeout=10).status_code == 401
    direct = stack.issuer.headers("https://evil.example" + PATIENT_VIEW)
    direct.update({"Host": "evil.example", "X-Forwarded-Proto": "https"})  # straight at gunicorn, from loopback
    assert requests.post(stack.gunicorn.url + PATIENT_VIEW, json=body, headers=direct, timeout=10).status_code == 401
    assert requests.post(stack.nginx.url + PATIENT_VIEW, json=body, headers=stack.headers(),
                         timeout=10).status_code == 200


def test_slow_header_clients_do_not_stall_normal_calls(stack) -> None:
    body = fixture_request("systemic-atezo-bev")
    slow: list[socket.socket] = []
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(0.5):
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Slow: 1\r\n")

    try:
        for _ in range(60):
            sock = socket.create_connection(("127.0.0.1", stack.nginx.port), timeout=5)
            sock.sendall(f"POST {PATIENT_VIEW} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
            slow.append(sock)
        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        time.sleep(0.5)

        def normal(_i: int) -> tuple[int, float]:
            started = time.monotonic()
            response = requests.post(stack.nginx.url + PATIENT_VIEW, json=body, headers=stack.headers(), timeout=30)
            return response.status_code, time.monotonic() - started

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(normal, range(6)))
    finally:
        stop.set()
        for sock in slow:
            sock.close()
    assert [status for status, _ in results] == [200] * 6
    assert max(elapsed for _, elapsed in results) < 3.0, results


def test_a_hung_fhir_server_does_not_hold_unrelated_calls(stack) -> None:
    body = fixture_request("systemic-atezo-bev")
    hung_body = dict(body, prefetch={}, fhirServer=stack.hung.base_url)

    def timed(payload: dict) -> tuple[int, float]:
        started = time.monotonic()
        response = requests.post(stack.nginx.url + PATIENT_VIEW, json=payload, headers=stack.headers(), timeout=30)
        return response.status_code, time.monotonic() - started

    with ThreadPoolExecutor(41) as pool:
        hung = [pool.submit(timed, hung_body) for _ in range(40)]
        time.sleep(0.5)  # the 40 are queued or waiting on the hung server
        unrelated_status, unrelated_elapsed = timed(body)
        hung_results = [future.result() for future in hung]
    assert unrelated_status == 200
    assert unrelated_elapsed < 3.0, unrelated_elapsed  # before: 15 s
    assert {status for status, _ in hung_results} == {412}
    assert max(elapsed for _, elapsed in hung_results) < 5.0, sorted(e for _, e in hung_results)[-5:]


def test_metrics_in_prometheus_text_without_patient_data(stack) -> None:
    body = fixture_request("systemic-atezo-bev")
    requests.post(stack.nginx.url + PATIENT_VIEW, json=body, headers=stack.headers(), timeout=10)
    response = requests.get(stack.nginx.url + "/metrics", timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    text = response.text
    assert re.search(r'hcc_cds_requests_total\{endpoint="/cds-services/<service_id>",hook="patient-view",'
                     r'service="hcc-second-line-patient-view",status="200"\} [1-9]', text)
    assert "hcc_cds_request_duration_seconds_bucket" in text and "hcc_cds_cards_total" in text
    assert body["context"]["patientId"] not in text and "Bearer" not in text


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def test_gunicorn_workers_run_on_jemalloc(stack) -> None:
    """deploy/stack.py allocator_env (README "Production"): `make test` installs libjemalloc2, so the Python heap of
    the make prod-local stack's workers must be jemalloc's: the library mapped into every worker, PYTHONMALLOC=malloc
    set, and a Python started with the same environment keeping no blocks of CPython's own allocator."""
    assert allocator_env({}).get("PYTHONMALLOC") == "malloc", "libjemalloc2 is not installed"
    workers = _children(stack.gunicorn.process.pid)
    assert workers, "no gunicorn worker processes found"
    for pid in workers:
        assert "/libjemalloc.so" in Path(f"/proc/{pid}/maps").read_text(), f"worker {pid} runs without jemalloc"
        assert b"PYTHONMALLOC=malloc" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    blocks = subprocess.run([sys.executable, "-c", "import sys; print(sys.getallocatedblocks())"],
                            env=stack.gunicorn.env, capture_output=True, text=True, check=True).stdout
    assert blocks.strip() == "0"


def test_fresh_sqlite_deployments_boot_every_time(tmp_path) -> None:
    for attempt in range(4):  # before: 3 boots in 10 failed (workers raced to create the tables)
        server = Gunicorn({"HCC_CDS_AUTH": "off", "HCC_CDS_WORKERS": "4",
                           "HCC_CDS_FEEDBACK_DB": f"sqlite:///{tmp_path}/fresh-{attempt}.sqlite3"},
                          tmp_path / f"boot-{attempt}.log")
        try:
            server.start()
            assert requests.get(server.url + "/readyz", timeout=5).json() == {"status": "ok", "database": "ok"}
            assert server.process is not None and server.process.poll() is None
        finally:
            server.stop()
        assert "Traceback" not in (tmp_path / f"boot-{attempt}.log").read_text()


def test_gunicorn_starts_with_postgresql_down_and_becomes_ready(postgres, postgres_url, tmp_path) -> None:
    postgres.stop("immediate")
    server = Gunicorn({"HCC_CDS_AUTH": "off", "HCC_CDS_WORKERS": "2", "HCC_CDS_FEEDBACK_DB": postgres_url},
                      tmp_path / "pg-down.log")
    try:
        server.start()  # before: gunicorn exited
        ready = requests.get(server.url + "/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["reason"] == "OperationalError"
        body = fixture_request("systemic-atezo-bev")
        assert requests.post(server.url + PATIENT_VIEW, json=body, timeout=10).status_code == 200
        postgres.start()
        deadline = time.monotonic() + 10
        while requests.get(server.url + "/readyz", timeout=5).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert requests.get(server.url + "/readyz", timeout=5).json() == {"status": "ok", "database": "ok"}
    finally:
        server.stop()
        if not postgres.running():
            postgres.start()
