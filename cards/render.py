"""Decision + Assessment -> CDS Hooks 2.0 cards: the only module that knows card syntax.

Cards never carry null or empty members (CDS Hooks 2.0 "Use of JSON"). Text follows clinical-rules.md §5:
summaries ≤ 139 characters and never cut inside a word; the second-line detail ≤ 1,500 characters with the
leading option's quote and the sentences the warnings rest on; no rule ids, option codes, FHIR ids or file
names in anything a clinician reads. Text taken from the record is Markdown-escaped before it is shown.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import date

from . import terminology as t
from .assessment import Assessment
from .evidence import QUOTES, SHORT_CITATION, TRIALS_AS_OF
from .measurements import day, plural
from .rules import Decision, Option, eligible_trials, fitness_reason, regimen_text

SUMMARY_MAX = 139
DETAIL_MAX = 1500
OPTIONS_SHOWN = 5
CONTRACT_VERSION = "2"
RECOMMENDATION_EXTENSION = "hcc-cds.recommendation"
SOURCE_LABEL = f"{SHORT_CITATION} (HCC second-line CDS)"
QUOTE_CITATION = "Hwang et al. 2023"
SOURCE_URL = "https://doi.org/10.1159/000527604"
APP_LINK_LABEL = "Open the pathway: full reasoning, charts and evidence"
_TOPICS = {
    "second-line-options": "Second-line therapy options after first-line ICI",
    "data-quality": "Data needed for the second-line decision",
    "clinical-trials": "Second-line trials after ICI (paper's Table 1)",
    "order-check": "Order check: HCC second-line therapy",
}
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")
UuidFactory = Callable[[], str]
_TIER_WORDS = {"fit": "fit", "weigh": "weigh best supportive care", "frail": "frail",
               "unknown": "fitness unknown"}
_PATTERN_WORDS = {"systemic": "systemic", "new-vascular-invasion": "new vascular invasion",
                  "oligoprogression": "oligoprogression", "indeterminate": "pattern indeterminate",
                  "not-documented": "not documented"}
_STOP_WORDS = {"progression": "stopped for progression", "toxicity": "stopped for toxicity",
               "other": "stopped (other reason)", "unknown": "stop reason not recorded"}


def new_uuid() -> str:
    return str(uuid.uuid4())


def md(text: object) -> str:
    """Escape Markdown/HTML in record-derived text (the sandbox renders raw HTML)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def summarise(text: str, keep: str = "") -> str:
    """One line of at most 139 characters, never cut inside a word; ``keep`` (safety notes) is never cut."""
    text = " ".join(text.split())
    room = SUMMARY_MAX - len(keep)
    if len(text) > room:
        cut = text[: room - 1]
        if text[room - 1] != " " and " " in cut:
            cut = cut.rsplit(" ", 1)[0]
        text = cut.rstrip(" ,;:—-") + "…"
    result = text + keep
    if len(result) > SUMMARY_MAX:  # keep alone is too long: cut it at a word as well
        result = summarise(result)
    return result


def source(topic: str) -> dict:
    return {"label": SOURCE_LABEL, "url": SOURCE_URL,
            "topic": {"system": t.CARD_TOPIC_SYSTEM, "code": topic, "display": _TOPICS[topic]}}


def when(value: date | None) -> str:
    return day(value) if value else "date unknown"


def first_line_text(a: Assessment) -> str:
    """Regimen, dates and stop reason; "ongoing" only while the course is active."""
    line = a.first_line
    assert line is not None
    end = "ongoing" if line.active else (when(line.end) if line.end else "end not recorded")
    stop = f", {_STOP_WORDS[line.stop_reason]}" if line.stop_reason else ""
    return f"{regimen_text(line.regimen, line.drugs)}, {when(line.start)} → {end}{stop}"


# -- the second-line card ------------------------------------------------------------------------
def _assessment_line(a: Assessment, d: Decision) -> str:
    albi, ecog, cp, afp, prog = a.albi, a.performance, a.child_pugh, a.afp, a.progression
    parts = []
    if albi.score is not None:
        parts.append(f"ALBI {albi.score:.2f} (grade {albi.malbi}, {when(albi.date)}"
                     + ("" if albi.status == "current" else ", not current") + ")")
    else:
        parts.append("ALBI not computable")
    if cp.score is None:
        parts.append("Child-Pugh not computable")
    else:
        parts.append(f"Child-Pugh {cp.label}" + (f" ({' and '.join(cp.unrecorded)} not recorded)" if cp.minimum
                                                 else ""))
    if ecog.value is not None:
        origin = f" from Karnofsky {ecog.karnofsky}" if ecog.source == "karnofsky" else ""
        parts.append(f"ECOG {ecog.value}{origin}" + ("" if ecog.status == "current" else
                                                      f" (not current: {when(ecog.date)})"))
    else:
        parts.append(f"ECOG {ecog.status}")
    parts.append(_TIER_WORDS[a.fitness])
    if afp.ng_per_ml is not None:
        parts.append(f"AFP {afp.ng_per_ml:g} ng/mL" + ("" if afp.status == "current" else " (not current)"))
    if a.weight.current_kg is not None:
        parts.append(f"{round(a.weight.current_kg, 1):g} kg")
    if a.patient.age_years is not None and a.patient.age_years < 18:
        parts.append(f"age {a.patient.age_years}")
    line = f"First line {first_line_text(a)}."
    if a.failed_drugs:
        continued = " (continuing the ICI is listed separately)" if d.option("ici-continuation") else ""
        line += f" Not offered again as a new line (failed first line): {', '.join(a.failed_drugs)}{continued}."
    if prog is not None and prog.documented:
        organs = f" ({', '.join(o.replace('-', ' ') for o in prog.organs)})" if prog.organs else ""
        line += f" Progression {when(prog.date)}: {_PATTERN_WORDS[prog.pattern]}{organs}"
        line += "; hyperprogression." if prog.hyperprogression == "yes" else "."
    return "**Assessment:** " + md(" · ".join(parts)) + ". " + md(line)


def _other_name(option: Option) -> str:
    names = {"ici-retrial-nivolumab-ipilimumab": "nivolumab + ipilimumab retrial",
             "ici-continuation": "ICI continuation", "local-ablative-therapy": "local ablative therapy",
             "sbrt-vascular-invasion": "SBRT to the vascular invasion", "best-supportive-care": "best supportive care",
             "clinical-trial": "clinical trial", "surveillance": "surveillance"}
    return names.get(option.code, option.label.lower())


def _option_line(number: int, option: Option) -> str:
    dose = f", {option.dose.text}" if option.dose else ""
    return f"{number}. **{option.label}** — *{option.strength.value}*{md(dose)}: {md(option.reason)}"


def _quote(key: str) -> str:
    return f"> “{QUOTES[key]}” ({QUOTE_CITATION})"


def _caveat_line(a: Assessment, d: Decision) -> str:
    """The derived values this decision used, compactly; the app lists every value in force."""
    p, prog = a.policy, a.progression
    frail, weigh = "/".join(p.frail_child_pugh) or "–", "/".join(p.weigh_child_pugh) or "–"
    values = [f"current ≤ {p.current_days} days"]
    if a.fitness in {"frail", "weigh"}:
        values += [f"frail ECOG ≥ {p.frail_ecog_at_least}/Child-Pugh {frail}",
                   f"weigh ECOG ≥ {p.weigh_ecog_at_least}/ALBI ≥ {p.weigh_albi_grade_at_least}/Child-Pugh {weigh}"]
    if prog is not None and prog.progressing_lesions is not None:
        values.append(f"oligoprogression ≤ {p.oligo_max_lesions} lesions, ≤ {p.oligo_max_organs} organs, "
                      f"≥ {p.oligo_min_days} days")
    if prog is not None and prog.hyperprogression != "not-assessable":
        values.append(f"hyperprogression < {p.hyper_max_days} days, > {p.hyper_min_growth_percent} %")
    if d.option("ici-retrial-nivolumab-ipilimumab") is not None:
        values.append(f"retrial ALBI ≤ {p.retrial_max_albi_grade}, ECOG ≤ {p.retrial_max_ecog}")
    if {"R3", "R4"} & set(d.rules_fired):
        values.append(f"event windows {p.irae_days_after_ici_end}/{p.bevacizumab_days_after_end} days")
    if d.option("ici-continuation") is not None:
        values.append(f"ICI resumption ≤ {p.ici_resume_days} days")
    return (f"*Derived thresholds used (site policy “{md(p.name)}” v{md(p.version)}; not the paper's cut-offs; "
            f"all in the pathway):* {'; '.join(values)}. Doses from labels and trials.")


def _detail(a: Assessment, d: Decision, quotes: int, shown: int) -> str:
    """The detail with ``shown`` options and at most ``quotes`` quotes (the lead's first, then the warnings')."""
    line = a.first_line
    assert line is not None
    heading = f"**Second-line options after first-line ICI** ({SHORT_CITATION})"
    parts = [heading, _assessment_line(a, d)]
    options = [_option_line(n, o) for n, o in enumerate(d.options[:shown], 1)]
    rest = d.options[shown:]
    if rest:
        groups: dict[str, list[str]] = {}
        for option in rest:
            groups.setdefault(option.strength.value, []).append(_other_name(option))
        listed = "; ".join(f"{', '.join(names)} ({strength})" for strength, names in groups.items())
        options.append(f"\nAlso: {md(listed)}.")  # its own paragraph, not part of the last list item
    parts.append("\n".join(options))
    lead = d.lead
    quoted: list[str] = []
    if lead is not None and lead.evidence:
        quoted.append(lead.evidence[0])
    if d.warnings:
        parts.append("**Warnings**\n" + "\n".join(f"- {md(w.text)}" for w in d.warnings))
        quoted += [w.quote for w in d.warnings if w.quote]
    chosen = list(dict.fromkeys(quoted))[:quotes]
    if chosen:
        parts.append("\n".join(f"> “{QUOTES[key]}”" for key in chosen))
    if d.caveats:
        parts.append(" ".join(md(c) for c in d.caveats))
    parts.append(_caveat_line(a, d))
    parts.append("Options, not orders; full reasoning and every quote in the pathway (link).")
    return "\n\n".join(parts)


def second_line_detail(a: Assessment, d: Decision) -> str:
    """≤ 1,500 characters: every quote and five options when they fit; else fewer options (down to three), then
    fewer quotes (the leading option's last); the app always has everything."""
    for quotes, shown in ((9, 5), (9, 4), (9, 3), (9, 2), (9, 1), (2, 1), (1, 1), (0, 1)):
        text = _detail(a, d, quotes, shown)
        if len(text) <= DETAIL_MAX:
            return text
    return text[: DETAIL_MAX - 1].rsplit(" ", 1)[0] + "…"


def summary(a: Assessment, d: Decision) -> str:
    """Leads with the decision; keeps the modifiers (tier, possible HCC, data needed) whole."""
    lead = d.lead
    assert lead is not None
    modifiers = []
    if "R2b" in d.rules_fired:
        modifiers.append("hyperprogression")
    if a.patient.age_years is not None and a.patient.age_years < 18:
        modifiers.append(f"age {a.patient.age_years}")
    keep = f" ({'; '.join(modifiers)})" if modifiers else ""
    systemic = next((o for o in d.options if o.role == "systemic" and o.strength.rank <= 2), None)
    treated = f"if treated, {_short(systemic)}" if systemic else "no systemic option above caution"
    if a.fitness == "frail":
        caution = next((o for o in d.options if o.role == "systemic" and o.strength.value == "caution"), None)
        text = (f"Best supportive care preferred ({fitness_reason(a)}); if treated, only with caution: "
                f"{_short(caution)}" if caution else f"Best supportive care preferred ({fitness_reason(a)})")
    elif a.fitness == "weigh":
        text = f"Weigh best supportive care ({fitness_reason(a)}): {treated}"
    elif lead.strength.value == "preferred":
        text = _capital(f"{_short(lead)} preferred: {d.headline or _default_headline(a)}")
    else:
        headline = d.headline or _default_headline(a)
        if d.needs:
            text = (f"Measure {' and '.join(d.needs)}: no option preferred until then; {_short(lead)} "
                    f"{lead.strength.value} for now")
        elif lead.role in {"supportive", "trial"}:
            text = f"No option preferred: {headline}"
        else:
            text = _capital(f"no option preferred: {_short(lead)} {lead.strength.value}; {headline}")
    if a.diagnosis.status == "possible-hcc":  # the diagnosis comes first; the lead follows, without the headline
        assert a.first_line is not None
        text = (f"Possible HCC: confirm the diagnosis first. No option preferred; {_short(lead)} "
                f"{lead.strength.value} after {regimen_text(a.first_line.regimen, a.first_line.drugs)}")
    return summarise(text, keep)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _short(option: Option) -> str:
    names = {"ici-retrial-nivolumab-ipilimumab": "ICI retrial (nivolumab + ipilimumab)",
             "local-ablative-therapy": "Local ablative therapy",
             "sbrt-vascular-invasion": "SBRT to the vascular invasion",
             "surveillance": "Surveillance", "ici-continuation": "continuing the ICI"}
    label = names.get(option.code, option.label)
    if option.role == "systemic" and option.code.startswith(("tki-", "ramucirumab")):
        label = label.lower()  # a drug name mid-sentence; the summary capitalises its first word
    if option.dose and option.dose.mg:
        label += f" {option.dose.mg} mg/day"
    return label


def _default_headline(a: Assessment) -> str:
    assert a.first_line is not None
    return f"progression on {regimen_text(a.first_line.regimen, a.first_line.drugs)}; TKI switch has most evidence"


_STATUS_WORDS = {"missing": "missing", "stale": "not current", "implausible": "implausible",
                 "not-evaluated": "in IU/mL, not usable", "current": "current"}


def recommendation_extension(a: Assessment, d: Decision) -> dict:
    return {
        "contractVersion": CONTRACT_VERSION,
        "applicability": d.applicability,
        "rulesFired": list(d.rules_fired),
        "policy": a.policy.extension(),
        "assessment": a.to_extension(),
        "options": [{"code": o.code, "role": o.role, "strength": o.strength.value, "rationale": o.rationale,
                     "dose": o.dose.text if o.dose else None, "evidence": list(o.evidence)} for o in d.options],
        "excludedOptions": [{"code": code, "reason": reason} for code, reason in d.excluded],
    }


def second_line_card(a: Assessment, d: Decision, new_id: UuidFactory = new_uuid,
                     app_launch_url: str | None = None) -> dict:
    card_id = new_id()
    card: dict = {
        "uuid": card_id,
        "summary": summary(a, d),
        "indicator": d.indicator,
        "detail": second_line_detail(a, d),
        "source": source("second-line-options"),
    }
    if app_launch_url:
        card["links"] = [{"label": APP_LINK_LABEL, "url": app_launch_url, "type": "smart",
                          "appContext": json.dumps({"cardUuid": card_id}, separators=(",", ":"))}]
    card["extension"] = {RECOMMENDATION_EXTENSION: recommendation_extension(a, d)}
    return card


# -- data-quality card ---------------------------------------------------------------------------
def _order(patient_id: str, key: str, reason: str) -> dict:
    code, display = t.LAB_ORDER_CODES[key]
    category = t.EVALUATION_PROCEDURE_CATEGORY if key == "ecog" else t.LAB_PROCEDURE_CATEGORY
    return {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "category": [{"coding": [{"system": t.SNOMED, "code": category[0], "display": category[1]}]}],
        "code": {"coding": [{"system": t.LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient_id}"},
        "reasonCode": [{"text": reason}],
    }


_ORDER_LABELS = {"albumin": "Order serum albumin", "bilirubin": "Order total bilirubin", "inr": "Order INR",
                 "afp": "Order AFP (ng/mL)", "ecog": "Request ECOG performance status assessment",
                 "weight": "Record body weight"}


def data_quality_needs(a: Assessment, d: Decision) -> list[tuple[str, str]]:
    """(order key, why in clinicians' words) for every input the decision needs that is not current."""
    needs = []
    if a.albi.status != "current":
        for key in ("albumin", "bilirubin"):
            needs.append((key, f"ALBI and Child-Pugh need a current {key} (ALBI {_STATUS_WORDS[a.albi.status]})"))
    if "inr" in a.child_pugh.missing:
        needs.append(("inr", "Child-Pugh needs a current INR"))
    if a.performance.status != "current":
        needs.append(("ecog", "fitness for treatment needs a current ECOG "
                              f"(performance status {_STATUS_WORDS[a.performance.status]})"))
    if a.afp.status != "current":
        needs.append(("afp", f"the ramucirumab criterion needs a current AFP in ng/mL "
                             f"(AFP {_STATUS_WORDS[a.afp.status]})"))
    if a.weight.status != "current" and d.option("tki-lenvatinib") is not None:
        needs.append(("weight", f"the lenvatinib dose depends on a current weight "
                                f"(weight {_STATUS_WORDS[a.weight.status]})"))
    return needs


def _problem_lines(a: Assessment) -> list[str]:
    lines = [p.detail for p in a.problems if p.kind != "ok"]
    if a.unidentified:
        lines.append(f"{plural(len(a.unidentified), 'medication record')} could not be identified (the drug is "
                     "not named in a form we can read)")
    lines += list(a.skipped) + list(a.malformed)
    lines += [f"not readable from the EHR: {u}" for u in a.unavailable]
    return list(dict.fromkeys(line[:1].upper() + line[1:] for line in lines))


def _summary_names(a: Assessment, needs: list[tuple[str, str]]) -> list[str]:
    names = {"albumin": "albumin", "bilirubin": "bilirubin", "inr": "INR", "ecog": "ECOG", "afp": "AFP",
             "weight": "weight"}
    found = [names[key] for key, _ in needs]
    if a.unidentified:
        found.append("unidentified medication")
    if a.skipped:
        found.append("unreadable records")
    if a.malformed and not found:
        return ["a record read around a malformed element"]
    if a.unavailable:
        found.append("EHR data unavailable")
    return list(dict.fromkeys(found))


def data_quality_card(a: Assessment, d: Decision, patient_id: str, new_id: UuidFactory = new_uuid) -> dict | None:
    needs = data_quality_needs(a, d) if d.applicable else []
    lines = _problem_lines(a)
    if not d.applicable:
        lines = [*d.unclear, *lines]
    if not (lines or needs):
        return None
    heading = ("Applicability could not be decided — the data that decide it are unusable; nothing was guessed."
               if not d.applicable else "Missing, stale, implausible or unreadable data; nothing was guessed.")
    detail = f"**Data quality** — {heading}\n\n" + "\n".join(f"- {md(line)}" for line in lines or
                                                           [f"{why[:1].upper()}{why[1:]}" for _k, why in needs])
    names = _summary_names(a, needs)
    if not d.applicable:
        text = "Cannot decide if the second-line rules apply: " + "; ".join(d.unclear)
    elif needs or a.unidentified or a.skipped or a.unavailable:
        text = "Data needed: " + ", ".join(names)
    else:
        text = "Data notes: " + (", ".join(names) if names else "; ".join(_problem_lines(a))[:120])
    card: dict = {
        "uuid": new_id(),
        "summary": summarise(text),
        "indicator": "warning" if not d.applicable or {"albumin", "bilirubin", "ecog"} & {k for k, _ in needs}
        else "info",
        "detail": detail,
        "source": source("data-quality"),
    }
    if needs:
        card["suggestions"] = [{
            "label": _ORDER_LABELS[key],
            "uuid": new_id(),
            "actions": [{"type": "create", "description": f"{_ORDER_LABELS[key]}: {why}",
                         "resource": _order(patient_id, key, why)}],
        } for key, why in needs]
        card["selectionBehavior"] = "any"
    return card


# -- trials card ---------------------------------------------------------------------------------
def trials_card(a: Assessment, new_id: UuidFactory = new_uuid, at_progression: bool = False) -> dict | None:
    """The paper's Table 1 trials whose eligibility fits line 1, with the paper's completion dates
    (``at_progression``: the first line stopped for toxicity, so they become relevant at progression)."""
    trials = eligible_trials(a)
    line = a.first_line
    if not trials or line is None:
        return None
    today = a.context.today
    when_relevant = "relevant at progression" if at_progression else "check eligibility and current status"
    rows = ["| Trial | Phase | Design | Estimated completion (paper) |", "|---|---|---|---|"]
    for trial in trials:
        passed = " — passed: check current status" if trial.completion < today else ""
        rows.append(f"| {trial.id} | {md(trial.phase)} | {md(trial.design)} | {when(trial.completion)}{passed} |")
    regimen = md(regimen_text(line.regimen, line.drugs))
    detail = (f"**Trials designed for patients after first-line {regimen}**, {TRIALS_AS_OF}.\n\n" + "\n".join(rows)
              + "\n\nNo results are claimed for any of these trials; check eligibility and status on "
              f"ClinicalTrials.gov.\n\n{_quote('R8-trials')}")
    return {
        "uuid": new_id(),
        "summary": summarise(f"{plural(len(trials), 'trial')} from the paper's Table 1 designed for patients after "
                             f"{regimen_text(line.regimen, line.drugs)}: {when_relevant}"),
        "indicator": "info",
        "detail": detail,
        "source": source("clinical-trials"),
        "links": [{"label": f"{trial.id} on ClinicalTrials.gov", "url": f"https://clinicaltrials.gov/study/{trial.id}",
                   "type": "absolute"} for trial in trials],
    }


# -- order-entry cards ---------------------------------------------------------------------------
ORDER_CHECK_EXTENSION = "hcc-cds.orderCheck"
_CHECK_TITLES = {
    "irae-ici": "immunotherapy after an immune-related adverse event",
    "bev-event-antivegf": "anti-VEGF therapy after a bevacizumab-type event",
    "poor-status": "systemic therapy with poor performance status or liver function",
    "failed-drug": "a drug of the first line that progressed",
    "ramucirumab-afp": "ramucirumab and the AFP criterion",
    "prior-ctla4": "anti-CTLA-4 after first-line anti-CTLA-4",
    "lenvatinib-dose": "lenvatinib dose",
}


def override_reasons() -> list[dict]:
    return [{"system": t.OVERRIDE_REASON_SYSTEM, "code": code, "display": display}
            for code, display in t.OVERRIDE_REASONS]


def order_card(finding, order, a: Assessment, new_id: UuidFactory = new_uuid) -> dict:  # type: ignore[no-untyped-def]
    """An order-entry card: the finding of one check on one draft order (``cards.order_checks``)."""
    lines = [f"**Order check: {_CHECK_TITLES[finding.check]}** — draft order: {md(order.label)}",
             f"**Why:** {md(finding.reason)}",
             "**Patient data**\n" + "\n".join(f"- {line}" for line in finding.data)]
    if finding.quotes:
        lines.append("**Evidence**\n\n" + "\n\n".join(_quote(key) for key in finding.quotes))
    caveats = [*finding.caveats]
    if a.unavailable:
        caveats.append("Not readable from the EHR: " + md(", ".join(a.unavailable)) + "; a check may be missing.")
    caveats.append(f"Evaluated {when(a.now.date())}. Override with a reason if the order is intended.")
    lines.append("**Caveats**\n" + "\n".join(f"- {c}" for c in caveats))
    extension = {"check": finding.check}
    if order.reference:
        extension["draftOrder"] = order.reference
    card: dict = {
        "uuid": new_id(),
        "summary": summarise(finding.summary),
        "indicator": finding.indicator,
        "detail": "\n\n".join(lines),
        "source": source("order-check"),
    }
    if finding.suggestion:
        card["suggestions"] = [finding.suggestion]
        card["selectionBehavior"] = "at-most-one"
    card["overrideReasons"] = override_reasons()
    card["extension"] = {ORDER_CHECK_EXTENSION: extension}
    return card
