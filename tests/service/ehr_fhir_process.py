"""A small FHIR R4 server process shaped like a real EHR's, for integration tests and the benchmark.

    python tests/service/ehr_fhir_process.py PORT BUNDLE.json [BUNDLE.json ...] [--page-size N]
        [--no-results-outcome] [--log FILE]

Serves the resources of the given Bundles (any type; ``urn:uuid`` references are rewritten to ``Type/id`` as
a server would) under ``/fhir``: ``metadata``, reads ``{Type}/{id}`` (Medication included), and searches by
``patient``/``subject`` and token ``code`` (``system|code``, comma = OR; values percent-decoded once, as
every HTTP server does), with ``_count`` capped at ``--page-size`` and absolute ``next`` links. With
``--no-results-outcome`` an empty search answers as Epic does: a searchset with one OperationOutcome entry
(search mode ``outcome``) whose only issue is a *warning*, code 4101 "no results". ``--log`` appends each
request's path and query (one line each) to FILE.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

EPIC_NO_RESULTS = {
    "resourceType": "OperationOutcome",
    "issue": [{
        "severity": "warning",
        "code": "processing",
        "details": {"coding": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369", "code": "4101",
                                "display": "Resource request returns no results."}],
                    "text": "Resource request returns no results."},
    }],
}
SEARCH_REFERENCES = {"patient": ("subject", "patient"), "subject": ("subject",)}


def load(paths: list[Path]) -> dict[str, dict[str, dict]]:
    """Resources by type and id; bundle-local fullUrl references rewritten to ``Type/id``."""
    store: dict[str, dict[str, dict]] = {}
    for path in paths:
        bundle = json.loads(path.read_text(encoding="utf-8"))
        entries = [e for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)]
        urls = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
                for e in entries if isinstance(e.get("fullUrl"), str)}
        for entry in entries:
            resource = json.loads(_rewrite(json.dumps(entry["resource"]), urls))
            store.setdefault(resource["resourceType"], {})[resource["id"]] = resource
    return store


def _rewrite(text: str, urls: dict[str, str]) -> str:
    for url, local in urls.items():
        text = text.replace(json.dumps(url), json.dumps(local))
    return text


def _reference_matches(resource: dict, elements: tuple[str, ...], wanted: str) -> bool:
    target = wanted if "/" in wanted else f"Patient/{wanted}"
    for element in elements:
        value = resource.get(element)
        ref = value.get("reference") if isinstance(value, dict) else None
        ref = ref.split("/_history/", 1)[0] if isinstance(ref, str) else None
        if ref is not None and (ref == target or ref.endswith("/" + target)):
            return True
    return False


def _codings(resource: dict) -> list[dict]:
    code = resource.get("code")
    if resource["resourceType"].startswith("Medication") and resource["resourceType"] != "Medication":
        code = resource.get("medicationCodeableConcept")
    codings = code.get("coding") if isinstance(code, dict) else None
    return [c for c in codings or () if isinstance(c, dict)]


def _code_matches(resource: dict, tokens: list[str]) -> bool:
    for token in tokens:
        system, bar, code = token.partition("|")
        if not bar:
            system, code = None, token
        for coding in _codings(resource):
            if coding.get("code") == code and (system is None or (system == "" and "system" not in coding)
                                               or coding.get("system") == system):
                return True
    return False


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"  # keep-alive, as EHR FHIR servers do
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self.server.record(f"{parts.path}\t{parts.query}")
        base = f"http://{self.headers['Host']}/fhir"
        segments = [s for s in parts.path.split("/") if s]
        if segments[:1] != ["fhir"]:
            return self.send(404, {"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "not-found"}]})
        segments = segments[1:]
        if segments == ["metadata"]:
            return self.send(200, {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
                                   "fhirVersion": "4.0.1", "format": ["json"]})
        if len(segments) == 2:
            resource = self.server.store.get(segments[0], {}).get(segments[1])
            if resource is None:
                return self.send(404, {"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "not-found"}]})
            return self.send(200, resource)
        if len(segments) == 1:
            return self.send(200, self.search(segments[0], parse_qs(parts.query), base))
        return self.send(400, {"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "not-supported"}]})

    def search(self, resource_type: str, params: dict[str, list[str]], base: str) -> dict:
        criteria = tuple(sorted((k, tuple(v)) for k, v in params.items() if k in SEARCH_REFERENCES or k == "code"))
        found = self.server.matches.get((resource_type, criteria))
        if found is None:  # searched once, then paged from the cached result (as a server's search session)
            found = list(self.server.store.get(resource_type, {}).values())
            for name, values in criteria:
                if name in SEARCH_REFERENCES:
                    found = [r for r in found if all(_reference_matches(r, SEARCH_REFERENCES[name], v)
                                                     for v in values)]
                else:
                    found = [r for r in found if all(_code_matches(r, v.split(",")) for v in values)]
            self.server.matches[(resource_type, criteria)] = found
        count = min(int(params.get("_count", ["50"])[0]), self.server.page_size)
        offset = int(params.get("_offset", ["0"])[0])
        page = found[offset:offset + count]
        entries = [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                   for r in page]
        if not found and self.server.no_results_outcome:
            entries = [{"resource": EPIC_NO_RESULTS, "search": {"mode": "outcome"}}]
        plain = {k: v[0] for k, v in params.items() if k != "_offset"}
        links = [{"relation": "self", "url": f"{base}/{resource_type}?{urlencode(plain)}"}]
        if offset + count < len(found):
            links.append({"relation": "next",
                          "url": f"{base}/{resource_type}?{urlencode({**plain, '_offset': offset + count})}"})
        return {"resourceType": "Bundle", "type": "searchset", "total": len(found), "link": links, "entry": entries}

    def send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, store: dict, page_size: int, no_results_outcome: bool, log: Path | None) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.store, self.page_size, self.no_results_outcome, self.log = store, page_size, no_results_outcome, log
        self.matches: dict[tuple, list[dict]] = {}
        self._lock = threading.Lock()

    def record(self, line: str) -> None:
        if self.log is not None:
            with self._lock, self.log.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--no-results-outcome", action="store_true")
    parser.add_argument("--log", type=Path)
    args = parser.parse_args(argv)
    Server(args.port, load(args.bundles), args.page_size, args.no_results_outcome, args.log).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
