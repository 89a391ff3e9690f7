"""Real HTTP servers on 127.0.0.1 (port 0) for testing ``service.fhir``.

``FakeFHIR`` is a threaded server with one route per behaviour (paging searchsets, reads, slow, drip-fed,
HTTP errors, redirects, off-host ``next`` links, oversized and non-JSON bodies, HAPI-style ``_getpages``
paging built with fhirclient models); it records every request. ``HungServer`` accepts TCP connections
and never answers.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from fhirclient.models.bundle import Bundle, BundleEntry, BundleEntrySearch, BundleLink
from fhirclient.models.observation import Observation

PAGES = 3
PER_PAGE = 2


@dataclass(frozen=True)
class Recorded:
    path: str
    query: str
    authorization: str | None
    accept: str | None
    prefer: str | None = None


def observation(oid: str, patient: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1834-1"}]},
        "subject": {"reference": f"Patient/{patient}"},
    }


def searchset(entries: list[dict], next_url: str | None = None) -> dict:
    bundle: dict = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    if next_url is not None:
        bundle["link"] = [{"relation": "self", "url": "ignored"}, {"relation": "next", "url": next_url}]
    return bundle


def match(resource: dict, mode: str | None = "match") -> dict:
    entry: dict = {"fullUrl": f"urn:uuid:{resource['resourceType']}-{resource['id']}", "resource": resource}
    if mode is not None:
        entry["search"] = {"mode": mode}
    return entry


OUTCOME = {"resourceType": "OperationOutcome", "id": "oo",
           "issue": [{"severity": "warning", "code": "informational"}]}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self.server.fake.record(Recorded(parts.path, parts.query, self.headers.get("Authorization"),
                                         self.headers.get("Accept"), self.headers.get("Prefer")))
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        base = f"http://{self.headers['Host']}"
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.server.fake.route(self, parts.path, params, base)

    def send(self, status: int, body: bytes | dict, content_type: str = "application/fhir+json",
             length: bool = True, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops simultaneous connects (a 1 s SYN retry)
    fake: FakeFHIR


class FakeFHIR:
    """A FHIR-ish server at ``base_url`` (``http://127.0.0.1:<port>``); FHIR base is ``fhir_base``."""

    def __init__(self) -> None:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def fhir_base(self) -> str:
        return self.base_url + "/fhir"

    def start(self) -> FakeFHIR:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def record(self, request: Recorded) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    # --- routes --------------------------------------------------------------------------------------

    def route(self, h: _Handler, path: str, params: dict[str, str], base: str) -> None:
        if "_delay" in params:
            time.sleep(float(params["_delay"]))
        if path.startswith("/fhir/Patient/"):
            h.send(200, {"resourceType": "Patient", "id": path.rsplit("/", 1)[1]})
        elif path == "/fhir/Observation":  # 3 pages, absolute next links, OperationOutcome + include entries
            page = int(params.get("page", "1"))
            patient = params.get("patient", "?")
            entries = [match(observation(f"obs-{page}-{i}", patient)) for i in range(1, PER_PAGE + 1)]
            if page == 1:
                entries.insert(1, match(OUTCOME, "outcome"))
            if page == 2:
                entries.append(match({"resourceType": "Patient", "id": patient}, "include"))
            if page == 3:
                entries.append(match(observation("obs-3-nomode", patient), None))
            next_url = None
            if page < PAGES:
                query = {k: v for k, v in params.items() if k != "page"} | {"page": str(page + 1)}
                next_url = f"{base}/fhir/Observation?{urlencode(query)}"
            h.send(200, searchset(entries, next_url))
        elif path == "/fhir/Condition":  # 2 pages, relative next link
            page = int(params.get("page", "1"))
            entry = match({"resourceType": "Condition", "id": f"cond-{page}"})
            h.send(200, searchset([entry], "Condition?page=2" if page == 1 else None))
        elif path == "/fhir/slow":
            time.sleep(float(params.get("s", "1.5")))
            h.send(200, searchset([]))
        elif path == "/fhir/drip":  # a byte every 0.1 s: each read is quick, the whole body never ends
            h.send_response(200)
            h.send_header("Content-Type", "application/fhir+json")
            h.end_headers()
            for _ in range(30):
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(0.1)
        elif path.startswith("/fhir/status/"):
            h.send(int(path.rsplit("/", 1)[1]), OUTCOME)
        elif path == "/fhir/redirect":
            h.send(302, b"", headers={"Location": params["to"]})
        elif path == "/fhir/offhost":
            h.send(200, searchset([match(observation("local-1", "p"))], params["to"]))
        elif path == "/fhir/big":  # a valid Bundle of about n bytes, with or without Content-Length
            padding = "x" * int(params.get("n", "100000"))
            body = searchset([match({"resourceType": "Basic", "id": "big", "text": {"div": padding}})])
            h.send(200, body, length=params.get("length", "1") == "1")
        elif path == "/fhir/stream":  # ~mb MB of one Bundle, written 64 KB at a time (no large buffer here)
            h.send_response(200)
            h.send_header("Content-Type", "application/fhir+json")
            h.end_headers()
            h.wfile.write(b'{"resourceType":"Bundle","type":"searchset","entry":[{"resource":'
                          b'{"resourceType":"Basic","id":"big","text":{"div":"')
            block = b"x" * 65536
            for _ in range(int(float(params.get("mb", "17")) * 16)):
                h.wfile.write(block)
            h.wfile.write(b'"}}}]}')
        elif path == "/fhir/loop":  # a searchset whose next link is itself: paging that never ends
            h.send(200, searchset([match(observation("loop-1", "p"))], f"{base}/fhir/loop"))
        elif path == "/fhir/html":
            h.send(200, b"<html><body>Login</body></html>", content_type="text/html")
        elif path == "/fhir/outcome":
            h.send(200, OUTCOME)
        elif path == "/baseR4/Observation" or (path == "/baseR4" and "_getpages" in params):
            h.send(200, _hapi_page(base, params))
        else:
            h.send(404, OUTCOME)


def _hapi_page(base: str, params: dict[str, str]) -> dict:
    """A HAPI-style searchset page built with fhirclient models; ``next`` is ``{base}/baseR4?_getpages=…``."""
    offset = int(params.get("_getpagesoffset", "0"))
    count = 2
    total = 5
    bundle = Bundle({"type": "searchset", "total": total})
    bundle.entry = []
    for n in range(offset, min(offset + count, total)):
        obs = Observation(observation(f"hapi-{n}", "p1"))
        entry = BundleEntry({"fullUrl": f"{base}/baseR4/Observation/hapi-{n}"})
        entry.resource = obs
        entry.search = BundleEntrySearch({"mode": "match"})
        bundle.entry.append(entry)
    bundle.link = [BundleLink({"relation": "self", "url": f"{base}/baseR4/Observation"})]
    if offset + count < total:
        query = urlencode({"_getpages": "4f1c-aa", "_getpagesoffset": offset + count, "_count": count,
                           "_pretty": "true", "_bundletype": "searchset"})
        bundle.link.append(BundleLink({"relation": "next", "url": f"{base}/baseR4?{query}"}))
    return bundle.as_json()


class HungServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self._conns: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/fhir"

    def start(self) -> HungServer:
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(1)
        for conn in self._conns:
            conn.close()
        self._sock.close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/fhir"
