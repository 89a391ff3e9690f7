"""The demo EHR page and the SMART pathway app in a real headless Chromium (service-contract.md §10).

demo page → patient → patient-view cards → SMART launch (EHR launch with the card's uuid as appContext) →
the demo authorization server (Authlib, PKCE S256) → the app: pathway, charts, options with the paper's
quotes, a decline with a reason stored as CDS Hooks feedback. A second test launches standalone; a third
checks that the access token appears in no URL, page, response body, cookie or browser storage.

The service runs in this process (a real HTTP server on a thread) so the tests can read the tokens the demo
authorization server issued and the feedback table. Expectations come from the fixture Bundles and the
paper's quotes, not from the app's output.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, ROOT, InProcessService, run_in_process, static_server

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)",
                               exc_type=ImportError)

from cards.evidence import QUOTES  # noqa: E402
from service.db import FeedbackRecord  # noqa: E402

pytestmark = pytest.mark.integration

PATIENT = "systemic-atezo-bev-patient"
FIXTURE = ROOT / "fixtures" / "patients" / "systemic-atezo-bev.json"
ALBUMIN = {"1751-7", "61151-7", "61152-5", "2862-1", "76631-1"}
BILIRUBIN = {"1975-2", "42719-5", "59827-6", "59828-4", "14631-6"}
# Screenshots go to a temporary directory; E2E_SCREENSHOTS=docs refreshes the README's (docs/*.png).
SHOTS_ENV = "E2E_SCREENSHOTS"


def albi_pair_days(bundle_path: Path) -> int:
    """Days with both an albumin and a total bilirubin result in the fixture (every ALBI pair)."""
    days: dict[str, set[str]] = {"alb": set(), "bili": set()}
    for entry in json.loads(bundle_path.read_text(encoding="utf-8"))["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] != "Observation" or "valueQuantity" not in resource:
            continue
        codes = {coding.get("code") for coding in resource["code"].get("coding", [])}
        when = resource.get("effectiveDateTime", "")[:10]
        if codes & ALBUMIN:
            days["alb"].add(when)
        if codes & BILIRUBIN:
            days["bili"].add(when)
    return len(days["alb"] & days["bili"])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessService]:
    with run_in_process(tmp_path_factory.mktemp("pathway")) as running:
        yield running


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get(SHOTS_ENV)
    return (ROOT / chosen) if chosen else tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def browser(service: InProcessService) -> Iterator:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context(viewport={"width": 1400, "height": 900})
            context.set_default_timeout(20_000)
            yield context
        finally:
            chromium.close()


def open_patient(page, service: InProcessService) -> dict:
    """Open the demo page and the patient; returns the second-line card as the page received it."""
    page.goto(service.base + "/")
    with page.expect_response(lambda r: r.url.endswith("/cds-services/hcc-second-line-patient-view")) as answer:
        page.click(f"button.patient[data-patient='{PATIENT}']")
    cards = answer.value.json()["cards"]
    page.wait_for_selector("#cards article.card")
    second_line = next(c for c in cards if c["source"]["topic"]["code"] == "second-line-options")
    assert page.locator(f"#cards article.card[data-uuid='{second_line['uuid']}']").count() == 1
    return second_line


def app_frame(page):
    frame = page.frame_locator("#app-frame")
    frame.locator("#pathway").wait_for()
    return frame


def test_card_smart_link_launches_the_app(browser, service: InProcessService) -> None:
    page = browser.new_page()
    card = open_patient(page, service)
    smart = [link for link in card.get("links", []) if link.get("type") == "smart"]
    assert len(smart) == 1 and smart[0]["url"].endswith("/app/launch")
    assert json.loads(smart[0]["appContext"]) == {"cardUuid": card["uuid"]}
    page.locator(f"#cards article.card[data-uuid='{card['uuid']}'] button.smart-link").click()
    frame = app_frame(page)
    assert frame.locator("article.option").count() == len(card["extension"]["hcc-cds.recommendation"]["options"])


def test_demo_page_to_app_pathway_charts_options_and_feedback(browser, service: InProcessService, shots: Path) -> None:
    page = browser.new_page()
    card = open_patient(page, service)
    page.screenshot(path=str(shots / "demo-ehr.png"))
    ext = card["extension"]["hcc-cds.recommendation"]
    # What the card's SMART link button does: a launch id for patient + appContext, then {url}?iss&launch.
    page.evaluate("(link) => window.demoEhr.launchSmart(link)",
                  {"url": "/app/launch", "appContext": json.dumps({"cardUuid": card["uuid"]})})
    frame = app_frame(page)

    # The pathway: scope decided and on the path, every rule that fired is on the highlighted path.
    nodes = frame.locator("li.node")
    assert nodes.count() >= 8
    assert frame.locator("li.node[data-node='scope']").get_attribute("data-state") == "taken"
    if "R7" in ext["rulesFired"]:
        assert frame.locator("li.node[data-node='default']").get_attribute("data-state") == "taken"
    # the fitness node is undecided exactly when the tier is unknown (ECOG or ALBI not current)
    state = frame.locator("li.node[data-node='fitness']").get_attribute("data-state")
    assert (state == "undecided") == (ext["assessment"]["fitness"] == "unknown"), state
    history = frame.locator("li.node[data-node='history']").inner_text()
    assert all(drug in history for drug in ext["assessment"]["failedDrugs"])

    # Charts: one ALBI point per albumin + bilirubin pair in the record.
    expected_pairs = albi_pair_days(FIXTURE)
    assert expected_pairs >= 2
    frame.locator("#chart-albi[data-rendered]").wait_for()
    assert frame.locator("#chart-albi").get_attribute("data-rendered") == str(expected_pairs)
    rendered = frame.locator("#chart-albi").evaluate("(c) => Chart.getChart(c).data.datasets[0].data.length")
    assert rendered == expected_pairs

    # Options: every option of the card, each with its dose and the paper's sentences verbatim.
    options = frame.locator("article.option")
    assert options.count() == len(ext["options"])
    for index, option in enumerate(ext["options"]):
        article = options.nth(index)
        assert article.get_attribute("data-option") == option["code"]
        if option.get("dose"):
            assert option["dose"] in article.locator(".dose").inner_text()
    quotes = frame.locator("blockquote.quote")
    assert quotes.count() >= len(ext["options"])
    for i in range(quotes.count()):
        key = quotes.nth(i).get_attribute("data-quote")
        assert quotes.nth(i).inner_text() == f"“{QUOTES[key]}”"

    # Decline the first option with a reason: stored as feedback on the card that launched the app.
    first = options.nth(0)
    first.locator("select.reason").select_option("patient-preference")
    first.locator("button.decline").click()
    frame.locator("article.option .result[data-outcome='declined']").wait_for()
    page.set_viewport_size({"width": 1400, "height": 2400})
    frame.locator("#pathway").screenshot(path=str(shots / "app-pathway.png"))
    frame.locator("#charts").screenshot(path=str(shots / "app-charts.png"))
    with service.db() as session:
        rows = session.query(FeedbackRecord).filter_by(card_uuid=card["uuid"]).all()
    assert [(r.outcome, r.override_code, r.service_id) for r in rows] == [
        ("overridden", "patient-preference", "hcc-second-line-patient-view")]


def test_standalone_launch_picks_a_patient(browser, service: InProcessService) -> None:
    page = browser.new_page()
    page.goto(service.base + "/app/launch?iss=" + service.base + "/fhir")
    page.click(f"button[data-patient='{PATIENT}']")
    page.wait_for_selector("#pathway")
    assert page.url == service.base + "/app/"
    assert page.locator("li.node[data-node='scope']").get_attribute("data-state") == "taken"
    assert page.locator("article.option").count() > 0
    assert page.locator("article.option button.decline").first.is_disabled()  # no card: no feedback


def test_token_never_reaches_urls_pages_or_storage(browser, service: InProcessService) -> None:
    page = browser.new_page()
    urls: list[str] = []
    bodies: list[str] = []
    page.on("request", lambda request: urls.append(request.url))

    def keep(response) -> None:
        kind = response.headers.get("content-type", "")
        if any(t in kind for t in ("html", "json", "javascript", "text")):
            with contextlib.suppress(Exception):  # redirects have no body
                bodies.append(response.text())

    page.on("response", keep)
    card = open_patient(page, service)
    page.evaluate("(link) => window.demoEhr.launchSmart(link)",
                  {"url": "/app/launch", "appContext": json.dumps({"cardUuid": card["uuid"]})})
    frame = app_frame(page)
    frame.locator("article.option").first.wait_for()
    tokens = service.issued_tokens()
    assert tokens, "the demo authorization server issued no token"
    app = next(f for f in page.frames if "/app/" in f.url)
    html = [page.content(), app.content()]
    storage = [f.evaluate("() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage),"
                          " document.cookie])") for f in (page.main_frame, app)]
    cookies = json.dumps(browser.cookies())
    for token in tokens:
        assert not any(token in url for url in urls)
        assert not any(token in body for body in bodies)
        assert not any(token in text for text in html + storage)
        assert token not in cookies
        assert token not in service.log_text()


def test_app_works_in_a_cross_site_ehr_iframe(browser, service: InProcessService, tmp_path: Path) -> None:
    """The EHR page on http://localhost:P2 frames the app on http://127.0.0.1:P1 (another site): the session
    cookie must survive the authorization round trip inside the iframe."""
    launch = f"{service.base}/app/launch?iss={service.base}/fhir"
    (tmp_path / "ehr.html").write_text(f'<!doctype html><title>EHR</title><iframe id="app" src="{launch}" '
                                       'style="width:1200px;height:800px"></iframe>', encoding="utf-8")
    with static_server(tmp_path) as origin:
        page = browser.new_page()
        page.goto(origin.replace("127.0.0.1", "localhost") + "/ehr.html")
        frame = page.frame_locator("#app")
        frame.locator(f"button[data-patient='{PATIENT}']").click()
        frame.locator("#pathway").wait_for()
        assert frame.locator("li.node[data-node='scope']").get_attribute("data-state") == "taken"
