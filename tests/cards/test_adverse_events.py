"""cards.adverse_events: prior irAE (R3) and bevacizumab-type events (R4)
(clinical-rules.md §2 "irAE", §3 R3/R4; clinical-codes.md §3.3–3.4).

First line in these tests: atezolizumab + bevacizumab 2025-10-01 → 2026-01-15, so the ICI window ends
2026-01-15 + 90 days = 2026-04-15 (inclusive); "now" is 2026-06-01.
"""

from __future__ import annotations

from datetime import date

import pytest

from cards.adverse_events import assess_adverse_events
from cards.medications import first_line, medication_uses
from tests.cards import builders as b

START, END = "2025-10-01", "2026-01-15"
WINDOW_LAST_DAY = "2026-04-15"  # END + 90 days
WINDOW_FIRST_DAY_OUT = "2026-04-16"  # END + 91 days
PROGRESSION, TOXICITY = "266721009", "407563006"


def atezo_bev(reason=PROGRESSION):
    atezo = b.med_statement("atezolizumab", START, END, status_reason=reason, mid="ms-atezo")
    bev = b.med_statement("bevacizumab", START, END, status_reason=reason, mid="ms-bev")
    return [atezo, bev]


def events(*resources, meds=None):
    rec = b.record(*(atezo_bev() if meds is None else meds), *resources)
    line = first_line(medication_uses(rec, b.TODAY))
    assert line is not None
    return assess_adverse_events(rec, line, b.TODAY)


def irae_codes(result):
    return [f.code for f in result.immune_related]


def bev_codes(result):
    return [f.code for f in result.bevacizumab_related]


def test_window_dates_by_hand():
    assert (date(2026, 4, 15) - date(2026, 1, 15)).days == 90
    assert (date(2026, 4, 16) - date(2026, 1, 15)).days == 91


# -- irAE -----------------------------------------------------------------------------------------------
def test_irae_hepatitis_during_ici_found():
    result = events(b.condition("K75.4", "2025-12-01"))
    assert irae_codes(result) == ["K75.4"]
    finding = result.immune_related[0]
    assert finding.label == "hepatitis"
    assert finding.date == date(2025, 12, 1)
    assert not finding.severe


def test_irae_on_last_day_of_ici_window_found():
    assert irae_codes(events(b.condition("K75.4", WINDOW_LAST_DAY))) == ["K75.4"]


def test_irae_one_day_after_ici_window_not_found():
    assert irae_codes(events(b.condition("K75.4", WINDOW_FIRST_DAY_OUT))) == []


def test_irae_before_ici_start_not_found():
    assert irae_codes(events(b.condition("K75.4", "2025-09-01"))) == []


def test_irae_icd10_without_dot_is_normalised():
    assert irae_codes(events(b.condition("K754", "2025-12-01"))) == ["K75.4"]


@pytest.mark.parametrize("code", ["J70.2", "J70.4", "K71.2", "K71.6", "E06.4", "E03.2", "E06.3", "E05.90",
                                  "E27.3", "E27.40", "E27.49", "K52.1", "E23.1", "I40.8", "I40.9", "I51.4",
                                  "N14.19", "N10", "N12", "L27.0", "L27.1"])
def test_every_irae_manifestation_code_of_r3(code):
    assert irae_codes(events(b.condition(code, "2025-12-01"))) == [code]


def test_non_irae_code_during_ici_not_found():
    assert irae_codes(events(b.condition("J18.9", "2025-12-01"))) == []  # pneumonia, unspecified


def test_irae_outside_window_with_t45_1x5a_found():
    result = events(b.condition("K75.4", "2026-05-10"), b.condition("T45.1X5A", "2026-05-10"))
    assert irae_codes(result) == ["K75.4"]


def test_irae_severity_24484000_is_severe():
    result = events(b.condition("J70.2", "2025-12-01", severity="24484000"))
    assert result.immune_related[0].severe


def test_irae_moderate_severity_is_not_severe():
    result = events(b.condition("J70.2", "2025-12-01", severity="6736007"))  # moderate
    assert not result.immune_related[0].severe


def test_irae_severe_when_ici_stopped_as_not_tolerated():
    result = events(b.condition("K52.1", "2025-12-01"), meds=atezo_bev(reason=TOXICITY))
    assert result.immune_related[0].severe


def test_adverse_event_with_ici_suspect_is_irae_even_outside_window():
    event = b.adverse_event("K52.1", "2026-05-20", suspect="MedicationStatement/ms-atezo", severity="severe")
    result = events(event)
    assert irae_codes(result) == ["K52.1"]
    assert result.immune_related[0].severe


def test_adverse_event_with_ici_suspect_and_text_only_is_irae():
    event = b.adverse_event(None, "2025-12-20", suspect="MedicationStatement/ms-atezo", text="immune colitis")
    result = events(event)
    assert len(result.immune_related) == 1
    assert result.immune_related[0].label == "immune colitis"


def test_adverse_event_with_non_ici_suspect_outside_the_ici_window_is_not_irae():
    # line 1 atezolizumab ended 2023-06-01; a rash on later sorafenib (suspect) is not immune-related
    atezo = b.med_statement("atezolizumab", "2023-01-01", "2023-06-01", status_reason="266721009")
    sora = b.med_statement("sorafenib", "2024-01-01", "2024-06-01", mid="ms-sora")
    event = b.adverse_event("L27.1", "2024-03-01", suspect="MedicationStatement/ms-sora")
    assert irae_codes(events(event, meds=[atezo, sora])) == []


def test_refuted_irae_condition_ignored():
    assert irae_codes(events(b.condition("K75.4", "2025-12-01", verification="refuted"))) == []


def test_resolved_irae_still_counts():
    assert irae_codes(events(b.condition("K75.4", "2025-12-01", clinical="resolved"))) == ["K75.4"]


def test_irae_while_ici_still_active():
    meds = [b.med_statement("atezolizumab", "2026-01-10", status="active")]
    assert irae_codes(events(b.condition("E06.4", "2026-05-25"), meds=meds)) == ["E06.4"]


# -- bevacizumab-type events ----------------------------------------------------------------------
def test_bevacizumab_bleed_during_bevacizumab_found():
    result = events(b.condition("K92.2", "2025-12-15"))
    assert bev_codes(result) == ["K92.2"]
    assert irae_codes(result) == []


def test_bevacizumab_bleed_on_last_day_of_window_found_and_day_after_not():
    assert bev_codes(events(b.condition("K92.2", WINDOW_LAST_DAY))) == ["K92.2"]
    assert bev_codes(events(b.condition("K92.2", WINDOW_FIRST_DAY_OUT))) == []


@pytest.mark.parametrize("code", ["K92.0", "K92.1", "K92.2", "I85.01", "I85.11", "I74.3", "I63.9", "I21.4",
                                  "K63.1", "K22.3", "K25.5"])
def test_every_bevacizumab_event_code_of_r4(code):
    assert bev_codes(events(b.condition(code, "2025-12-15"))) == [code]


def test_varices_without_bleeding_are_not_an_event():
    assert bev_codes(events(b.condition("I85.00", "2025-12-15"))) == []


def test_bleed_when_first_line_had_no_bevacizumab_not_found():
    meds = [b.med_statement("durvalumab", START, END, status_reason=PROGRESSION),
            b.med_statement(b.text_concept("tremelimumab"), START, END, status_reason=PROGRESSION)]
    result = events(b.condition("K92.2", "2025-12-15"), meds=meds)
    assert bev_codes(result) == []


def test_refuted_bleed_ignored():
    assert bev_codes(events(b.condition("K92.2", "2025-12-15", verification="refuted"))) == []


def test_adverse_event_with_bevacizumab_suspect_is_bevacizumab_event():
    event = b.adverse_event("K92.2", "2025-12-15", suspect="MedicationStatement/ms-bev")
    result = events(event)
    assert bev_codes(result) == ["K92.2"]
    assert irae_codes(result) == []


def test_adverse_event_with_irae_code_in_window_without_suspect_is_irae():
    assert irae_codes(events(b.adverse_event("J70.2", "2025-12-01"))) == ["J70.2"]


def test_adverse_event_with_irae_code_outside_window_without_suspect_is_not_irae():
    assert irae_codes(events(b.adverse_event("J70.2", WINDOW_FIRST_DAY_OUT))) == []


# -- review regressions (combination suspects, exposure windows, T45 linkage) ----------------------------


def test_bleed_adverse_event_with_both_drugs_suspected_is_a_bevacizumab_event_not_an_irae():
    # Combination regimens list both drugs as suspects; GI bleeding (K92.2) is the R4 event, not an irAE (R3).
    bleed = b.adverse_event("K92.2", "2025-12-01", suspect="MedicationStatement/ms-atezo")
    bleed["suspectEntity"].append({"instance": {"reference": "MedicationStatement/ms-bev"}})
    result = events(bleed)
    assert bev_codes(result) == ["K92.2"]
    assert irae_codes(result) == []


def test_completed_bevacizumab_without_end_date_keeps_the_window_open():
    # Completed, no end recorded: exposure is not known to have ended, so a bleed 150 days after start counts.
    meds = [b.med_statement("atezolizumab", START, END, mid="ms-atezo"),
            b.med_statement("bevacizumab", START, status="completed", mid="ms-bev")]
    result = events(b.condition("K92.2", "2026-02-28"), meds=meds)
    assert bev_codes(result) == ["K92.2"]


def test_bevacizumab_started_six_weeks_into_the_ici_course_belongs_to_the_regimen():
    # 2025-10-01 + 42 days = 2025-11-12 (e.g. delayed for variceal banding): still atezolizumab-bevacizumab.
    meds = [b.med_statement("atezolizumab", START, END, mid="ms-atezo"),
            b.med_statement("bevacizumab", "2025-11-12", END, mid="ms-bev")]
    rec = b.record(*meds)
    line = first_line(medication_uses(rec, b.TODAY))
    assert line is not None and line.regimen == "atezolizumab-bevacizumab"


def test_irae_during_an_active_course_counts_even_after_old_administrations():
    meds = [b.med_statement("atezolizumab", START, mid="ms-atezo")]  # active, open-ended
    result = events(b.condition("K52.1", b.ago(30)), meds=meds)
    assert irae_codes(result) == ["K52.1"]


def test_undated_manifestation_is_not_made_an_irae_by_an_unrelated_t45_code():
    result = events(b.condition("E06.3", None), b.condition("T45.1X5A", "2026-05-10"))
    assert irae_codes(result) == []


def test_t45_code_far_from_the_manifestation_does_not_link_it():
    # 2026-05-10 vs 2026-07-01: 52 days apart, beyond the 30-day link [derived].
    result = events(b.condition("K75.4", "2026-07-01"), b.condition("T45.1X5A", "2026-05-10"))
    assert irae_codes(result) == []
