"""cards.render: CDS Hooks cards (service-contract.md §3; clinical-rules.md §3 R8; CDS Hooks 2.0 card rules).

- summary ≤ 139 characters, no null/empty members outside ``extension``, every card valid against the
  strict response schema (service.validation);
- record text is Markdown-escaped in ``detail``;
- data-quality suggestions create R4 ServiceRequests (LOINC 1751-7 / 1975-2 for missing ALBI inputs);
- the trials card lists the six NCT numbers of the paper's Table 1 and claims no results.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

from cards.patient_view import evaluate
from cards.render import DETAIL_MAX, md, summarise, trials_card
from service.validation import null_or_empty_paths, response_errors
from tests.cards import builders as b

FIXTURES = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "patients").glob("*.json"))
TABLE_1 = {"NCT04770896", "NCT05178043", "NCT05199285", "NCT03970616", "NCT05101629", "NCT04430452"}
INJECTION = "<script>alert(1)</script> **x**"
ICI_START, ICI_END = "2025-10-01", "2026-03-01"


def run_fixture(path: Path):
    bundle = json.loads(path.read_text())
    resources = [entry["resource"] for entry in bundle["entry"]]
    patient_id = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    now = datetime.fromisoformat(bundle["timestamp"].replace("Z", "+00:00"))
    return evaluate(resources, now, patient_id)


def by_topic(cards, topic):
    return next(c for c in cards if c["source"]["topic"]["code"] == topic)


def base_record(*extra, labs=True, meds=None):
    meds = meds if meds is not None else [
        b.med_statement("atezolizumab", ICI_START, ICI_END, status_reason="266721009", mid="ms-atezo"),
        b.med_statement("bevacizumab", ICI_START, ICI_END, status_reason="266721009", mid="ms-bev")]
    resources = [b.patient(), b.condition("C22.0", "2025-09-01"), *meds]
    if labs:
        resources += [b.bilirubin(1.2, "mg/dL", b.ago(5)), b.albumin(3.5, "g/dL", b.ago(5)), b.ecog(1, b.ago(5)),
                      b.afp(120, "ng/mL", b.ago(5)), b.weight(72, "kg", b.ago(5)), b.inr(1.0, b.ago(5))]
    return [*resources, *extra]


def run(resources):
    return evaluate(resources, b.NOW, b.PATIENT_ID)


# -- helpers ---------------------------------------------------------------------------------------------
def test_summarise_keeps_short_text():
    assert summarise("Lenvatinib preferred") == "Lenvatinib preferred"


def test_summarise_cuts_long_text_to_139_characters():
    text = "word " * 60  # 300 characters
    result = summarise(text)
    assert len(result) <= 139
    assert result.endswith("…")


def test_md_escapes_html_and_markdown():
    escaped = md(INJECTION)
    assert "<script>" not in escaped
    assert "**x**" not in escaped
    assert escaped == r"\<script\>alert(1)\</script\> \*\*x\*\*"


def test_md_collapses_newlines_so_record_text_cannot_open_a_block():
    assert md("colitis\n\n# heading\n| a | b |") == r"colitis # heading \| a \| b \|"


# -- every fixture -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_fixture_cards_summary_at_most_139_characters(path):
    for card in run_fixture(path).cards:
        assert 0 < len(card["summary"]) <= 139, card["summary"]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_fixture_cards_have_no_null_or_empty_members(path):
    cards = run_fixture(path).cards
    assert null_or_empty_paths({"cards": cards}) == []


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_fixture_cards_pass_the_response_schema(path):
    cards = run_fixture(path).cards
    assert response_errors({"cards": cards}) == []


def test_there_are_fixtures():
    assert len(FIXTURES) >= 10


# -- second-line card ---------------------------------------------------------------------------------
def test_second_line_card_shape():
    result = run(base_record(b.condition("C78.01", "2026-02-01"), b.condition("C79.51", "2026-02-01")))
    card = by_topic(result.cards, "second-line-options")
    ext = card["extension"]["hcc-cds.recommendation"]
    assert ext["contractVersion"] == "2"
    assert ext["applicability"] == "progression"
    assert ext["rulesFired"] == result.decision.rules_fired
    assert ext["policy"]["name"] == "default" and len(ext["policy"]["sha256"]) == 64
    assert ext["options"][0]["code"] == "tki-lenvatinib"
    assert ext["assessment"]["albi"]["grade"] == 2
    assert ext["assessment"]["albi"]["mAlbiGrade"] == "2b"
    assert ext["assessment"]["albi"]["score"] == -2.11  # −2.1090 shown to two decimals
    assert ext["assessment"]["progression"]["pattern"] == "systemic"
    assert card["summary"].startswith("Lenvatinib")
    assert "-2.11" in card["detail"]  # the score to two decimals in the assessment line
    assert len(card["detail"]) <= DETAIL_MAX
    assert "links" not in card  # no launch URL given: no SMART link (the service always gives one)
    assert response_errors({"cards": result.cards}) == []


def test_second_line_card_links_to_the_pathway_app_with_the_card_uuid_and_no_patient_data():
    resources = base_record(b.condition("C78.01", "2026-02-01"))
    result = evaluate(resources, b.NOW, b.PATIENT_ID, app_launch_url="https://cds.example.org/app/launch")
    card = by_topic(result.cards, "second-line-options")
    [link] = card["links"]
    assert link["type"] == "smart" and link["url"] == "https://cds.example.org/app/launch"
    assert json.loads(link["appContext"]) == {"cardUuid": card["uuid"]}
    assert b.PATIENT_ID not in link["appContext"]


def test_synthetic_long_case_summary_and_validity():
    long_label = "immune-mediated " + "very " * 40 + "long adrenalitis"  # text only: becomes the label
    resources = base_record(
        b.adverse_event(None, "2025-12-01", suspect="MedicationStatement/ms-atezo", text=long_label),
        b.body_structure("l1", "10200004", description="segment " * 30),
        b.tumor_size("l1", 20, "2025-09-25"), b.tumor_size("l1", 40, "2025-11-10"),
        b.condition("I81", "2025-11-10"), b.condition("C78.01", "2025-11-10"), b.condition("C79.51", "2025-11-10"),
        labs=False)
    resources[1] = b.condition("C22.9", "2025-09-01")  # possible HCC
    resources += [b.bilirubin(3.0, "mg/dL", b.ago(5)), b.albumin(2.8, "g/dL", b.ago(5)), b.ecog(3, b.ago(5)),
                  b.afp(120, "[IU]/mL", b.ago(5), code="19176-7"), b.weight(500, "kg", b.ago(5))]
    result = run(resources)
    fired = set(result.decision.rules_fired)
    assert {"R0", "R1", "R2", "R2b", "R3", "R6", "R8"} <= fired
    assert result.cards
    for card in result.cards:
        assert 0 < len(card["summary"]) <= 139, card["summary"]
    assert null_or_empty_paths({"cards": result.cards}) == []
    assert response_errors({"cards": result.cards}) == []


# -- Markdown injection from record text ------------------------------------------------------------
def _adverse_event_injection():
    # text only (no code): the record's own words are the only label of this irAE
    event = b.adverse_event(None, "2025-12-01", suspect="MedicationStatement/ms-atezo", text=INJECTION)
    return run(base_record(event, b.condition("C78.01", "2026-02-01")))


def _body_structure_injection():
    return run(base_record(b.body_structure("l1", "10200004", description=INJECTION),
                           b.tumor_size("l1", 20, "2025-09-25"), b.tumor_size("l1", 30, "2026-02-01")))


def test_injected_adverse_event_text_is_escaped_in_detail():
    result = _adverse_event_injection()
    assert "R3" in result.decision.rules_fired  # the AdverseEvent was read as an irAE
    detail = by_topic(result.cards, "second-line-options")["detail"]
    assert r"\<script\>" in detail  # shown, escaped
    assert "<script>" not in detail
    assert "**x**" not in detail


def test_injected_adverse_event_text_never_raw_in_any_card_detail():
    for card in _adverse_event_injection().cards:
        assert "<script>" not in card.get("detail", ""), card["source"]["topic"]["code"]


def test_injected_body_structure_description_is_escaped_in_detail():
    result = _body_structure_injection()
    assert result.decision.applicable
    for card in result.cards:  # the card does not show lesion descriptions (the app does), never raw
        detail = card.get("detail", "")
        assert "<script>" not in detail
        assert "**x**" not in detail


# -- data-quality card --------------------------------------------------------------------------------
def test_data_quality_card_orders_albumin_and_bilirubin_when_albi_inputs_missing():
    result = run(base_record(b.ecog(1, b.ago(5)), b.afp(120, "ng/mL", b.ago(5)), b.weight(72, "kg", b.ago(5)),
                             labs=False))
    card = by_topic(result.cards, "data-quality")
    resources = [action["resource"] for s in card["suggestions"] for action in s["actions"]]
    assert all(action["type"] == "create" for s in card["suggestions"] for action in s["actions"])
    codes = set()
    for resource in resources:
        assert resource["resourceType"] == "ServiceRequest"
        ServiceRequest.model_validate(resource)
        assert resource["subject"]["reference"] == f"Patient/{b.PATIENT_ID}"
        codes |= {c["code"] for c in resource["code"]["coding"] if c["system"] == b.LOINC}
    assert {"1751-7", "1975-2"} <= codes
    assert card["indicator"] == "warning"
    assert response_errors({"cards": result.cards}) == []
    assert null_or_empty_paths({"cards": result.cards}) == []
    # the second-line card still appears beside it (service-contract.md §3)
    assert by_topic(result.cards, "second-line-options")


def test_data_quality_card_orders_ecog_when_missing():
    result = run(base_record(b.bilirubin(1.2, "mg/dL", b.ago(5)), b.albumin(3.5, "g/dL", b.ago(5)),
                             b.afp(120, "ng/mL", b.ago(5)), b.weight(72, "kg", b.ago(5)), labs=False))
    card = by_topic(result.cards, "data-quality")
    codes = {c["code"] for s in card["suggestions"] for a in s["actions"] for c in a["resource"]["code"]["coding"]}
    assert "89247-1" in codes
    assert "1751-7" not in codes and "1975-2" not in codes
    for s in card["suggestions"]:
        for action in s["actions"]:
            ServiceRequest.model_validate(action["resource"])


def test_no_data_quality_card_when_all_inputs_current():
    result = run(base_record(b.condition("C78.01", "2026-02-01")))
    topics = [c["source"]["topic"]["code"] for c in result.cards]
    assert "data-quality" not in topics
    assert topics == ["second-line-options", "clinical-trials"]


def test_data_quality_card_names_implausible_value():
    resources = base_record(b.albumin(45, "g/dL", b.ago(1)), b.condition("C78.01", "2026-02-01"))
    card = by_topic(run(resources).cards, "data-quality")
    # in a clinician's words: which value, when, and why it was not used
    assert "Albumin on" in card["detail"] and "450 g/L, outside the plausible 5–70 g/L: not used" in card["detail"]


# -- trials card ------------------------------------------------------------------------------------------
def _trials_text(card):
    return " ".join([card["summary"], card["detail"], *(link["label"] for link in card.get("links", ()))])


def _atezo_bev_trials():
    return trials_card(run(base_record(b.condition("C78.01", "2026-02-01"))).assessment)


def _stride_trials():
    meds = [b.med_statement("durvalumab", ICI_START, ICI_END, status_reason="266721009"),
            b.med_statement("tremelimumab", ICI_START, ICI_START, status="completed")]
    return trials_card(run(base_record(b.condition("C78.01", "2026-02-01"), meds=meds)).assessment)


def test_trials_card_lists_the_six_table_1_trials_after_atezolizumab_bevacizumab():
    card = _atezo_bev_trials()
    found = set(re.findall(r"NCT\d{8}", card["detail"]))
    assert found == TABLE_1
    assert {link["url"].rsplit("/", 1)[-1] for link in card["links"]} == TABLE_1
    assert "IMbrave251" in card["detail"]


def test_trials_card_after_stride_lists_only_trials_open_to_any_prior_ici_except_durvalumab():
    # clinical-rules.md §3 R8: NCT04430452 excludes prior durvalumab; three trials enrol after atezo-bev only
    card = _stride_trials()
    assert set(re.findall(r"NCT\d{8}", card["detail"])) == {"NCT05178043", "NCT05101629"}


def test_trials_card_gives_the_papers_completion_dates_and_says_when_they_passed():
    detail = _atezo_bev_trials()["detail"]
    rows = {line.split("|")[1].strip(): line for line in detail.splitlines() if line.startswith("| NCT")}
    # b.NOW is in 2026: Feb 2025, Dec 2024 and Mar 2023 (= 31 Mar) have passed; Jan and Feb 2027 have not
    assert "5 Feb 2025 — passed: check current status" in rows["NCT04770896"]
    assert "31 Mar 2023 — passed" in rows["NCT03970616"]
    assert "31 Dec 2024 — passed" in rows["NCT05101629"]
    assert "31 Jan 2027" in rows["NCT05199285"] and "passed" not in rows["NCT05199285"]
    assert "28 Feb 2027" in rows["NCT04430452"] and "passed" not in rows["NCT04430452"]


def test_trials_card_claims_no_results():
    text = _trials_text(_atezo_bev_trials())
    for word in ("met", "positive", "negative", "failed", "succeeded"):
        assert not re.search(rf"\b{word}\b", text, re.IGNORECASE), word
    assert "listed as ongoing in the paper's Table 1, 2023" in text  # never "ongoing" in our own voice


def test_trials_card_has_an_as_of_date():
    heading = _atezo_bev_trials()["detail"].split("\n")[0]
    assert re.search(r"\b20\d\d\b", heading), heading  # the date the list stands for


def test_second_line_card_quotes_the_paper_for_r1():
    result = run(base_record(b.ecog(2, b.ago(1)), b.condition("C78.01", "2026-02-01")))
    assert "R1" in result.decision.rules_fired
    card = by_topic(result.cards, "second-line-options")
    assert card["indicator"] == "warning"
    assert "HR 2.04" in card["detail"]
    assert "the risk-benefit balance needs to be carefully weighed" in card["detail"]
    assert card["summary"].startswith("Weigh best supportive care (ECOG 2): if treated, ")


def test_second_line_card_warns_about_new_vascular_invasion():
    result = run(base_record(b.condition("I81", "2026-02-01")))
    card = by_topic(result.cards, "second-line-options")
    assert "R6" in result.decision.rules_fired
    assert "HR 2.15" in card["detail"]
    assert "confirm tumour thrombus on" in card["detail"]


def test_trials_card_is_valid():
    cards = [_atezo_bev_trials()]
    assert response_errors({"cards": cards}) == []
    assert null_or_empty_paths({"cards": cards}) == []


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_second_line_detail_is_short_and_free_of_internal_codes(path):
    """clinical-rules.md §5: ≤ 1,500 characters; no rule ids, option codes, FHIR ids or document names."""
    result = run_fixture(path)
    for card in result.cards:
        words = " ".join([card["summary"], card["detail"], *(s["label"] for s in card.get("suggestions", ())),
                          *(link["label"] for link in card.get("links", ()))])
        assert not re.search(r"\bR[0-9]b?\b", words), card["summary"]
        assert not re.search(r"\b(tki|ici|other-ici|bev-event)-[a-z-]+", words), card["summary"]
        assert not re.search(r"clinical-rules\.md|service-contract\.md|§", words)
        assert not re.search(r"\w\(s\)", words)
        assert not re.search(r"\b(Observation|Condition|Medication\w*|Patient|BodyStructure)/", words)
        if card["source"]["topic"]["code"] == "second-line-options":
            assert len(card["detail"]) <= DETAIL_MAX
