"""The pathway app's view-model, built from the second-line card's ``hcc-cds.recommendation`` extension.

Written against contract version 2 (service-contract.md §3) and tolerant of missing keys, so version-1
extensions work too. The pathway is the reconstructed Fig. 3 of Hwang et al., Liver Cancer 2023
(clinical-rules.md §3): scope → treatment history → fitness (ECOG, ALBI, Child-Pugh) → hyperprogression →
prior immune-related
event → prior bevacizumab-type event → progression pattern → default systemic choice (with the AFP criterion)
→ individualise. Each node says what decided it, whether the patient's path went through it, and — when the
record could not decide it — which data would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cards.policy import Policy

LABELS = {
    "best-supportive-care": "Best supportive care", "surveillance": "Surveillance",
    "tki-lenvatinib": "Lenvatinib", "tki-sorafenib": "Sorafenib", "tki-cabozantinib": "Cabozantinib",
    "tki-regorafenib": "Regorafenib", "ramucirumab": "Ramucirumab",
    "ici-retrial-nivolumab-ipilimumab": "ICI retrial: nivolumab + ipilimumab",
    "ici-continuation": "Continue the first-line ICI",
    "local-ablative-therapy": "Local ablative therapy (SBRT favoured)",
    "sbrt-vascular-invasion": "SBRT to the new vascular invasion, with systemic therapy",
    "clinical-trial": "Clinical trial",
}
DECLINE_REASONS = (
    ("patient-preference", "Patient preference after informed discussion"),
    ("tumour-board", "Tumour board decided otherwise"),
    ("contraindication", "Contraindication not in the record"),
    ("data-wrong", "Data in the record are wrong"),
    ("other", "Other clinical reason"),
)
_MD_ESCAPE = re.compile(r"\\([\\`*_\[\]<>|~])")


@dataclass
class Node:
    key: str
    title: str
    question: str
    value: str
    outcome: str
    state: str  # taken | passed | undecided  (on the path and decisive / decided, not this branch / unknown)
    needs: str = ""


@dataclass
class Option:
    code: str
    label: str
    strength: str
    dose: str | None
    rationale: str
    quotes: list[tuple[str, str]] = field(default_factory=list)  # (key, verbatim sentence)
    role: str | None = None


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _fmt(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and not isinstance(value, bool) else "—"


def _dated(text: str, when: Any, status: Any) -> str:
    parts = [text]
    if when:
        parts.append(f"on {when}")
    if status and status != "current":
        parts.append(f"({status})")
    return " ".join(parts)


def pathway(ext: dict, policy: Policy) -> list[Node]:
    """The decision nodes of the patient's branch, in the order of the reconstructed Fig. 3."""
    a = ext.get("assessment") if isinstance(ext.get("assessment"), dict) else {}
    fired = set(ext.get("rulesFired") or [])
    nodes: list[Node] = []
    line = a.get("firstLine") or {}
    prog = a.get("progression") or {}
    applicability = ext.get("applicability") or ("progression" if prog.get("documented") else "toxicity-stop")
    regimen = " + ".join(line.get("drugs") or []) or (line.get("regimen") or "first-line ICI").replace("-", " + ")
    nodes.append(Node(
        "scope", "Scope", "HCC, and first-line ICI-based therapy failed?",
        f"{regimen} from {line.get('start') or 'an unknown date'}"
        + (f"; progression documented {prog.get('date') or '(date unknown)'}" if prog.get("documented") else "")
        + (f"; stopped: {line['stopReason']}" if line.get("stopReason") else ""),
        "yes: progression on first line" if applicability == "progression" else "yes: stopped for toxicity",
        "taken"))

    history = a.get("treatmentHistory") or []
    failed = a.get("failedDrugs") or []
    excluded = [e.get("code") for e in ext.get("excludedOptions") or [] if isinstance(e, dict)]
    nodes.append(Node(
        "history", "Treatment history", "Which drugs were part of the first line that failed?",
        "; ".join(f"line {c.get('line')}: {' + '.join(c.get('drugs') or [])} from {c.get('start')}"
                  for c in history) or "no dated systemic therapy",
        (f"not offered again: {', '.join(failed)}" if failed else "no failed drug (no progression on line 1)")
        + (f" ({', '.join(LABELS.get(code, code) for code in excluded)} excluded)" if excluded else ""),
        "taken" if failed else "passed"))

    ecog = a.get("ecog") or {}
    albi = a.get("albi") or {}
    cp = a.get("childPugh") or {}
    tier = a.get("fitness")
    source = " (from Karnofsky)" if ecog.get("from") == "karnofsky" else ""
    values = [_dated(f"ECOG {ecog['value']}{source}", ecog.get("date"), ecog.get("status"))
              if ecog.get("value") is not None else f"ECOG {ecog.get('status') or 'missing'}",
              _dated(f"ALBI {_fmt(albi.get('score'))}, grade {albi.get('grade')} (mALBI {albi.get('mAlbiGrade')})",
                     albi.get("date"), albi.get("status"))
              if albi.get("grade") is not None else f"ALBI {albi.get('status') or 'missing'}",
              (f"Child-Pugh {'at least ' if cp.get('minimum') else ''}{cp.get('class')}{cp.get('score')}"
               if cp.get("status") == "computed" else "Child-Pugh not computable")]
    question = (f"Frail (ECOG ≥ {policy.frail_ecog_at_least} or Child-Pugh {'/'.join(policy.frail_child_pugh)}), "
                f"weigh (ECOG ≥ {policy.weigh_ecog_at_least}, ALBI grade ≥ {policy.weigh_albi_grade_at_least} or "
                f"Child-Pugh {'/'.join(policy.weigh_child_pugh)}), unknown, or fit? [derived]")
    outcomes = {"frail": "frail: best supportive care preferred; everything else at most caution",
                "weigh": "weigh: best supportive care an alternative; nothing preferred",
                "fit": "fit for further treatment"}
    if tier in outcomes:
        nodes.append(Node("fitness", "Fitness", question, "; ".join(values), outcomes[tier],
                          "taken" if tier != "fit" else "passed"))
    else:
        missing = [what for what, item in (("an ECOG (or Karnofsky) assessment", ecog), ("albumin and total "
                   "bilirubin measured on one day", albi)) if item.get("status") != "current"]
        nodes.append(Node("fitness", "Fitness", question, "; ".join(values),
                          "unknown: nothing preferred until measured (fitness is never assumed)", "undecided",
                          " and ".join(missing) + f" dated within {policy.current_days} days"))
    if cp.get("status") != "computed":
        nodes[-1].needs = (nodes[-1].needs + "; " if nodes[-1].needs else "") + (
            f"a current INR for Child-Pugh (within {policy.current_days} days)")

    hyper = prog.get("hyperprogression")
    if hyper in ("yes", "no"):
        nodes.append(Node("hyper", "Hyperprogression", "Progression < 60 days and > 50 % tumour burden? [derived]",
                          f"{hyper}", "yes: further treatment is harder to choose" if hyper == "yes" else "no",
                          "taken" if hyper == "yes" else "passed"))
    else:
        nodes.append(Node("hyper", "Hyperprogression", "Progression < 60 days and > 50 % tumour burden? [derived]",
                          "not assessable", "not decided", "undecided",
                          "pre-ICI and progression-scan measurements of the same lesions, and a progression date"))

    aes = a.get("adverseEvents") or {}
    irae = [e.get("code", "?") + (" (severe)" if e.get("severe") else "") for e in aes.get("immuneRelated") or []]
    bev = [e.get("code", "?") for e in aes.get("bevacizumabRelated") or []]
    nodes.append(Node("irae", "Prior immune-related adverse event", "An irAE during first-line ICI?",
                      ", ".join(irae) or "none recorded",
                      "yes: switch to a TKI is more strongly preferred" if "R3" in fired else "no",
                      "taken" if "R3" in fired else "passed"))
    drugs = line.get("drugs") or regimen.split(" + ")
    if "bevacizumab" in drugs or bev or "R4" in fired:
        retrial = "ALBI grade 1: ICI retrial without TKI preferred" if albi.get("grade") == 1 else \
            "ICI retrial considered (good liver function reserve, ALBI grade 1, not met or not known)"
        nodes.append(Node("bev", "Prior bevacizumab-type event",
                          "GI bleeding or a thromboembolic event on bevacizumab?",
                          ", ".join(bev) or "none recorded", f"yes: {retrial}; TKIs with caution" if "R4" in fired
                          else "no", "taken" if "R4" in fired else "passed"))

    pattern = prog.get("pattern") or "not-documented"
    lesions = prog.get("progressingLesions")
    organs = ", ".join(prog.get("organs") or []) or "organs not recorded"
    value = f"{pattern.replace('-', ' ')}" + (f": {lesions} progressing lesions in {organs}" if lesions is not None
                                              else f" ({organs})")
    if prog.get("newVascularInvasion"):
        value += "; new vascular invasion"
    if pattern in ("indeterminate", "not-documented"):
        nodes.append(Node("pattern", "Progression pattern", "Oligoprogression, new vascular invasion or systemic?",
                          value, "not decided", "undecided",
                          "lesion measurements (tumour size with the lesion's body site) on the pre-ICI and the "
                          "progression scans, or coded new metastases"))
    else:
        outcome = {"oligoprogression": "oligoprogression: local ablative therapy to the progressing sites",
                   "new-vascular-invasion": "new vascular invasion: SBRT with systemic therapy",
                   "systemic": "systemic: no local therapy; systemic options"}.get(pattern, pattern)
        nodes.append(Node("pattern", "Progression pattern", "Oligoprogression, new vascular invasion or systemic?",
                          value, outcome, "taken"))  # a decided pattern always shapes the plan (local or not)

    afp = a.get("afp") or {}
    if "R7" in fired:
        nodes.append(Node("default", "Default systemic choice", "Switch to a TKI (lenvatinib has most evidence)",
                          f"first line: {regimen}", "TKI switch: lenvatinib preferred, sorafenib alternative",
                          "taken"))
    if afp.get("status") == "current" and afp.get("ngPerMl") is not None:
        high = afp["ngPerMl"] >= 400
        nodes.append(Node("afp", "AFP criterion", "AFP ≥ 400 ng/mL (ramucirumab, REACH-2)?",
                          _dated(f"AFP {afp['ngPerMl']:g} ng/mL", afp.get("date"), "current"),
                          "yes: ramucirumab is an option" if high else "no: ramucirumab not offered",
                          "taken" if high else "passed"))
    else:
        nodes.append(Node("afp", "AFP criterion", "AFP ≥ 400 ng/mL (ramucirumab, REACH-2)?",
                          _dated("AFP", afp.get("date"), afp.get("status") or "missing"), "not decided",
                          "undecided", f"an AFP in ng/mL dated within {policy.current_days} days"))
    nodes.append(Node("individualise", "Individualise", "Patient preference, liver function, cost; trials",
                      "always", "clinical trial considered", "taken"))
    return nodes


def options(ext: dict, evidence: dict[str, tuple[str, ...]], quote: Any) -> list[Option]:
    """Every option with its full rationale, dose and the paper's verbatim sentences."""
    out = []
    for raw in ext.get("options") or []:
        if not isinstance(raw, dict) or not isinstance(raw.get("code"), str):
            continue
        keys = raw.get("evidence") or evidence.get(raw["code"], ())
        quotes = [(key, text) for key in keys if (text := quote(key))]
        out.append(Option(raw["code"], LABELS.get(raw["code"], raw["code"]), raw.get("strength") or "consider",
                          raw.get("dose"), raw.get("rationale") or "", quotes, raw.get("role")))
    return out


def timeline(ext: dict) -> list[dict]:
    """Treatment lines, stop reasons, progression and adverse events, oldest first."""
    a = ext.get("assessment") if isinstance(ext.get("assessment"), dict) else {}
    events: list[dict] = []
    history = a.get("treatmentHistory") or ([dict(a["firstLine"], line=1)] if a.get("firstLine") else [])
    for course in history:
        detail = " + ".join(course.get("drugs") or []) or (course.get("regimen") or "").replace("-", " + ")
        events.append({"date": course.get("start") or "", "what": f"Line {course.get('line', 1)} started",
                       "detail": detail or "drugs not recorded"})
        if course.get("end") or course.get("stopReason"):
            events.append({"date": course.get("end") or "", "what": f"Line {course.get('line', 1)} stopped",
                           "detail": course.get("stopReason") or "reason not recorded"})
    prog = a.get("progression") or {}
    if prog.get("documented"):
        events.append({"date": prog.get("date") or "", "what": "Progression",
                       "detail": (prog.get("pattern") or "").replace("-", " ")})
    aes = a.get("adverseEvents") or {}
    for kind, label in (("immuneRelated", "Immune-related adverse event"),
                        ("bevacizumabRelated", "Bevacizumab-type event")):
        for event in aes.get(kind) or []:
            events.append({"date": event.get("date") or "", "what": label,
                           "detail": f"{event.get('code', '?')}{', severe' if event.get('severe') else ''}"})
    return sorted(events, key=lambda e: (e["date"] == "", e["date"]))


def quality_items(card: dict | None) -> tuple[list[str], list[str]]:
    """(items, orders offered) of the data-quality card, as plain text."""
    if not card:
        return [], []
    items = [_MD_ESCAPE.sub(r"\1", line[2:].replace("**", "")) for line in str(card.get("detail", "")).splitlines()
             if line.startswith("- ") and "(see suggestions)" not in line]
    orders = [s.get("label", "") for s in card.get("suggestions") or [] if isinstance(s, dict)]
    return items, orders
