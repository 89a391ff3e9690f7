"""cards.policy: the site policy (service-contract.md §9; every [derived] value of clinical-rules.md v2).

- the bundled default validates and holds exactly the values of the rules text;
- an unknown key, a wrong type or an impossible value raises PolicyError with one line naming the key;
- changing a [derived] value in a policy file changes both the decision and the sentence that states it.
Modified policies are copies of cards/data/policy-default.toml edited in tmp_path and loaded with load_policy.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from cards.assessment import assess
from cards.context import EvaluationContext
from cards.patient_view import evaluate
from cards.policy import DEFAULT_POLICY_PATH, PolicyError, default_policy, load_policy
from cards.record import PatientRecord
from cards.rules import decide
from tests.cards import builders as b

DEFAULT_TEXT = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
CURRENT = "[current]\ndays = 30"  # "days = 30" alone also matches drug_effect_link_days
LUNG, LIVER = "39607008", "10200004"
START = "2025-10-01"
PRE = "2025-09-20"


def edited(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the default policy with ``old`` replaced by ``new`` (exactly once)."""
    assert DEFAULT_TEXT.count(old) == 1, old
    path = tmp_path / "site-policy.toml"
    path.write_text(DEFAULT_TEXT.replace(old, new), encoding="utf-8")
    return path


def policy_error(tmp_path: Path, old: str, new: str) -> str:
    with pytest.raises(PolicyError) as caught:
        load_policy(edited(tmp_path, old, new))
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# -- the bundled default holds exactly the rules' values ---------------------------------------------
def test_default_policy_validates_and_holds_the_rules_values():
    p = load_policy(None)
    assert p == default_policy()
    assert p.current_days == 30  # "Current" = within 30 days
    assert (p.frail_ecog_at_least, p.frail_child_pugh) == (3, ("C",))  # ECOG ≥ 3 or Child-Pugh C
    assert (p.weigh_ecog_at_least, p.weigh_albi_grade_at_least, p.weigh_child_pugh) == (2, 3, ("B",))
    assert p.course_join_days == 28 and p.ici_resume_days == 28
    assert (p.oligo_max_lesions, p.oligo_max_organs, p.oligo_min_days) == (5, 3, 90)
    assert (p.hyper_max_days, p.hyper_min_growth_percent) == (60, 50)
    assert (p.irae_days_after_ici_end, p.bevacizumab_days_after_end, p.drug_effect_link_days) == (90, 90, 30)
    assert (p.retrial_max_albi_grade, p.retrial_max_ecog) == (1, 1)  # ALBI grade 1, ECOG 0–1
    assert (p.lenvatinib_weight_kg, p.lenvatinib_low_mg, p.lenvatinib_high_mg) == (60.0, 8, 12)
    assert p.lenvatinib_child_pugh_c_mg == 8
    assert p.vascular_invasion_snomed == frozenset()  # none verified with a source yet


def test_default_policy_fixed_doses_match_clinical_codes():
    p = default_policy()
    assert "400 mg" in p.dose("sorafenib") and "twice daily" in p.dose("sorafenib")
    assert "60 mg" in p.dose("cabozantinib") and "once daily" in p.dose("cabozantinib")
    assert "160 mg" in p.dose("regorafenib") and "21" in p.dose("regorafenib") and "28" in p.dose("regorafenib")
    assert "8 mg/kg" in p.dose("ramucirumab") and "2 weeks" in p.dose("ramucirumab")
    combo = p.dose("nivolumab_ipilimumab")
    assert "1 mg/kg" in combo and "3 mg/kg" in combo and "240 mg" in combo


def test_default_policy_trials_have_the_papers_completion_dates():
    # a completion date given as a month counts as the last day of that month (clinical-rules.md §5)
    completion = {t.id: t.completion for t in default_policy().trials}
    assert completion == {"NCT04770896": date(2025, 2, 5), "NCT05178043": date(2024, 12, 31),
                          "NCT05199285": date(2027, 1, 31), "NCT03970616": date(2023, 3, 31),
                          "NCT05101629": date(2024, 12, 31), "NCT04430452": date(2027, 2, 28)}


@pytest.mark.parametrize(("regimen", "drugs", "eligible"), [
    ("atezolizumab-bevacizumab", ("atezolizumab", "bevacizumab"),
     {"NCT04770896", "NCT05199285", "NCT03970616", "NCT04430452", "NCT05178043", "NCT05101629"}),
    ("durvalumab-tremelimumab", ("durvalumab", "tremelimumab"), {"NCT05178043", "NCT05101629"}),
    ("durvalumab", ("durvalumab",), {"NCT05178043", "NCT05101629"}),
    ("nivolumab-ipilimumab", ("ipilimumab", "nivolumab"), {"NCT04430452", "NCT05178043", "NCT05101629"}),
    ("lenvatinib-pembrolizumab", ("lenvatinib", "pembrolizumab"), {"NCT04430452", "NCT05178043", "NCT05101629"}),
])
def test_default_policy_trial_eligibility_matches_r8(regimen, drugs, eligible):
    assert {t.id for t in default_policy().trials if t.eligible(regimen, drugs)} == eligible


def test_policy_names_its_file_version_and_sha256(tmp_path):
    path = edited(tmp_path, 'name = "default"', 'name = "site-a"')
    p = load_policy(path)
    assert p.extension() == {"name": "site-a", "version": "2",
                             "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert default_policy().extension()["sha256"] == hashlib.sha256(DEFAULT_POLICY_PATH.read_bytes()).hexdigest()


# -- validation: one line naming the key -----------------------------------------------------------
def test_unknown_key_is_named(tmp_path):
    message = policy_error(tmp_path, CURRENT, CURRENT + "\nweeks = 4")
    assert "current.weeks" in message and "unknown" in message


def test_unknown_section_is_named(tmp_path):
    message = policy_error(tmp_path, "[current]", "[surprise]\nx = 1\n\n[current]")
    assert "surprise" in message and "unknown" in message


@pytest.mark.parametrize(("old", "new", "key"), [
    (CURRENT, '[current]\ndays = "30"', "current.days"),
    ('frail_child_pugh = ["C"]', 'frail_child_pugh = "C"', "fitness.frail_child_pugh"),
    ("max_lesions = 5", "max_lesions = 5.5", "oligoprogression.max_lesions"),
    ('sorafenib = "400 mg twice daily"', "sorafenib = 400", "doses.sorafenib"),
], ids=["string-for-integer", "string-for-list", "float-for-integer", "number-for-text"])
def test_wrong_type_is_named(tmp_path, old, new, key):
    assert key in policy_error(tmp_path, old, new)


@pytest.mark.parametrize(("old", "new", "key"), [
    (CURRENT, "[current]\ndays = 0", "current.days"),
    ("max_lesions = 5", "max_lesions = 0", "oligoprogression.max_lesions"),
    ('frail_child_pugh = ["C"]', 'frail_child_pugh = ["D"]', "fitness.frail_child_pugh"),
    ("lenvatinib_low_mg = 8", "lenvatinib_low_mg = 16", "doses.lenvatinib_low_mg"),
    ("weigh_ecog_at_least = 2", "weigh_ecog_at_least = 4", "fitness.weigh_ecog_at_least"),
    ('completion = "2025-02-05"', 'completion = "2025-02-30"', "trials.0.completion"),
    ('id = "NCT05178043"', 'id = "NCT04770896"', "trials.1.id"),
], ids=["zero-days", "zero-lesions", "child-pugh-d", "low-dose-above-high", "weigh-above-frail",
        "no-such-day", "duplicate-trial"])
def test_impossible_value_is_named(tmp_path, old, new, key):
    assert key in policy_error(tmp_path, old, new)


def test_missing_key_is_named(tmp_path):
    message = policy_error(tmp_path, "max_organs = 3\n", "")
    assert "oligoprogression.max_organs" in message


def test_not_toml_is_one_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[current\ndays = 30\n", encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_unreadable_file_is_one_line(tmp_path):
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path / "absent.toml")
    assert "\n" not in str(caught.value) and "absent.toml" in str(caught.value)


# -- a changed [derived] value changes the decision and the sentence that states it -------------------
def day(n: int) -> str:
    return (date.fromisoformat(START) + timedelta(days=n)).isoformat()


def lesion(lesion_id: str, organ: str, before: float, after: float) -> list[dict]:
    return [b.body_structure(lesion_id, organ), b.tumor_size(lesion_id, before, PRE),
            b.tumor_size(lesion_id, after, day(120))]


def patient_resources(*extra: dict, meds: list[dict] | None = None, ecog_days_ago: int = 5) -> list[dict]:
    """HCC; atezolizumab + bevacizumab since 2025-10-01, still given (or ``meds``); ALBI grade 2 labs 5 days old."""
    meds = meds if meds is not None else [b.med_statement(drug, START, status="active")
                                          for drug in ("atezolizumab", "bevacizumab")]
    return [b.patient(), b.condition("C22.0", "2025-09-01"), *meds,
            b.bilirubin(1.2, "mg/dL", b.ago(5)), b.albumin(3.5, "g/dL", b.ago(5)),
            b.ecog(1, b.ago(ecog_days_ago)), b.weight(72, "kg", b.ago(5)), *extra]


def two_progressing_lung_lesions() -> list[dict]:
    """Two lung lesions grow 10 → 20 mm at day 120; the liver lesion stays at 30 mm."""
    return [*lesion("l1", LUNG, 10, 20), *lesion("l2", LUNG, 10, 20), *lesion("l3", LIVER, 30, 30)]


def run(resources: list[dict], policy=None):
    a = assess(PatientRecord(resources, b.PATIENT_ID), EvaluationContext(b.NOW, policy or default_policy()))
    return a, decide(a)


def test_two_progressing_lesions_are_oligoprogression_under_the_default_limit_of_5():
    a, d = run(patient_resources(*two_progressing_lung_lesions()))
    assert a.progression.pattern == "oligoprogression"
    rationale = d.option("local-ablative-therapy").rationale
    assert re.search(r"\b5 lesions", rationale)


def test_max_lesions_1_makes_two_progressing_lesions_systemic(tmp_path):
    policy = load_policy(edited(tmp_path, "max_lesions = 5", "max_lesions = 1"))
    resources = patient_resources(*two_progressing_lung_lesions())
    a, d = run(resources, policy)
    assert a.progression.pattern == "systemic"
    assert d.option("local-ablative-therapy") is None
    assert re.search(r"\b1 lesion", a.progression.reason) and not re.search(r"\b5 lesion", a.progression.reason)
    detail = evaluate(resources, b.NOW, b.PATIENT_ID, policy=policy).cards[0]["detail"]
    assert re.search(r"≤ 1 lesion", detail) and not re.search(r"≤ 5 lesion", detail)


def test_max_lesions_2_keeps_oligoprogression_and_the_rationale_states_2(tmp_path):
    policy = load_policy(edited(tmp_path, "max_lesions = 5", "max_lesions = 2"))
    a, d = run(patient_resources(*two_progressing_lung_lesions()), policy)
    assert a.progression.pattern == "oligoprogression"
    rationale = d.option("local-ablative-therapy").rationale
    assert re.search(r"\b2 lesions", rationale) and not re.search(r"\b5 lesions", rationale)


WORSENED = b.disease_status("271299001", b.ago(15))  # progression documented 15 days ago


def test_ecog_20_days_old_is_current_under_the_default_30_days():
    a, d = run(patient_resources(WORSENED, ecog_days_ago=20))
    assert a.performance.status == "current" and a.fitness == "fit"
    assert d.applicable and d.needs == []


def test_current_window_10_days_makes_a_20_day_old_ecog_not_current(tmp_path):
    policy = load_policy(edited(tmp_path, CURRENT, "[current]\ndays = 10"))
    resources = patient_resources(WORSENED, ecog_days_ago=20)
    a, d = run(resources, policy)
    assert a.performance.status == "stale"
    assert a.fitness == "unknown"
    assert "ECOG" in d.needs
    cards = evaluate(resources, b.NOW, b.PATIENT_ID, policy=policy).cards
    second_line = next(c for c in cards if c["source"]["topic"]["code"] == "second-line-options")
    assert "10 days" in second_line["detail"] and "30 days" not in second_line["detail"]
    quality = next(c for c in cards if c["source"]["topic"]["code"] == "data-quality")
    assert "10 days" in quality["detail"] and "30 days" not in quality["detail"]


def test_site_vascular_invasion_code_fires_r6_without_asking_to_confirm_an_i81_thrombus(tmp_path):
    # "SNOMED codes from the site policy"; "ask for imaging confirmation of tumour thrombus when the evidence is
    # I81 alone" (clinical-rules.md §1, §3 R6): a site-coded tumour thrombus needs no such request
    policy = load_policy(edited(tmp_path, "vascular_invasion_snomed = []", 'vascular_invasion_snomed = ["999000111"]'))
    thrombus = b.condition("999000111", "2026-02-01", system=b.SNOMED)
    a, d = run(patient_resources(thrombus), policy)
    assert a.progression.new_vascular_invasion and "R6" in d.rules_fired
    assert d.option("sbrt-vascular-invasion").strength.value == "preferred"
    assert not any("confirm" in w.text.lower() for w in d.warnings)


def test_the_site_vascular_invasion_code_means_nothing_under_the_default_policy():
    thrombus = b.condition("999000111", "2026-02-01", system=b.SNOMED)
    a, d = run(patient_resources(thrombus, WORSENED))
    assert not a.progression.new_vascular_invasion and "R6" not in d.rules_fired


def test_ici_resume_days_7_withdraws_continuation_of_an_ici_stopped_10_days_ago(tmp_path):
    stopped = [b.med_statement(drug, START, b.ago(10), status_reason="266721009")
               for drug in ("atezolizumab", "bevacizumab")]
    resources = patient_resources(meds=stopped)
    _a, d = run(resources)
    assert d.option("ici-continuation") is not None
    policy = load_policy(edited(tmp_path, "ici_resume_days = 28", "ici_resume_days = 7"))
    _a, d = run(resources, policy)
    assert d.option("ici-continuation") is None


def test_course_join_days_35_keeps_a_drug_started_29_days_later_in_line_1(tmp_path):
    meds = [b.med_statement("atezolizumab", "2026-01-01", status="active"),
            b.med_statement("lenvatinib", "2026-01-30", status="active")]
    resources = patient_resources(WORSENED, meds=meds)
    _a, d = run(resources)
    assert not d.applicable  # line 2 started under the default 28 days
    policy = load_policy(edited(tmp_path, "course_join_days = 28", "course_join_days = 35"))
    a, d = run(resources, policy)
    assert d.applicable and len(a.history) == 1
    assert ("tki-lenvatinib", "failed-first-line") in d.excluded
