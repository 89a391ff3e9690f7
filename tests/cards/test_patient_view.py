"""The patient-view pipeline: which cards appear for which record (clinical-rules.md §3 R0)."""

from __future__ import annotations

from cards.patient_view import evaluate
from tests.cards import builders as b


def topics(cards: list[dict]) -> list[str]:
    return [card["source"]["topic"]["code"] for card in cards]


def base_record() -> list[dict]:
    return [
        b.patient(),
        b.condition("C22.0", b.ago(400)),
        b.med_statement("atezolizumab", b.ago(200)),
        b.med_statement("bevacizumab", b.ago(200)),
        b.albumin(3.5, "g/dL", b.ago(5)), b.bilirubin(1.2, "mg/dL", b.ago(5)), b.ecog(1, b.ago(5)),
        b.afp(50, "ng/mL", b.ago(5)), b.weight(70, "kg", b.ago(5)), b.inr(1.1, b.ago(5)),
    ]


def test_progression_gives_second_line_and_trials_cards_only_when_data_complete() -> None:
    result = evaluate([*base_record(), b.disease_status("271299001", b.ago(10))], b.NOW, b.PATIENT_ID)
    assert topics(result.cards) == ["second-line-options", "clinical-trials"]


def test_no_progression_and_no_toxicity_stop_gives_no_cards() -> None:
    result = evaluate([*base_record(), b.disease_status("359746009", b.ago(10))], b.NOW, b.PATIENT_ID)
    assert result.cards == []


def test_unusable_progression_data_gives_data_quality_card_alone() -> None:
    # HCC and ICI are recorded; the only disease-status Observation is malformed (R4-invalid value type),
    # so applicability cannot be decided: data-quality card only, naming the skipped resource.
    broken = b.disease_status("271299001", b.ago(10))
    broken["valueCodeableConcept"] = "worsened"
    result = evaluate([*base_record(), broken], b.NOW, b.PATIENT_ID)
    assert topics(result.cards) == ["data-quality"]
    detail = result.cards[0]["detail"]
    assert "A result could not be read (its value is malformed): not used" in detail  # named in words, no FHIR id
    assert broken["id"] not in detail
    assert "Applicability could not be decided" in detail


def test_missing_ecog_is_never_assumed_zero() -> None:
    record = [r for r in base_record() if r.get("code", {}).get("coding", [{}])[0].get("code") != "89247-1"]
    result = evaluate([*record, b.disease_status("271299001", b.ago(10))], b.NOW, b.PATIENT_ID)
    extension = result.cards[0]["extension"]["hcc-cds.recommendation"]
    assert extension["assessment"]["ecog"] == {"status": "missing", "value": None, "from": None, "date": None}
    # v2: ECOG unknown → fitness "unknown" (never assumed fit), R1 fires and no option is preferred
    assert extension["assessment"]["fitness"] == "unknown"
    assert "R1" in extension["rulesFired"]
    assert all(o["strength"] != "preferred" for o in extension["options"])
    assert result.cards[0]["summary"].startswith("Measure ECOG: no option preferred until then")
    assert topics(result.cards) == ["second-line-options", "data-quality", "clinical-trials"]
    labels = [s["label"] for s in result.cards[1]["suggestions"]]
    assert any("ECOG" in label for label in labels)


def test_resources_of_another_patient_are_ignored_and_named() -> None:
    # A FHIR server that ignores an unsupported search parameter returns everyone's data: another patient's
    # severe hepatitis must not turn this patient's card into R3.
    stranger = b.condition("K75.4", b.ago(100))
    stranger["subject"] = {"reference": "Patient/someone-else"}
    result = evaluate([*base_record(), b.disease_status("271299001", b.ago(10)), stranger], b.NOW, b.PATIENT_ID)
    extension = result.cards[0]["extension"]["hcc-cds.recommendation"]
    assert "R3" not in extension["rulesFired"]
    assert extension["assessment"]["adverseEvents"]["immuneRelated"] == []
    quality = [c for c in result.cards if c["source"]["topic"]["code"] == "data-quality"]
    assert quality and "of another patient ignored" in quality[0]["detail"]


def test_a_record_of_someone_else_entirely_gives_no_cards() -> None:
    result = evaluate([*base_record(), b.disease_status("271299001", b.ago(10))], b.NOW, "someone-else")
    assert result.cards == []
