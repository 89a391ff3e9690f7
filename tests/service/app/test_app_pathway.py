"""The pathway view-model from the card extension: contract version 2, and version 1 (missing keys) alike."""

from __future__ import annotations

import copy

from cards.policy import default_policy
from service.app import pathway

POLICY = default_policy()

V2 = {
    "contractVersion": "2",
    "applicability": "progression",
    "rulesFired": ["R0", "R1", "R7", "R8"],
    "policy": {"name": "default", "version": "2", "sha256": "ab" * 32},
    "assessment": {
        "albi": {"status": "stale", "score": -2.11, "grade": 2, "mAlbiGrade": "2b", "date": "2026-09-01"},
        "childPugh": {"status": "computed", "score": 7, "class": "B", "minimum": True},
        "ecog": {"status": "current", "value": 2, "from": "ecog", "date": "2026-11-01"},
        "fitness": "weigh",
        "failedDrugs": ["atezolizumab", "bevacizumab"],
        "afp": {"status": "current", "ngPerMl": 512.0, "date": "2026-11-01"},
        "firstLine": {"regimen": "atezolizumab-bevacizumab", "drugs": ["atezolizumab", "bevacizumab"],
                      "start": "2026-01-10", "end": None, "stopReason": "progression"},
        "treatmentHistory": [{"line": 1, "regimen": "atezolizumab-bevacizumab",
                              "drugs": ["atezolizumab", "bevacizumab"], "start": "2026-01-10", "end": None}],
        "progression": {"documented": True, "date": "2026-10-20", "pattern": "oligoprogression",
                        "newVascularInvasion": False, "progressingLesions": 2, "organs": ["lung"],
                        "hyperprogression": "no"},
        "adverseEvents": {"immuneRelated": [], "bevacizumabRelated": [{"code": "K92.2", "severe": False}]},
    },
    "options": [{"code": "tki-lenvatinib", "role": "systemic", "strength": "alternative", "rationale": "Why.",
                 "dose": "12 mg once daily", "evidence": ["R7"]},
                {"code": "clinical-trial", "role": "trial", "strength": "consider", "rationale": "Trials."}],
}


def by_key(nodes: list[pathway.Node]) -> dict[str, pathway.Node]:
    return {node.key: node for node in nodes}


def test_v2_fired_rules_are_on_the_path_and_values_shown() -> None:
    nodes = by_key(pathway.pathway(V2, POLICY))
    assert nodes["scope"].state == "taken"
    assert nodes["fitness"].state == "taken" and "ECOG 2" in nodes["fitness"].value
    assert nodes["fitness"].outcome.startswith("weigh") and "Child-Pugh at least B7" in nodes["fitness"].value
    assert nodes["history"].state == "taken" and "atezolizumab, bevacizumab" in nodes["history"].outcome
    assert nodes["default"].state == "taken"
    assert nodes["irae"].state == "passed"
    assert nodes["afp"].state == "taken" and "512" in nodes["afp"].value


def test_unknown_fitness_is_undecided_and_says_what_would_decide_it() -> None:
    ext = copy.deepcopy(V2)
    ext["assessment"]["fitness"] = "unknown"  # ALBI stale, so the tier cannot be decided
    node = by_key(pathway.pathway(ext, POLICY))["fitness"]
    assert node.state == "undecided"
    assert "30 days" in node.needs and "albumin" in node.needs
    assert "(stale)" in node.value


def test_bevacizumab_node_appears_when_line_one_had_bevacizumab() -> None:
    nodes = by_key(pathway.pathway(V2, POLICY))
    assert nodes["bev"].value == "K92.2" and nodes["bev"].state == "passed"  # R4 did not fire here


def test_v1_extension_without_new_keys_still_builds() -> None:
    v1 = {"contractVersion": "1", "rulesFired": ["R0", "R7", "R8"],
          "assessment": {"albi": {"status": "current", "score": -2.9, "grade": 1},
                         "ecog": {"status": "missing", "value": None},
                         "afp": {"status": "missing"},
                         "firstLine": {"regimen": "durvalumab-tremelimumab", "start": "2026-01-01"},
                         "progression": {"documented": True, "pattern": "indeterminate",
                                         "hyperprogression": "not-assessable"}},
          "options": [{"code": "tki-lenvatinib", "strength": "preferred", "rationale": "r", "dose": None}]}
    nodes = by_key(pathway.pathway(v1, POLICY))
    assert nodes["fitness"].state == "undecided" and "ECOG" in nodes["fitness"].needs
    assert nodes["pattern"].state == "undecided" and "lesion" in nodes["pattern"].needs
    assert nodes["afp"].state == "undecided"
    assert "bev" not in nodes  # no bevacizumab in line 1
    options = pathway.options(v1, {"tki-lenvatinib": ("R7",)}, {"R7": "A sentence."}.get)
    assert [(o.code, o.label, o.quotes) for o in options] == [("tki-lenvatinib", "Lenvatinib", [("R7", "A sentence.")])]


def test_options_prefer_the_extension_evidence_and_skip_malformed_entries() -> None:
    ext = {"options": [*V2["options"], {"strength": "preferred"}, "junk"]}
    options = pathway.options(ext, {"tki-lenvatinib": ("R1",)}, {"R7": "Seven.", "R1": "One."}.get)
    assert [o.code for o in options] == ["tki-lenvatinib", "clinical-trial"]
    assert options[0].quotes == [("R7", "Seven.")] and options[0].dose == "12 mg once daily"
    assert options[1].quotes == []


def test_timeline_is_in_date_order() -> None:
    events = pathway.timeline(V2)
    assert [e["what"] for e in events] == ["Line 1 started", "Progression", "Bevacizumab-type event"]
    assert events[0]["date"] == "2026-01-10"


def test_quality_items_are_plain_text() -> None:
    card = {"detail": "**Data quality** — heading\n\n- **albumin** — stale: Observation/a \\[2026\\]\n"
                      "- (see suggestions)",
            "suggestions": [{"label": "Order serum albumin"}]}
    assert pathway.quality_items(card) == (["albumin — stale: Observation/a [2026]"], ["Order serum albumin"])
    assert pathway.quality_items(None) == ([], [])
