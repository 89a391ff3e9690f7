"""A FHIR reverse proxy process that mangles an unencoded ``|`` in the request target, for integration tests.

    python tests/service/mangling_proxy.py PORT UPSTREAM-FHIR-BASE [--log FILE]

Forwards ``GET {proxy}/fhir/...`` to ``UPSTREAM-FHIR-BASE/...`` with the Authorization, Accept and Prefer
headers, and rewrites the upstream base to its own in response bodies (paging links and fullUrls), as the
SMART launcher's FHIR proxy does. A raw ``|`` in the request target is escaped a second time (``%257C``),
so the upstream server reads a literal ``%7C`` and a ``system|code`` token matches nothing (issue 12: behind
the launcher's proxy every code-filtered query came back empty). A percent-encoded ``%7C`` passes unchanged.
``--log`` appends each request target as received (one line each).
"""

from __future__ import annotations

import argparse
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

FORWARDED = ("Authorization", "Accept", "Prefer")


class Handler(BaseHTTPRequestHandler):
    server: Proxy
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.server.log is not None:
            with self.server.log.open("a", encoding="utf-8") as handle:
                handle.write(self.path + "\n")
        if not self.path.startswith("/fhir"):
            self.send_error(404)
            return
        target = self.path.removeprefix("/fhir").replace("|", "%257C")
        headers = {name: self.headers[name] for name in FORWARDED if self.headers.get(name)}
        # the target goes out byte for byte: a prepared request would re-encode it
        session = self.server.session()
        prepared = session.prepare_request(requests.Request("GET", self.server.upstream, headers=headers))
        prepared.url = self.server.upstream + target
        upstream = session.send(prepared, timeout=5, allow_redirects=False)
        own_base = f"http://{self.headers['Host']}/fhir"
        body = upstream.content.replace(self.server.upstream.encode(), own_base.encode())
        self.send_response(upstream.status_code)
        self.send_header("Content-Type", upstream.headers.get("Content-Type", "application/fhir+json"))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, upstream: str, log: Path | None) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.upstream = upstream.rstrip("/")
        self.log = log
        self._local = threading.local()

    def session(self) -> requests.Session:
        """One upstream Session per handler thread (connections reused)."""
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("upstream")
    parser.add_argument("--log", type=Path)
    args = parser.parse_args(argv)
    Proxy(args.port, args.upstream, args.log).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
