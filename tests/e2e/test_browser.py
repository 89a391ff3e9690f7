"""A real headless Chromium as a browser-based CDS Client and SMART launcher (service-contract.md §6–§8).

The service runs as a real ``hcc-cds serve`` process (JWT auth required, a test ES384 issuer trusted via a
JWKS file); the client page ``client.html`` is served from a different origin by a plain static server, so
every call below is a genuine cross-origin ``fetch`` with a CORS preflight. What the page can *read* is
what a sandbox in a browser would see: a missing CORS header turns into a fetch error, not a status code.

Skipped when /usr/bin/chromium or the ``playwright`` module is missing (``playwright install`` is never
needed: the system Chromium is used).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, ROOT, Issuer, run_service, static_server

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)",
                               exc_type=ImportError)

pytestmark = pytest.mark.integration

PATIENT_VIEW = "hcc-second-line-patient-view"
PATIENT = "oligoprogression-patient"
SCREENSHOT = Path("/tmp/hcc-cds-browser.png")
CALL = "([method, url, options]) => window.cdsClient.cdsFetch(method, url, options)"


class Browser:
    """One page on the client origin, plus everything the browser reported while the tests ran."""

    def __init__(self, page, service_base: str, page_origin: str, issuer: Issuer, service) -> None:
        self.page = page
        self.base = service_base
        self.origin = page_origin
        self.issuer = issuer
        self.service = service
        self.console: list[tuple[str, str]] = []
        self.failed: list[str] = []
        page.on("console", lambda message: self.console.append((message.type, message.text)))
        page.on("pageerror", lambda error: self.console.append(("pageerror", str(error))))
        page.on("requestfailed", lambda req: self.failed.append(f"{req.method} {req.url}: {req.failure}"))

    def fetch(self, method: str, path: str, *, body: dict | None = None, token: str | None = None,
              auth: bool = True) -> dict:
        """A cross-origin fetch from the page; with ``auth`` a fresh JWT whose aud is exactly this URL."""
        url = self.base + path
        options: dict = {}
        if token is not None:
            options["token"] = token
        elif auth:
            options["token"] = self.issuer.token(url.split("?", 1)[0])
        if body is not None:
            options["body"] = body
        result = self.page.evaluate(CALL, [method, url, options])
        assert "error" not in result, f"{method} {url}: the page could not read the response: {result['error']}"
        return result

    def cors_problems(self) -> list[str]:
        words = ("cors", "access-control", "cross-origin", "blocked by", "failed to fetch")
        return [f"{kind}: {text}" for kind, text in self.console if any(w in text.lower() for w in words)]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    tmp = tmp_path_factory.mktemp("e2e")
    issuer = Issuer()
    jwks = issuer.write_jwks(tmp / "jwks.json")
    with run_service(tmp, jwks) as service, static_server() as page_origin, \
            sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = chromium.new_page(viewport={"width": 1000, "height": 700})
            page.set_default_timeout(15_000)
            state = Browser(page, service.base, page_origin, issuer, service)
            page.goto(f"{page_origin}/client.html")
            page.wait_for_function("() => window.cdsClient !== undefined")
            assert urlsplit(page_origin).netloc != urlsplit(service.base).netloc  # really cross-origin
            yield state
        finally:
            chromium.close()


def patient_view_request(*, fhir_server: str | None) -> dict:
    """The oligoprogression fixture's hook request without its prefetch (the service must fetch)."""
    request = json.loads((ROOT / "fixtures/requests/oligoprogression.patient-view.json").read_text("utf-8"))
    request.pop("prefetch", None)
    request.pop("extension", None)
    if fhir_server:
        request["fhirServer"] = fhir_server
    return request


def test_discovery_with_a_jwt_from_another_origin(browser: Browser) -> None:
    result = browser.fetch("GET", "/cds-services")
    assert result["status"] == 200, result["text"]
    services = result["json"]["services"]
    assert len(services) == 3
    assert PATIENT_VIEW in {s["id"] for s in services}


def test_patient_view_cards_feedback_and_screenshot(browser: Browser) -> None:
    request = patient_view_request(fhir_server=f"{browser.base}/fhir")
    result = browser.fetch("POST", f"/cds-services/{PATIENT_VIEW}", body=request)
    assert result["status"] == 200, result["text"]
    cards = result["json"]["cards"]
    assert cards, "patient-view returned no cards"

    rendered = browser.page.evaluate("(cards) => window.cdsClient.renderCards(cards)", cards)
    assert rendered == [card["summary"] for card in cards]
    assert browser.page.locator("#cards .card").count() == len(cards)
    assert any("oligoprogression" in summary.lower() for summary in rendered), rendered

    # Feedback for the first card, as the sandbox sends it.
    card = cards[0]
    suggestion_ids = [s["uuid"] for s in card.get("suggestions", []) if s.get("uuid")]
    item: dict = {"card": card["uuid"], "outcomeTimestamp": None}
    if suggestion_ids:
        item.update(outcome="accepted", acceptedSuggestions=[{"id": suggestion_ids[0]}])
    else:
        reasons = [r.get("code") for r in card.get("overrideReasons", []) if r.get("code")]
        item.update(outcome="overridden", overrideReason={"reason": {"code": (reasons or ["not-relevant"])[0]}})
    item["outcomeTimestamp"] = browser.page.evaluate("() => new Date().toISOString()")
    feedback = browser.fetch("POST", f"/cds-services/{PATIENT_VIEW}/feedback", body={"feedback": [item]})
    assert 200 <= feedback["status"] < 300, feedback["text"]

    browser.page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 5_000


def test_bad_and_expired_jwt_are_readable_401s(browser: Browser) -> None:
    url = f"{browser.base}/cds-services/{PATIENT_VIEW}"
    request = patient_view_request(fhir_server=f"{browser.base}/fhir")
    expired = browser.issuer.token(url, age=3600)
    forged = Issuer(kid=browser.issuer.kid).token(url)  # right kid, wrong key
    for token in (expired, forged, "not-a-jwt"):
        result = browser.fetch("POST", f"/cds-services/{PATIENT_VIEW}", body=request, token=token)
        assert result["status"] == 401, result["text"]
        assert result["json"] is not None, "401 body is not JSON"
        assert token not in result["text"]  # never echoed


def test_no_prefetch_and_no_fhir_server_is_a_readable_412(browser: Browser) -> None:
    result = browser.fetch("POST", f"/cds-services/{PATIENT_VIEW}", body=patient_view_request(fhir_server=None))
    assert result["status"] == 412, result["text"]
    assert isinstance(result["json"], dict), f"412 body is not a JSON object: {result['text']!r}"
    assert "application/json" in (result["contentType"] or "")


def test_smart_launcher_reads_the_embedded_fhir_endpoint(browser: Browser) -> None:
    metadata = browser.fetch("GET", "/fhir/metadata", auth=False)
    assert metadata["status"] == 200, metadata["text"]
    assert metadata["json"] is not None, f"metadata is not JSON: {metadata['contentType']}"
    assert metadata["json"]["resourceType"] == "CapabilityStatement"
    assert "security" in metadata["json"]["rest"][0]

    patients = browser.fetch("GET", "/fhir/Patient", auth=False)
    assert patients["status"] == 200, patients["text"]
    bundle = patients["json"]
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle.get("entry"), "GET /fhir/Patient listed no patients"
    assert all(e["resource"]["name"][0]["given"] for e in bundle["entry"])
    assert PATIENT in {e["resource"]["id"] for e in bundle["entry"]}

    observations = browser.fetch("GET", f"/fhir/Observation?patient={PATIENT}&_count=2", auth=False)
    assert observations["status"] == 200, observations["text"]
    links = {link["relation"]: link["url"] for link in observations["json"].get("link", [])}
    assert "next" in links, links
    assert urlsplit(links["next"]).netloc == urlsplit(browser.base).netloc
    assert len(observations["json"]["entry"]) == 2
    following = browser.page.evaluate(CALL, ["GET", links["next"], {}])
    assert following.get("status") == 200, following


def test_browser_saw_preflights_and_no_cors_errors(browser: Browser) -> None:
    """Runs last: the whole session produced no CORS complaints and no failed requests."""
    assert browser.cors_problems() == [], browser.console
    assert browser.failed == []
    assert not [text for kind, text in browser.console if kind == "pageerror"]
    # The browser really preflighted the calls that carry Authorization / JSON (seen by the service).
    # The service logs the matched route, not the concrete path.
    log = browser.service.log()
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    preflights = {e["path"] for e in events if e.get("event") == "request" and e.get("method") == "OPTIONS"
                  and e.get("status") == 204}
    for route in ("/cds-services", "/cds-services/<service_id>", "/cds-services/<service_id>/feedback"):
        assert route in preflights, f"no 204 preflight for {route} in the service log:\n{log}"
    # The patient-view call without prefetch made the service read its own /fhir endpoint over HTTP.
    assert any(e.get("method") == "GET" and str(e.get("path", "")).startswith("/fhir/") for e in events)
