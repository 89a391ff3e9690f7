"""service.transport: defects an independent review found against the requests/urllib3 client it replaced, each
shown here with raw sockets before it was fixed: bytes after a gzip member past every bound, a multi-member gzip
body cut short, next links with a space or a non-ASCII character, and an https:// proxy URL that got CONNECT and
its credentials in clear text (now refused: the service speaks only to http:// proxies, through which the
tunnel is TLS end to end)."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

import pytest

from service import transport
from service.config import Settings
from service.fhir import fetch

PATIENT = json.dumps({"resourceType": "Patient", "id": "p1"}).encode()
MiB = 1024 * 1024
SETTINGS = Settings(fhir_allowlist=("*",), fhir_connect_timeout=2.0, fhir_read_timeout=5.0, fhir_deadline=20.0,
                    fhir_max_response_bytes=MiB, fhir_max_bytes=2 * MiB)
PROXIES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in PROXIES:
        monkeypatch.delenv(name, raising=False)
    transport.close_idle()
    yield
    transport.close_idle()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket, str], None]], str]]:
    """A raw HTTP server on 127.0.0.1: the handler gets the socket and the request line for every request."""
    sockets: list[socket.socket] = []

    def start(handler: Callable[[socket.socket, str], None]) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        sockets.append(listener)

        def serve_one(conn: socket.socket) -> None:
            buffer = b""
            with conn:
                try:
                    while True:
                        while b"\r\n\r\n" not in buffer:
                            data = conn.recv(65536)
                            if not data:
                                return
                            buffer += data
                        head, buffer = buffer.split(b"\r\n\r\n", 1)
                        handler(conn, head.decode("latin-1").split("\r\n")[0])
                except OSError:
                    pass

        def accept() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}/fhir"

    yield start
    for s in sockets:
        s.close()


def _ok(conn: socket.socket, body: bytes, extra: str = "") -> None:
    conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
                 .encode() + body)


def test_bytes_after_the_gzip_member_are_bounded_by_the_response_limit(raw_server) -> None:
    """service/transport.py Response.read1: after the gzip member ends, every further raw byte is fed to the
    finished decompressor, which appends it to ``unused_data`` (quadratic, in memory) without ever returning to
    the caller's byte/deadline checks. 8 MiB of trailing bytes with a 1 MiB response limit."""
    def handler(conn: socket.socket, _line: str) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n" + gzip.compress(PATIENT))
        for _ in range(8 * 16):
            conn.sendall(b"J" * 65536)
        conn.close()

    base = raw_server(handler)
    tracemalloc.start()
    try:
        fetch({"k": "Patient/p1"}, base, "t", SETTINGS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * MiB, f"peak {peak / MiB:.0f} MiB held for a response limited to 1 MiB"


def test_multi_member_gzip_is_decoded_whole(raw_server) -> None:
    """RFC 1952 allows several members; urllib3 decoded them all, this decoder stops after the first."""
    body = gzip.compress(PATIENT[:10]) + gzip.compress(PATIENT[10:])
    base = raw_server(lambda conn, _line: _ok(conn, body, "Content-Encoding: gzip\r\n"))
    out = fetch({"k": "Patient/p1"}, base, "t", SETTINGS)
    assert out.failures == {}
    assert [r["id"] for r in out.resources["k"]] == ["p1"]


@pytest.mark.parametrize("next_query", ["Observation?patient=p1&page=2&name=a b",
                                        "Observation?patient=p1&page=2&name=Jos\u00e9"])
def test_a_next_link_with_a_space_or_non_ascii_character_is_followed(raw_server, next_query: str) -> None:
    """requests percent-encoded such a URL; http.client raises InvalidURL / UnicodeEncodeError, and the key
    fails ("unreachable" / "request failed") although page 1 was read."""
    def handler(conn: socket.socket, line: str) -> None:
        if "page=2" in line:
            page = {"resourceType": "Bundle", "type": "searchset",
                    "entry": [{"resource": {"resourceType": "Observation", "id": "o2"}}]}
        else:
            page = {"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "next", "url": next_query}],
                    "entry": [{"resource": {"resourceType": "Observation", "id": "o1"}}]}
        _ok(conn, json.dumps(page).encode())

    base = raw_server(handler)
    out = fetch({"k": "Observation?patient=p1"}, base, "t", SETTINGS)
    assert out.failures == {}
    assert [r["id"] for r in out.resources["k"]] == ["o1", "o2"]


def test_an_https_proxy_never_gets_credentials_in_clear_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY=https://user:pass@proxy: http.client would speak plain TCP to it and send CONNECT with
    Proxy-Authorization in clear text. Such a proxy URL is refused: nothing goes out, the key fails cleanly."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    received: list[bytes] = []

    def accept() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.settimeout(2)
        with conn, contextlib.suppress(OSError):
            received.append(conn.recv(4096))

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("https_proxy", f"https://proxyuser:proxy-secret@127.0.0.1:{listener.getsockname()[1]}")
    out = fetch({"k": "Patient/p1"}, "https://ehr.example.org/fhir", "t",
                Settings(fhir_allowlist=("*",), fhir_connect_timeout=1, fhir_read_timeout=1, fhir_deadline=3))
    thread.join(3)
    listener.close()
    assert out.failures == {"k": "unreachable"}
    assert not any(b"Proxy-Authorization" in data or b"proxy-secret" in data for data in received), received


def test_a_gzip_stream_of_empty_blocks_is_refused_not_read_forever(raw_server) -> None:
    """Empty deflate blocks decode to nothing: without a bound, the worker would read them for as long as the server
    sends them, never returning to the caller's byte and deadline checks."""
    header = gzip.compress(b"")[:10]  # the gzip member header
    empty_block = b"\x00\x00\x00\xff\xff"  # a non-final stored deflate block of no bytes
    assert zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(header + empty_block * 10) == b""

    sent = [0]

    def handler(conn: socket.socket, _line: str) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n" + header)
        chunk = empty_block * (65536 // len(empty_block))
        try:
            while sent[0] < 512 * MiB:  # for as long as the client reads
                conn.sendall(chunk)
                sent[0] += len(chunk)
        except OSError:
            pass
        conn.close()

    out = fetch({"k": "Patient/p1"}, raw_server(handler), "t", SETTINGS)
    assert out.failures == {"k": "not JSON"}
    assert sent[0] < 64 * MiB, f"{sent[0] / MiB:.0f} MiB of empty blocks read"
