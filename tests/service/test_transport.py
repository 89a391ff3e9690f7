"""service.transport (http.client with a pool of kept-alive connections) against real servers on 127.0.0.1.

Every server here is started in the test on port 0: ``Origin`` is a threaded HTTP/1.1 server (keep-alive, optional
TLS with a certificate made here with ``cryptography``) that numbers the TCP connections it accepts and records
every request with its connection; each test gives it a ``respond`` function. A proxy is an ``Origin`` too (it
sees the absolute-form request line, or a ``CONNECT`` it drops, times out or relays).

Covered: keep-alive (one connection for sequential GETs and for paging, Content-Length and chunked, identity and
gzip; not reused after ``Connection: close``, an unread body, ``IDLE_SECONDS``; at most ``IDLE_PER_ORIGIN`` kept),
stale connections (closed by the server while idle, a stray 408 on an idle connection, one retry when a reused
connection is dropped before any answer, no retry on a fresh one), gzip (decoded; a 64 MiB gzip bomb stopped at
``fhir_max_response_bytes`` with small peak memory; corrupt or truncated gzip is "not JSON"), proxies from the
environment (absolute form, ``no_proxy``, ``Proxy-Authorization``, ``CONNECT`` for https, a tunnel end to end),
TLS (untrusted, trusted via ``SSL_CERT_FILE``, wrong host name, handshake bounded by the connect timeout), read
timeouts, ``Authorization: Bearer`` and redirects not followed.

Two tests were written failing, for bugs this file found: a failed ``CONNECT`` left its socket open until a
garbage-collector cycle, and an empty lower-case proxy variable did not cancel the upper-case one (as urllib's does).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import gc
import gzip
import ipaddress
import json
import select
import socket
import ssl
import threading
import time
import tracemalloc
import urllib.request
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from service import transport
from service.config import Settings
from service.fhir import fetch

TOKEN = "transport-test-token-3f9a"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                   "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
# generous where the timing is not what a test is about (a busy 2-core machine)
SETTINGS = Settings(fhir_allowlist=("*",), fhir_connect_timeout=3.0, fhir_read_timeout=5.0, fhir_deadline=10.0)
MiB = 1024 * 1024


# --- servers -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the server read it."""

    connection: int  # the TCP connection it came on, numbered 1, 2, ... in the order the server accepted them
    index: int  # its number on that connection (1 = the connection's first request)
    line: str  # the request line, e.g. "GET /fhir/Patient/p1 HTTP/1.1"
    path: str  # the request target as sent (origin form, absolute form, or host:port for CONNECT)
    headers: dict[str, str]  # names in lower case


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless a response says Connection: close
    timeout = 10  # an idle keep-alive connection ends here at the latest
    server: Origin

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def setup(self) -> None:
        self.number = self.server.number_of(self.request)
        self.on_connection = 0
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()  # here, not in the accept loop: a refused handshake fails only this thread
        super().setup()

    def do_GET(self) -> None:
        self._dispatch()

    def do_CONNECT(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        self.on_connection += 1
        seen = Seen(self.number, self.on_connection, self.requestline, self.path,
                    {name.lower(): value for name, value in self.headers.items()})
        self.server.record(seen)
        with contextlib.suppress(OSError):  # the client gave up (reset, broken pipe, timeout)
            self.server.respond(self, seen)

    def reply(self, status: int = 200, body: bytes | dict = b"", *, headers: dict[str, str] | None = None,
              chunked: bool = False) -> None:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)  # "Connection: close" also ends this connection after the reply
        self.end_headers()
        if not chunked:
            self.wfile.write(data)
            return
        for start in range(0, len(data), 700):
            piece = data[start:start + 700]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def drop(self) -> None:
        """Close the connection without answering (after this request was read)."""
        self.close_connection = True


Respond = Callable[[Handler, Seen], None]


class Origin(ThreadingHTTPServer):
    """A threaded HTTP/1.1 (or HTTPS) server on 127.0.0.1:0 that counts connections and records requests."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, respond: Respond, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.respond = respond
        self.tls = tls
        self._lock = threading.Lock()
        self._numbers: dict[int, int] = {}
        self._seen: list[Seen] = []
        self._closed: list[int] = []
        self.connections = 0
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def fhir_base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/fhir"

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # headers and body are two writes: no Nagle wait
        with self._lock:
            self.connections += 1
            self._numbers[id(sock)] = self.connections
        if self.tls is not None:
            tls_sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            with self._lock:
                self._numbers[id(tls_sock)] = self._numbers.pop(id(sock))
            return tls_sock, address
        return sock, address

    def number_of(self, sock: socket.socket) -> int:
        with self._lock:
            return self._numbers[id(sock)]

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        number = self.number_of(request)
        super().shutdown_request(request)
        with self._lock:
            self._closed.append(number)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that refused the certificate or went away

    def record(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    @property
    def closed(self) -> list[int]:
        """Numbers of the connections this server has closed (its side), in order."""
        with self._lock:
            return list(self._closed)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No proxy variables, no pooled connection and no cached TLS context from outside or from another test."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    transport.close_idle()
    transport._tls.cache_clear()
    yield
    transport.close_idle()
    transport._tls.cache_clear()


@pytest.fixture
def serve() -> Iterator[Callable[..., Origin]]:
    """``serve(respond, tls=None)`` starts an Origin; all are stopped after the test."""
    started: list[Origin] = []

    def start(respond: Respond, tls: ssl.SSLContext | None = None) -> Origin:
        origin = Origin(respond, tls)
        origin.thread.start()
        started.append(origin)
        return origin

    yield start
    transport.close_idle()  # the servers' keep-alive threads see EOF and end
    for origin in started:
        origin.shutdown()
        origin.server_close()


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.01)


def patient(pid: str) -> dict:
    return {"resourceType": "Patient", "id": pid}


def last_segment(seen: Seen) -> str:
    return seen.path.split("?")[0].rsplit("/", 1)[1]


def answer_patient(h: Handler, seen: Seen) -> None:
    h.reply(200, patient(last_segment(seen)))


def get(url: str, headers: dict[str, str] | None = None, *, read_timeout: float = 5.0) -> tuple[int, bytes]:
    """One GET through service.transport, body read to the end."""
    with transport.get(url, headers or {}, connect_timeout=3.0, read_timeout=read_timeout) as r:
        body = bytearray()
        while chunk := r.read1(64 * 1024):
            body += chunk
        return r.status, bytes(body)


def ids(resources: list[dict]) -> list[str]:
    return [r["id"] for r in resources]


def searchset(resources: list[dict], next_url: str | None = None) -> dict:
    bundle: dict = {"resourceType": "Bundle", "type": "searchset",
                    "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


# --- 1. keep-alive -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("gzipped", [False, True], ids=["identity", "gzip"])
def test_sequential_gets_share_one_connection(serve: Callable[..., Origin], chunked: bool, gzipped: bool) -> None:
    def respond(h: Handler, seen: Seen) -> None:
        body = json.dumps(patient(last_segment(seen)) | {"text": "x" * 3000}).encode()
        if gzipped:
            h.reply(200, gzip.compress(body), headers={"Content-Encoding": "gzip"}, chunked=chunked)
        else:
            h.reply(200, body, chunked=chunked)

    origin = serve(respond)
    for n in range(5):
        status, body = get(f"{origin.fhir_base}/Patient/p{n}")
        assert status == 200
        assert json.loads(body)["id"] == f"p{n}"

    assert origin.connections == 1
    assert [(s.connection, s.index) for s in origin.seen] == [(1, n) for n in range(1, 6)]
    assert origin.closed == []  # the connection is idle in the pool, still open


def test_paging_through_fetch_uses_one_connection(serve: Callable[..., Origin]) -> None:
    def respond(h: Handler, seen: Seen) -> None:
        page = int(seen.path.rsplit("page=", 1)[1]) if "page=" in seen.path else 1
        next_url = f"Observation?patient=p1&page={page + 1}" if page < 4 else None
        h.reply(200, searchset([{"resourceType": "Observation", "id": f"obs-{page}"}], next_url))

    origin = serve(respond)
    first = fetch({"obs": "Observation?patient=p1"}, origin.fhir_base, TOKEN, SETTINGS)
    second = fetch({"obs": "Observation?patient=p1"}, origin.fhir_base, TOKEN, SETTINGS)

    assert first.failures == second.failures == {}
    assert ids(first.resources["obs"]) == ids(second.resources["obs"]) == ["obs-1", "obs-2", "obs-3", "obs-4"]
    assert origin.connections == 1  # both calls, every page: the worker threads share the pool
    assert [s.index for s in origin.seen] == list(range(1, 9))


def test_connection_close_response_is_not_reused(serve: Callable[..., Origin]) -> None:
    origin = serve(lambda h, seen: h.reply(200, patient(last_segment(seen)), headers={"Connection": "close"}))
    for n in range(3):
        assert get(f"{origin.fhir_base}/Patient/p{n}") == (200, json.dumps(patient(f"p{n}")).encode())

    assert origin.connections == 3
    assert [(s.connection, s.index) for s in origin.seen] == [(1, 1), (2, 1), (3, 1)]


@pytest.mark.parametrize("size", [200_000, 300], ids=["rest-in-socket", "rest-already-buffered"])
def test_body_not_read_to_the_end_is_not_reused(serve: Callable[..., Origin], size: int) -> None:
    # 300 bytes arrive with the headers, so the idle socket looks clean: only the unread body says "do not reuse"
    big = json.dumps(patient("big") | {"text": "y" * size}).encode()
    origin = serve(lambda h, seen: h.reply(200, big if last_segment(seen) == "big" else patient(last_segment(seen))))

    with transport.get(f"{origin.fhir_base}/Patient/big", {}, connect_timeout=3.0, read_timeout=5.0) as r:
        assert r.status == 200
        assert r.read1(100) == big[:100]  # and the caller stops reading here
    status, body = get(f"{origin.fhir_base}/Patient/p2")

    assert (status, json.loads(body)["id"]) == (200, "p2")
    assert origin.connections == 2
    assert [(s.connection, s.index) for s in origin.seen] == [(1, 1), (2, 1)]
    wait_for(lambda: 1 in origin.closed)  # the client closed the half-read connection (the server saw it end)


def test_response_too_large_by_content_length_is_not_reused(serve: Callable[..., Origin]) -> None:
    big = json.dumps(patient("big") | {"text": "z" * 5000}).encode()
    origin = serve(lambda h, seen: h.reply(200, big if last_segment(seen) == "big" else patient(last_segment(seen))))
    settings = Settings(fhir_allowlist=("*",), fhir_connect_timeout=3.0, fhir_read_timeout=5.0, fhir_deadline=10.0,
                        fhir_max_response_bytes=2048)

    refused = fetch({"big": "Patient/big"}, origin.fhir_base, None, settings)
    fine = fetch({"p": "Patient/p2"}, origin.fhir_base, None, settings)

    assert refused.failures == {"big": "response too large"}
    assert fine.failures == {}
    assert ids(fine.resources["p"]) == ["p2"]
    assert origin.connections == 2


def test_idle_connection_older_than_idle_seconds_is_not_reused(serve: Callable[..., Origin],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    origin = serve(answer_patient)
    get(f"{origin.fhir_base}/Patient/p1")
    monkeypatch.setattr(transport, "IDLE_SECONDS", 0.0)
    assert json.loads(get(f"{origin.fhir_base}/Patient/p2")[1])["id"] == "p2"

    assert origin.connections == 2
    wait_for(lambda: 1 in origin.closed)  # the too-old connection was closed, not left open


def test_at_most_idle_per_origin_connections_are_kept(serve: Callable[..., Origin]) -> None:
    origin = serve(answer_patient)
    n = transport.IDLE_PER_ORIGIN + 2

    def round_of_simultaneous_gets() -> None:
        with contextlib.ExitStack() as stack:
            for i in range(n):  # all open at once: each needs a connection of its own
                r = stack.enter_context(transport.get(f"{origin.fhir_base}/Patient/p{i}", {}, connect_timeout=3.0,
                                                      read_timeout=5.0))
                body = bytearray()
                while chunk := r.read1(65536):
                    body += chunk
                assert json.loads(body)["id"] == f"p{i}"

    round_of_simultaneous_gets()
    assert origin.connections == n
    wait_for(lambda: len(origin.closed) == 2)  # the pool kept IDLE_PER_ORIGIN and closed the rest
    round_of_simultaneous_gets()
    assert origin.connections == n + 2  # IDLE_PER_ORIGIN reused, 2 new


# --- 2. stale connections and the retry --------------------------------------------------------------------


def test_idle_connection_closed_by_the_server_is_noticed_before_reuse(serve: Callable[..., Origin],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def respond(h: Handler, seen: Seen) -> None:
        answer_patient(h, seen)
        h.close_connection = True  # then close the socket, without having said "Connection: close"

    origin = serve(respond)
    sends: list[str] = []
    real_send = transport._send

    def counting_send(conn, target, headers, read_timeout):  # type: ignore[no-untyped-def]
        sends.append(target)
        return real_send(conn, target, headers, read_timeout)

    monkeypatch.setattr(transport, "_send", counting_send)

    assert json.loads(get(f"{origin.fhir_base}/Patient/p1")[1])["id"] == "p1"
    wait_for(lambda: origin.closed == [1])
    time.sleep(0.1)  # the FIN reaches the client's idle socket (loopback)
    assert json.loads(get(f"{origin.fhir_base}/Patient/p2")[1])["id"] == "p2"

    assert origin.connections == 2
    assert [(s.connection, s.index, last_segment(s)) for s in origin.seen] == [(1, 1, "p1"), (2, 1, "p2")]
    assert sends == ["/fhir/Patient/p1", "/fhir/Patient/p2"]  # noticed by the idle check: nothing sent in vain


def test_stray_bytes_on_an_idle_connection_are_not_taken_as_the_next_answer(serve: Callable[..., Origin]) -> None:
    stray_sent = threading.Event()

    def respond(h: Handler, seen: Seen) -> None:
        answer_patient(h, seen)
        if seen.connection == 1:  # later, unasked (as servers do on an idle timeout), and the connection stays open
            time.sleep(0.4)
            h.wfile.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
            stray_sent.set()

    origin = serve(respond)
    assert json.loads(get(f"{origin.fhir_base}/Patient/p1")[1])["id"] == "p1"
    assert stray_sent.wait(5)
    time.sleep(0.05)
    status, body = get(f"{origin.fhir_base}/Patient/p2")

    assert (status, json.loads(body)["id"]) == (200, "p2")
    assert origin.connections == 2
    assert [(s.connection, s.index) for s in origin.seen] == [(1, 1), (2, 1)]


def test_reused_connection_dropped_before_an_answer_is_retried_once_on_a_new_one(
        serve: Callable[..., Origin]) -> None:
    def respond(h: Handler, seen: Seen) -> None:
        if seen.connection == 1 and seen.index == 2:
            h.drop()  # the server had given up on the connection just as the request came
        else:
            answer_patient(h, seen)

    origin = serve(respond)
    assert json.loads(get(f"{origin.fhir_base}/Patient/p1")[1])["id"] == "p1"
    assert json.loads(get(f"{origin.fhir_base}/Patient/p2")[1])["id"] == "p2"

    assert origin.connections == 2
    assert [(s.connection, s.index, last_segment(s)) for s in origin.seen] == [
        (1, 1, "p1"), (1, 2, "p2"), (2, 1, "p2")]


def test_retry_is_only_once(serve: Callable[..., Origin]) -> None:
    def respond(h: Handler, seen: Seen) -> None:
        if seen.connection == 1 and seen.index == 1:
            answer_patient(h, seen)
        else:
            h.drop()

    origin = serve(respond)
    assert fetch({"a": "Patient/p1"}, origin.fhir_base, None, SETTINGS).resources == {"a": [patient("p1")]}
    out = fetch({"b": "Patient/p2"}, origin.fhir_base, None, SETTINGS)

    assert out.failures == {"b": "unreachable"}
    assert origin.connections == 2
    assert [(s.connection, s.index) for s in origin.seen] == [(1, 1), (1, 2), (2, 1)]


def test_fresh_connection_dropped_before_an_answer_is_not_retried(serve: Callable[..., Origin]) -> None:
    origin = serve(lambda h, seen: h.drop())
    out = fetch({"patient": "Patient/p1"}, origin.fhir_base, TOKEN, SETTINGS)

    assert out.resources == {}
    assert out.failures == {"patient": "unreachable"}
    assert origin.connections == 1
    assert [(s.connection, s.index, s.path) for s in origin.seen] == [(1, 1, "/fhir/Patient/p1")]


# --- 3. gzip -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """64 MiB of zeros, gzip-compressed (~64 KB), made without holding the 64 MiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MiB)
    bomb = b"".join(compressor.compress(block) for _ in range(64)) + compressor.flush()
    assert len(bomb) < 128 * 1024
    return bomb


def test_gzip_searchset_is_decoded(serve: Callable[..., Origin]) -> None:
    observations = [{"resourceType": "Observation", "id": f"obs-{n}", "status": "final"} for n in range(3)]
    body = gzip.compress(json.dumps(searchset(observations)).encode())
    origin = serve(lambda h, seen: h.reply(200, body, headers={"Content-Encoding": "gzip"}))

    out = fetch({"obs": "Observation?patient=p1"}, origin.fhir_base, None, SETTINGS)

    assert out.failures == {}
    assert out.resources["obs"] == observations
    assert origin.seen[0].headers["accept-encoding"] == "gzip"


def test_gzip_bomb_stops_at_the_response_limit(serve: Callable[..., Origin], gzip_bomb: bytes) -> None:
    origin = serve(lambda h, seen: h.reply(200, gzip_bomb, headers={"Content-Encoding": "gzip"}))
    settings = Settings(fhir_allowlist=("*",), fhir_connect_timeout=3.0, fhir_read_timeout=5.0, fhir_deadline=10.0,
                        fhir_max_response_bytes=4 * MiB)

    tracemalloc.start()
    try:
        out = fetch({"bomb": "Observation?patient=p1"}, origin.fhir_base, None, settings)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert out.failures == {"bomb": "response too large"}
    assert out.resources == {}
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB while refusing a 64 MiB gzip bomb"


@pytest.mark.parametrize("body", [
    b"this is not gzip at all, whatever the header says",
    gzip.compress(json.dumps(searchset([{"resourceType": "Observation", "id": "o"}] * 50)).encode())[:-40],
], ids=["corrupt", "truncated"])
def test_bad_gzip_is_not_json(serve: Callable[..., Origin], body: bytes) -> None:
    origin = serve(lambda h, seen: h.reply(200, body, headers={"Content-Encoding": "gzip"}))
    out = fetch({"obs": "Observation?patient=p1"}, origin.fhir_base, None, SETTINGS)

    assert out.failures == {"obs": "not JSON"}
    assert out.resources == {}


def test_a_body_shorter_than_its_content_length_is_a_failure_not_a_short_document(
        serve: Callable[..., Origin]) -> None:
    """http.client's read1 returns b"" when the server closes early; the transport must not take that as the
    end of the body (a truncated page could otherwise parse, or be mistaken for a complete one)."""
    whole = json.dumps(searchset([{"resourceType": "Observation", "id": "o"}])).encode()

    def truncated(h: Handler, seen: Seen) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/fhir+json")
        h.send_header("Content-Length", str(len(whole) + 500))
        h.end_headers()
        h.wfile.write(whole)  # a complete JSON document, 500 bytes short of what was announced
        h.close_connection = True

    origin = serve(truncated)
    out = fetch({"obs": "Observation?patient=p1"}, origin.fhir_base, None, SETTINGS)

    assert out.failures == {"obs": "unreachable"}
    assert out.resources == {}


# --- 4. proxies from the environment -----------------------------------------------------------------------


def proxy_answer(h: Handler, seen: Seen) -> None:
    h.reply(200, patient("from-proxy"))


@pytest.mark.parametrize("variable", ["http_proxy", "HTTP_PROXY", "all_proxy"])
def test_http_goes_to_the_proxy_in_absolute_form(serve: Callable[..., Origin], monkeypatch: pytest.MonkeyPatch,
                                                 variable: str) -> None:
    origin, proxy = serve(answer_patient), serve(proxy_answer)
    monkeypatch.setenv(variable, f"http://127.0.0.1:{proxy.port}")

    first = fetch({"patient": "Patient/p1"}, origin.fhir_base, TOKEN, SETTINGS)
    second = fetch({"patient": "Patient/p1"}, origin.fhir_base, TOKEN, SETTINGS)

    assert first.failures == second.failures == {}
    assert ids(first.resources["patient"]) == ["from-proxy"]  # the proxy's answer
    assert origin.seen == []
    [request, _] = proxy.seen
    assert request.line == f"GET http://127.0.0.1:{origin.port}/fhir/Patient/p1 HTTP/1.1"
    assert request.headers["host"] == f"127.0.0.1:{origin.port}"
    assert "proxy-authorization" not in request.headers
    assert proxy.connections == 1  # the connection to the proxy is kept alive too


@pytest.mark.parametrize("variable", ["no_proxy", "NO_PROXY"])
@pytest.mark.parametrize("value", ["127.0.0.1", "localhost,127.0.0.1"])
def test_no_proxy_goes_direct(serve: Callable[..., Origin], monkeypatch: pytest.MonkeyPatch, variable: str,
                              value: str) -> None:
    origin, proxy = serve(answer_patient), serve(proxy_answer)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv(variable, value)

    out = fetch({"patient": "Patient/p1"}, origin.fhir_base, None, SETTINGS)

    assert ids(out.resources["patient"]) == ["p1"]
    assert proxy.seen == []
    assert [s.line for s in origin.seen] == ["GET /fhir/Patient/p1 HTTP/1.1"]


def test_proxy_credentials_are_sent_as_proxy_authorization(serve: Callable[..., Origin],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    origin, proxy = serve(answer_patient), serve(proxy_answer)
    monkeypatch.setenv("http_proxy", f"http://svc%40corp:p%3Ass%20w@127.0.0.1:{proxy.port}")

    out = fetch({"patient": "Patient/p1"}, origin.fhir_base, None, SETTINGS)

    assert ids(out.resources["patient"]) == ["from-proxy"]
    expected = "Basic " + base64.b64encode(b"svc@corp:p:ss w").decode()  # user and password percent-decoded
    assert proxy.seen[0].headers["proxy-authorization"] == expected


def test_https_through_a_proxy_sends_connect(serve: Callable[..., Origin], monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = serve(lambda h, seen: h.drop())  # reads the CONNECT, then closes
    monkeypatch.setenv("https_proxy", f"http://user:pw@127.0.0.1:{proxy.port}")

    out = fetch({"patient": "Patient/p1"}, "https://127.0.0.1:9/fhir", TOKEN, SETTINGS)

    assert out.resources == {}
    assert out.failures == {"patient": "unreachable"}
    [request] = proxy.seen
    assert request.line.startswith("CONNECT 127.0.0.1:9 HTTP/1.")
    assert request.headers["proxy-authorization"] == "Basic " + base64.b64encode(b"user:pw").decode()
    assert "authorization" not in request.headers  # the token only goes inside the tunnel


def test_failed_connect_tunnel_closes_its_socket(serve: Callable[..., Origin],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    client_closed = threading.Event()

    def hang_then_watch(h: Handler, seen: Seen) -> None:  # never answers the CONNECT; notes when the client closes
        h.close_connection = True
        h.connection.settimeout(5)
        with contextlib.suppress(OSError):
            if h.connection.recv(1) == b"":
                client_closed.set()

    proxy = serve(hang_then_watch)
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.port}")
    settings = Settings(fhir_allowlist=("*",), fhir_connect_timeout=0.3, fhir_read_timeout=5.0, fhir_deadline=10.0)
    gc.disable()  # the failure's traceback cycle holds the connection: only its own close() counts here
    try:
        out = fetch({"patient": "Patient/p1"}, "https://127.0.0.1:9/fhir", None, settings)
        assert out.failures == {"patient": "timed out"}
        assert proxy.seen[0].line.startswith("CONNECT 127.0.0.1:9 ")
        assert client_closed.wait(1.0), "the client's socket to the proxy is still open after the failed CONNECT"
    finally:
        gc.enable()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def test_empty_lower_case_proxy_variable_disables_the_upper_case_one(serve: Callable[..., Origin],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    origin, proxy = serve(answer_patient), serve(proxy_answer)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("http_proxy", "")
    assert "http" not in urllib.request.getproxies_environment()  # what the module docstring promises to match

    out = fetch({"patient": "Patient/p1"}, origin.fhir_base, None, SETTINGS)

    assert ids(out.resources["patient"]) == ["p1"]
    assert proxy.seen == []


def relay(h: Handler, seen: Seen) -> None:
    """A CONNECT proxy: 200, then bytes both ways until either side closes."""
    host, port = seen.path.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as upstream:
        h.send_response(200, "Connection established")
        h.end_headers()
        h.close_connection = True
        ends = {h.connection: upstream, upstream: h.connection}
        while True:
            readable, _, _ = select.select(list(ends), [], [], 10)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                ends[sock].sendall(data)


# --- 5. TLS ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def self_signed(directory: Path, name: str, san: x509.GeneralName) -> Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Certificate(cert_path, key_path)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Certificate]:
    directory = tmp_path_factory.mktemp("tls")
    return {
        "loopback": self_signed(directory, "loopback", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
        "other-host": self_signed(directory, "other-host", x509.DNSName("other.example")),
    }


@pytest.fixture
def trust(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Certificate], None]]:
    """``trust(certificate)``: the client's trust store is that certificate (``SSL_CERT_FILE``)."""

    def use(certificate: Certificate) -> None:
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
        transport._tls.cache_clear()

    yield use
    transport.close_idle()
    transport._tls.cache_clear()  # the next context is made after monkeypatch restored the environment


def test_untrusted_certificate_is_a_tls_error(serve: Callable[..., Origin],
                                              certificates: dict[str, Certificate]) -> None:
    origin = serve(answer_patient, certificates["loopback"].server_context())
    out = fetch({"patient": "Patient/p1"}, origin.fhir_base, TOKEN, SETTINGS)

    assert out.failures == {"patient": "TLS error"}
    assert origin.seen == []  # no request (and no token) went to the unverified server
    with pytest.raises(ssl.SSLCertVerificationError) as raised:
        get(f"{origin.fhir_base}/Patient/p1")
    assert "self-signed" in raised.value.verify_message or "self signed" in raised.value.verify_message


def test_trusted_certificate_for_the_address_works(serve: Callable[..., Origin], certificates: dict[str, Certificate],
                                                   trust: Callable[[Certificate], None]) -> None:
    trust(certificates["loopback"])
    origin = serve(answer_patient, certificates["loopback"].server_context())

    first = fetch({"patient": "Patient/p1"}, origin.fhir_base, TOKEN, SETTINGS)
    second = fetch({"patient": "Patient/p2"}, origin.fhir_base, TOKEN, SETTINGS)

    assert first.failures == second.failures == {}
    assert ids(first.resources["patient"]) == ["p1"]
    assert ids(second.resources["patient"]) == ["p2"]
    assert {s.headers["authorization"] for s in origin.seen} == {f"Bearer {TOKEN}"}
    assert origin.connections == 1  # the TLS connection is kept alive (and the idle check does not misread it)


def test_trusted_certificate_for_another_host_is_a_tls_error(serve: Callable[..., Origin],
                                                             certificates: dict[str, Certificate],
                                                             trust: Callable[[Certificate], None]) -> None:
    trust(certificates["other-host"])
    origin = serve(answer_patient, certificates["other-host"].server_context())

    out = fetch({"patient": "Patient/p1"}, origin.fhir_base, TOKEN, SETTINGS)

    assert out.failures == {"patient": "TLS error"}
    assert origin.seen == []
    with pytest.raises(ssl.SSLCertVerificationError) as raised:  # trusted, but not for 127.0.0.1
        get(f"{origin.fhir_base}/Patient/p1")
    assert "mismatch" in raised.value.verify_message


def test_https_through_a_proxy_tunnel_end_to_end(serve: Callable[..., Origin], certificates: dict[str, Certificate],
                                                 trust: Callable[[Certificate], None],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    trust(certificates["loopback"])
    origin = serve(answer_patient, certificates["loopback"].server_context())
    proxy = serve(relay)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")

    first = fetch({"patient": "Patient/p1"}, origin.fhir_base, TOKEN, SETTINGS)
    second = fetch({"patient": "Patient/p2"}, origin.fhir_base, TOKEN, SETTINGS)

    assert first.failures == second.failures == {}
    assert ids(first.resources["patient"]) + ids(second.resources["patient"]) == ["p1", "p2"]
    assert [s.line.rsplit(" ", 1)[0] for s in proxy.seen] == [f"CONNECT 127.0.0.1:{origin.port}"]
    assert [(s.connection, s.line) for s in origin.seen] == [
        (1, "GET /fhir/Patient/p1 HTTP/1.1"), (1, "GET /fhir/Patient/p2 HTTP/1.1")]  # one tunnel, kept alive
    assert origin.seen[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_tls_handshake_is_bounded_by_the_connect_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog) and never says a word
        settings = Settings(fhir_allowlist=("*",), fhir_connect_timeout=0.3, fhir_read_timeout=8.0,
                            fhir_deadline=10.0)
        started = time.monotonic()
        out = fetch({"patient": "Patient/p1"}, f"https://127.0.0.1:{silent.getsockname()[1]}/fhir", None, settings)
        elapsed = time.monotonic() - started

    assert out.failures == {"patient": "timed out"}
    assert elapsed < 4.0  # the 0.3 s connect timeout, not the 8 s read timeout or the 10 s deadline


# --- 6. timeouts, Authorization, redirects -----------------------------------------------------------------


def test_headers_later_than_the_read_timeout_time_out(serve: Callable[..., Origin]) -> None:
    release = threading.Event()

    def respond(h: Handler, seen: Seen) -> None:
        release.wait(8)
        answer_patient(h, seen)

    origin = serve(respond)
    settings = Settings(fhir_allowlist=("*",), fhir_connect_timeout=5.0, fhir_read_timeout=0.3, fhir_deadline=10.0)
    try:
        started = time.monotonic()
        out = fetch({"slow": "Patient/p1"}, origin.fhir_base, None, settings)
        elapsed = time.monotonic() - started
        with pytest.raises(TimeoutError):
            get(f"{origin.fhir_base}/Patient/p2", read_timeout=0.3)
    finally:
        release.set()

    assert out.failures == {"slow": "timed out"}
    assert elapsed < 2.5  # the 0.3 s read timeout ended it, not the 5 s connect timeout or the 10 s deadline
    assert len(origin.seen) == 2  # each request sent once: a timeout is not retried


@pytest.mark.parametrize("token", [TOKEN, None], ids=["token", "no-token"])
def test_request_headers(serve: Callable[..., Origin], token: str | None) -> None:
    origin = serve(answer_patient)
    out = fetch({"patient": "Patient/p1"}, origin.fhir_base, token, SETTINGS)

    assert ids(out.resources["patient"]) == ["p1"]
    [request] = origin.seen
    if token:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
    else:
        assert "authorization" not in request.headers
    assert request.headers["accept-encoding"] == "gzip"
    assert request.headers["accept"] == "application/fhir+json"
    assert request.headers["host"] == f"127.0.0.1:{origin.port}"


def test_redirect_is_not_followed(serve: Callable[..., Origin]) -> None:
    elsewhere = serve(answer_patient)
    origin = serve(lambda h, seen: h.reply(302, b"", headers={"Location": f"{elsewhere.fhir_base}/Patient/p1"}))

    out = fetch({"patient": "Patient/p1"}, origin.fhir_base, TOKEN, SETTINGS)

    assert out.failures == {"patient": "HTTP 302"}
    assert out.resources == {}
    assert len(origin.seen) == 1
    assert elsewhere.seen == []  # neither followed nor the token carried elsewhere
