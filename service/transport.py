"""HTTP GET with kept-alive connections, for the FHIR client (:mod:`service.fhir`).

Library decision: this is the standard library's ``http.client`` with a small per-process pool of idle
connections. requests cost ~2 ms of CPU per GET here and urllib3 (under requests) ~0.6 ms, most of it re-encoding
our ~900-character percent-encoded Observation query byte by byte in Python; ``http.client`` (what urllib3 wraps)
sends the URL as given for ~0.15 ms. A call pages 40 times through 2,000 Observations, so this was most of the
service's own time (benchmarks/bench.py section 6). Bounds, auth and redirects stay in :mod:`service.fhir`.

- **TLS** is verified against the system trust store (``ssl.create_default_context``: ``SSL_CERT_FILE`` and
  ``SSL_CERT_DIR`` honoured), host name included.
- **Proxies**: ``https_proxy``, ``http_proxy``, ``all_proxy`` and ``no_proxy`` (either case) are honoured, as
  requests did: HTTPS goes through a ``CONNECT`` tunnel, plain HTTP as an absolute-form request. Only
  ``http://`` proxy URLs: an ``https://`` one is refused (http.client would send it CONNECT and the proxy
  credentials in clear text); the tunnel itself is TLS end to end.
- **Timeouts**: ``connect_timeout`` covers the TCP connect and the TLS handshake, ``read_timeout`` each read.
- **Compression**: ``Accept-Encoding: gzip`` is sent; :meth:`Response.read1` returns decoded bytes, at most
  ``n`` at a time, so a caller's byte limit bounds the decoded size (a gzip bomb stops there). Several gzip
  members are decoded one after another; anything else after a member, a truncated body, or one whose raw
  bytes decode to nothing for 1 MiB (or 1,024 reads) is an error.
- **Keep-alive**: a connection goes back to the pool only after its response was read to the end. An idle one
  that the server has closed is noticed before reuse; if a reused connection still breaks before any response
  arrives, the request is sent once more on a new connection (GET is idempotent).
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import select
import ssl
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from urllib.parse import quote, unquote, urlsplit
from urllib.request import proxy_bypass_environment

log = logging.getLogger("hcc_cds.transport")

IDLE_PER_ORIGIN = 8  # idle connections kept per (scheme, host, port, proxy)
IDLE_SECONDS = 30.0  # an idle connection older than this is closed rather than reused
_PROXY_KEYS = ("https", "http", "all", "no")
_STALE_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)

_Key = tuple[str, str, int, str | None]
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"  # with letters, digits and "-._~": what requests' requote_uri leaves alone
# a gzip body whose raw reads decode to nothing for this long is refused (a stream of empty deflate blocks)
_GZIP_IDLE_READS, _GZIP_IDLE_BYTES = 1024, 1024 * 1024


@lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def environment_proxies() -> dict[str, str]:
    """The proxy variables as ``urllib.request.getproxies_environment`` (and so requests) reads them, reading only
    those variables: scanning the whole environment for every request, as requests does, was a measurable cost.
    A lower-case variable decides when it is set, an empty one meaning "none"; else the upper-case one when not
    empty; ``HTTP_PROXY`` is ignored under CGI (``REQUEST_METHOD`` set; CVE-2016-1000110)."""
    proxies: dict[str, str] = {}
    for key in _PROXY_KEYS:
        lower = os.environ.get(f"{key}_proxy")
        value = lower if lower is not None else os.environ.get(f"{key.upper()}_PROXY")
        if key == "http" and lower is None and "REQUEST_METHOD" in os.environ:
            value = None
        if value:
            proxies[key] = value
    return proxies


def _proxy_for(scheme: str, host: str) -> str | None:
    proxies = environment_proxies()
    if not proxies:
        return None
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or proxy_bypass_environment(host, proxies):
        return None
    proxy = proxy if "://" in proxy else f"http://{proxy}"
    if urlsplit(proxy).scheme.lower() != "http":
        # http.client speaks plain TCP to a proxy: an https:// proxy URL would get CONNECT and its credentials in
        # clear text. Refused (the tunnel through an http:// proxy is TLS end to end to the FHIR server).
        log.warning("proxy URL scheme %r is not supported (use http://): FHIR request not sent",
                    urlsplit(proxy).scheme)
        raise UnsupportedProxy("unsupported proxy URL scheme")
    return proxy


class UnsupportedProxy(OSError):
    """The environment names a proxy this client cannot use safely (an https:// proxy URL)."""


class _Pool:
    """Idle connections by origin (thread-safe)."""

    def __init__(self) -> None:
        self._idle: dict[_Key, list[tuple[float, http.client.HTTPConnection]]] = {}
        self._lock = threading.Lock()

    def take(self, key: _Key) -> http.client.HTTPConnection | None:
        """An idle connection for ``key`` that still looks open, or None."""
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                since, conn = idle.pop()
            if time.monotonic() - since < IDLE_SECONDS and _looks_open(conn):
                return conn
            conn.close()

    def give(self, key: _Key, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < IDLE_PER_ORIGIN:
                idle.append((time.monotonic(), conn))
                return
        conn.close()

    def forget(self) -> None:
        """Drop every idle connection without closing it (a forked child: the sockets are its parent's)."""
        self._idle, self._lock = {}, threading.Lock()

    def clear(self) -> None:
        with self._lock:
            connections = [conn for idle in self._idle.values() for _, conn in idle]
            self._idle.clear()
        for conn in connections:
            conn.close()


_POOL = _Pool()
if hasattr(os, "register_at_fork"):  # a forked worker must not share its parent's sockets
    os.register_at_fork(after_in_child=_POOL.forget)


def _looks_open(conn: http.client.HTTPConnection) -> bool:
    """False when the server closed the idle connection (its socket reads as ready: EOF, or bytes nobody asked
    for)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _connect(scheme: str, host: str, port: int, proxy: str | None, timeout: float) -> http.client.HTTPConnection:
    conn: http.client.HTTPConnection
    if proxy is None:
        conn = (http.client.HTTPSConnection(host, port, timeout=timeout, context=_tls()) if scheme == "https"
                else http.client.HTTPConnection(host, port, timeout=timeout))
    else:
        parts = urlsplit(proxy)
        proxy_port = parts.port or (443 if parts.scheme == "https" else 80)
        headers = {}
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials).decode()
        if scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname or "", proxy_port, timeout=timeout, context=_tls())
            conn.set_tunnel(host, port, headers=headers)
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", proxy_port, timeout=timeout)
            conn.proxy_headers = headers  # type: ignore[attr-defined]
    try:
        conn.connect()
    except BaseException:
        conn.close()  # http.client closes a failed CONNECT tunnel only on a non-200 status
        raise
    return conn


class Response:
    """The status, headers and (decoded) body stream of one GET."""

    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self._raw = raw
        self.status = raw.status
        self.headers = raw.headers
        encoding = (raw.headers.get("Content-Encoding") or "").strip().lower()
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in {"gzip", "x-gzip"} else None
        self._ended = False

    def read1(self, n: int) -> bytes:
        """Up to ``n`` decoded bytes, as soon as any arrive; b"" at the end. ``http.client.IncompleteRead`` when the
        server closed before its Content-Length, ``zlib.error`` on a corrupt or truncated gzip body."""
        if self._inflate is None:
            data = self._raw.read1(n)
            if not data:
                self._end()
            return data
        idle_bytes = 0
        for _ in range(_GZIP_IDLE_READS):
            if self._inflate.eof:  # a member ended: what follows must be another member (RFC 1952 §2.2)
                follow = self._inflate.unused_data or self._raw.read1(n)
                if not follow:
                    self._end()
                    return b""
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)  # zlib.error if it is not gzip
                data = self._inflate.decompress(follow, n)
            elif self._inflate.unconsumed_tail:
                data = self._inflate.decompress(self._inflate.unconsumed_tail, n)
            else:
                compressed = self._raw.read1(n)
                if not compressed:
                    self._end()
                    raise zlib.error("truncated gzip body")
                idle_bytes += len(compressed)
                data = self._inflate.decompress(compressed, n)
            if data:
                return data
            if idle_bytes > _GZIP_IDLE_BYTES:
                break
        raise zlib.error("gzip body that decodes to nothing")

    def _end(self) -> None:
        missing = self._raw.length  # http.client's read1 returns b"" when the server closes early: no error
        if missing:
            raise http.client.IncompleteRead(b"", missing)
        # http.client's read1 does not close a Content-Length response at its end; the connection refuses the next
        # request until it is closed (this closes the response, not the socket)
        self._ended = True
        self._raw.close()

    @property
    def reusable(self) -> bool:
        """True when the body was read to the end and the server keeps the connection open."""
        return self._ended and not self._raw.will_close


@contextmanager
def get(url: str, headers: Mapping[str, str], *, connect_timeout: float, read_timeout: float) -> Iterator[Response]:
    """GET ``url`` (http or https) with ``headers``; yields the :class:`Response` once its headers arrived.

    Raises ``OSError`` (``TimeoutError`` for a timeout, ``ssl.SSLError`` for TLS) or ``http.client.HTTPException``
    when no response arrives. The connection returns to the pool only when the caller read the body to the end."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    proxy = _proxy_for(scheme, host)
    key: _Key = (scheme, host, port, proxy)
    target = url if proxy is not None and scheme == "http" else (parts.path or "/") + (
        f"?{parts.query}" if parts.query else "")
    # a server's next link may hold a space or a non-ASCII character: percent-encode what may not go on the wire
    # (UTF-8), keep what is already encoded, as requests' requote_uri does
    target = quote(target, safe=_URL_SAFE)
    request_headers = {**headers, "Accept-Encoding": "gzip"}
    reused = _POOL.take(key)
    conn = reused or _connect(scheme, host, port, proxy, connect_timeout)
    try:
        try:
            raw = _send(conn, target, request_headers, read_timeout)
        except _STALE_ERRORS:
            if reused is None:
                raise
            conn.close()  # the server had closed the kept-alive connection: once more on a new one
            conn = _connect(scheme, host, port, proxy, connect_timeout)
            raw = _send(conn, target, request_headers, read_timeout)
    except BaseException:
        conn.close()
        raise
    response = Response(raw)
    try:
        yield response
    finally:
        if response.reusable:
            _POOL.give(key, conn)
        else:
            conn.close()


def _send(conn: http.client.HTTPConnection, target: str, headers: Mapping[str, str],
          read_timeout: float) -> http.client.HTTPResponse:
    if conn.sock is not None:
        conn.sock.settimeout(read_timeout)
    conn.request("GET", target, headers={**headers, **getattr(conn, "proxy_headers", {})})
    return conn.getresponse()


def close_idle() -> None:
    """Close every idle connection (tests; a worker shutting down)."""
    _POOL.clear()
