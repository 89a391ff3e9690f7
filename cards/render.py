"""Recommendation + Assessment -> CDS Hooks 2.0 cards: the only module that knows card syntax.

Cards never carry null or empty members (CDS Hooks 2.0 "Use of JSON"); summaries are ≤ 139 characters.
Text taken from the record (lesion descriptions, adverse-event labels) is Markdown-escaped before it is shown.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import date

from . import terminology as t
from .assessment import Assessment
from .evidence import CITATION, QUOTES, SHORT_CITATION, TRIALS, TRIALS_AS_OF
from .medications import FirstLine
from .rules import Recommendation

SUMMARY_MAX = 139
CONTRACT_VERSION = "1"
SOURCE_LABEL = f"{SHORT_CITATION} (HCC second-line CDS)"
_TOPICS = {
    "second-line-options": "Second-line therapy options after first-line ICI",
    "data-quality": "Data needed for the second-line decision",
    "clinical-trials": "Ongoing second-line trials after ICI",
    "order-check": "Order check: HCC second-line therapy",
}
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")
UuidFactory = Callable[[], str]
_SUMMARY_LABELS = {"ici-retrial-nivolumab-ipilimumab": "ICI retrial (nivolumab + ipilimumab)",
                   "sbrt-vascular-invasion": "SBRT to new vascular invasion + systemic therapy"}


def new_uuid() -> str:
    return str(uuid.uuid4())


def md(text: object) -> str:
    """Escape Markdown/HTML in record-derived text (the sandbox renders raw HTML)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def summarise(text: str, keep: str = "") -> str:
    """One line of at most 139 characters; ``keep`` (safety notes) is never cut, the text before it is."""
    text = " ".join(text.split())
    room = SUMMARY_MAX - len(keep)
    if len(text) > room:
        text = text[: room - 1].rstrip(" ,;:—-") + "…"
    return (text + keep)[:SUMMARY_MAX]


def source(topic: str) -> dict:
    return {"label": SOURCE_LABEL,
            "topic": {"system": t.CARD_TOPIC_SYSTEM, "code": topic, "display": _TOPICS[topic]}}


def when(value: date | None) -> str:
    return value.isoformat() if value else "date unknown"


def first_line_text(line: FirstLine) -> str:
    """Regimen, drugs, dates and stop reason; "ongoing" only while the course is active."""
    end = "ongoing" if line.active else (f"{line.end}" if line.end else "end date not recorded")
    stop = f"; stopped: {line.stop_reason}" if line.stop_reason else ""
    return f"{line.regimen} ({', '.join(line.drugs)}), {line.start} → {end}{stop}"


# -- the second-line card ------------------------------------------------------------------------
def _assessment_table(a: Assessment) -> str:
    albi, ecog, afp, weight, line, prog, aes = (a.albi, a.performance, a.afp, a.weight, a.first_line,
                                                a.progression, a.adverse_events)
    rows: list[tuple[str, str]] = []
    diagnosis = {"hcc": "Hepatocellular carcinoma", "possible-hcc": "**Possible** HCC (unspecified liver "
                 "malignancy code): confirm the diagnosis"}[a.diagnosis.status]
    rows.append(("Diagnosis", f"{diagnosis} ({md(a.diagnosis.code)})"))
    if albi.score is not None:
        rows.append(("ALBI", f"{albi.score:.2f}, grade {albi.grade} (mALBI {albi.malbi}); bilirubin "
                     f"{albi.bilirubin_umol_per_l:.1f} µmol/L, albumin {albi.albumin_g_per_l:.1f} g/L; "
                     f"{when(albi.date)}: **{albi.status}**"))
    else:
        rows.append(("ALBI", f"**{albi.status}**: not computed"))
    if albi.trend:
        rows.append(("ALBI trend (latest pairs)", " · ".join(f"{p.date}: {p.score:.2f} (grade {p.grade})"
                                                           for p in albi.trend)))
    if ecog.value is not None:
        origin = f"Karnofsky {ecog.karnofsky} → ECOG" if ecog.source == "karnofsky" else "ECOG"
        rows.append(("Performance status", f"ECOG {ecog.value} ({origin}), {when(ecog.date)}: **{ecog.status}**"))
    else:
        rows.append(("Performance status", f"**{ecog.status}**: ECOG/Karnofsky not usable; not assumed"))
    if line:
        rows.append(("First line", first_line_text(line)))
    if prog:
        lesions = ("" if prog.progressing_lesions is None
                   else f"; {prog.progressing_lesions} progressing lesion(s)")
        organs = f"; organs: {', '.join(prog.organs)}" if prog.organs else ""
        evidence = "; ".join(md(e) for e in prog.evidence) or "none"
        hyper = {"yes": "**yes**", "no": "no", "not-assessable": "not assessable (needs pre-ICI and "
                 "progression-scan measurements of the same lesions, and a progression date)"}
        rows.append(("Progression", f"**{prog.pattern}** ({when(prog.date)}){lesions}{organs}. Evidence: "
                     f"{evidence}. New vascular invasion: {'yes' if prog.new_vascular_invasion else 'no'}. "
                     f"Hyperprogression: {hyper[prog.hyperprogression]}"))
    if aes:
        def listed(findings) -> str:  # type: ignore[no-untyped-def]
            return "; ".join(f"{md(f.label)} ({md(f.code)}{', severe' if f.severe else ''}, {when(f.date)})"
                             for f in findings) or "none recorded"
        rows.append(("Adverse events", f"immune-related: {listed(aes.immune_related)}; bevacizumab-type: "
                     f"{listed(aes.bevacizumab_related)}"))
    afp_text = {"missing": "**missing**", "not-evaluated": "**in IU/mL: not evaluated** for AFP ≥ 400 ng/mL"}
    rows.append(("AFP", afp_text.get(afp.status) or f"{afp.ng_per_ml:g} ng/mL, {when(afp.date)}: **{afp.status}**"))
    rows.append(("Weight", f"{weight.kg:.1f} kg, {when(weight.date)}: **{weight.status}**" if weight.kg is not None
                 else f"**{weight.status}**"))
    lines = ["| Assessment | Value |", "|---|---|"]
    lines += [f"| {name} | {value.replace('|', '/')} |" for name, value in rows]
    return "\n".join(lines)


def _options_section(rec: Recommendation) -> str:
    """Numbered options; each quote of the paper is shown once, under the first option it supports."""
    out, shown = [], set()
    for number, option in enumerate(rec.options, 1):
        dose = f" — {option.dose}" if option.dose else ""
        out.append(f"{number}. **{option.label}** — *{option.strength}*{dose}  \n   {md(option.rationale)}")
        for key in option.evidence:
            if key not in shown:
                shown.add(key)
                out.append(f"   > “{QUOTES[key]}” ({SHORT_CITATION})")
    return "\n".join(out)


def _summary(a: Assessment, rec: Recommendation) -> str:
    lead = rec.options[0]
    if rec.rules_fired.count("R3") and rec.rules_fired.count("R4"):
        text = "No systemic option preferred: prior irAE and bevacizumab-type event; discuss local therapy/BSC/trials"
    else:
        label = _SUMMARY_LABELS.get(lead.code, lead.label)
        if lead.code == "tki-lenvatinib" and lead.dose:
            label += " (dose by weight)" if "if" in lead.dose else " " + lead.dose.split(" once")[0] + "/day"
        if lead.strength == "preferred":
            text = f"{label} preferred: {rec.reason}"
        else:
            label = label if label.startswith("ICI") else label[0].lower() + label[1:]
            text = f"{lead.strength.capitalize()} {label}: {rec.reason}"
    extras = []
    if "R1" in rec.rules_fired:
        extras.append(f"ECOG {a.performance.value}, weigh BSC")
    if "R2" in rec.rules_fired:
        extras.append("ALBI grade 3, weigh BSC")
    if "R2b" in rec.rules_fired:
        extras.append("hyperprogression")
    if rec.not_evaluated:
        extras.append(f"{'/'.join(rec.not_evaluated)} not current")
    if a.diagnosis.status == "possible-hcc":
        extras.append("possible HCC")
    return summarise(text, f" ({'; '.join(extras)})" if extras else "")


def second_line_card(a: Assessment, rec: Recommendation, new_id: UuidFactory = new_uuid) -> dict:
    line = a.first_line
    assert line is not None
    parts = [
        f"**Second-line options after first-line {line.regimen}** — {SHORT_CITATION}",
        _assessment_table(a),
        "**Options** (ranked by strength; options, not orders)",
        _options_section(rec),
    ]
    if rec.warnings:
        parts.append("**Warnings**\n" + "\n".join(f"- {md(w)}" for w in rec.warnings))
    caveats = [
        *rec.caveats,
        "Thresholds marked [derived] (ECOG ≥ 2, ALBI grade 3, ALBI grade 1 for ICI retrial, oligoprogression "
        "1–5 lesions in ≤ 3 organs after ≥ 3 months, hyperprogression < 60 days and > 50 %, 'current' = within "
        f"{a.current_days} days) are not stated as cut-offs in the paper and are configurable.",
        "Doses come from product labels and pivotal trials, not from the paper; check local protocols.",
        f"Individualise: “{QUOTES['R8']}”",
        f"Evaluated {a.now.date().isoformat()}; rules fired: {', '.join(rec.rules_fired)}. Source: {CITATION}",
    ]
    parts.append("**Caveats**\n" + "\n".join(f"- {c}" for c in caveats))
    extension = {
        "contractVersion": CONTRACT_VERSION,
        "rulesFired": list(rec.rules_fired),
        "assessment": a.to_extension(),
        "options": [{"code": o.code, "strength": o.strength, "rationale": o.rationale, "dose": o.dose}
                    for o in rec.options],
    }
    return {
        "uuid": new_id(),
        "summary": _summary(a, rec),
        "indicator": rec.indicator,
        "detail": "\n\n".join(parts),
        "source": source("second-line-options"),
        "extension": {"hcc-cds.recommendation": extension},
    }


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


_ORDER_LABELS = {"albumin": "Order serum albumin", "bilirubin": "Order total bilirubin",
                 "afp": "Order AFP (ng/mL)", "ecog": "Request ECOG performance status assessment",
                 "weight": "Record body weight"}


def data_quality_needs(a: Assessment, rec: Recommendation) -> list[tuple[str, str]]:
    """(order key, why) for every input the decision needs that is not current."""
    needs = []
    if a.albi.status != "current":
        for key in ("albumin", "bilirubin"):
            needs.append((key, f"ALBI grade needed for R2/R4 (ALBI {a.albi.status})"))
    if a.performance.status != "current":
        needs.append(("ecog", f"ECOG needed for R1 (performance status {a.performance.status})"))
    if a.afp.status != "current":
        needs.append(("afp", f"AFP in ng/mL needed for the ramucirumab criterion (AFP {a.afp.status})"))
    if a.weight.status != "current" and any(o.code == "tki-lenvatinib" for o in rec.options):
        needs.append(("weight", f"weight sets the lenvatinib dose (weight {a.weight.status})"))
    return needs


def data_quality_card(a: Assessment, rec: Recommendation, patient_id: str,
                      new_id: UuidFactory = new_uuid) -> dict | None:
    problems = [p for p in a.problems if p.kind != "ok"]
    needs = data_quality_needs(a, rec) if rec.applicable else []
    if not (problems or needs or a.skipped or a.unavailable):
        return None
    lines = [f"- **{md(p.concept)}** — {p.kind}: {md(p.detail)}" for p in problems]
    lines += [f"- **resource skipped** — invalid: {md(s)}" for s in a.skipped]
    lines += [f"- **not readable from the EHR** — {md(u)}" for u in a.unavailable]
    heading = ("Applicability could not be decided: HCC and first-line ICI are recorded, but data needed to "
               "decide progression are unusable." if not rec.applicable else
               "These inputs are missing, stale, implausible or unusable; nothing was guessed.")
    detail = f"**Data quality** — {heading}\n\n" + "\n".join(lines or ["- (see suggestions)"])
    names = list(dict.fromkeys([f"{p.concept} {p.kind}" for p in problems if p.kind != "ok"]
                               + (["resource skipped"] if a.skipped else [])
                               + (["EHR data unreadable"] if a.unavailable else [])))
    card: dict = {
        "uuid": new_id(),
        "summary": summarise("Data needed: " + ", ".join(names) if names else "Data needed for the decision"),
        "indicator": "warning" if {"albumin", "bilirubin", "ecog"} & {k for k, _ in needs} else "info",
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
def trials_card(new_id: UuidFactory = new_uuid) -> dict:
    rows = ["| Trial | Phase | Design |", "|---|---|---|"]
    rows += [f"| {nct} | {phase} | {design} |" for nct, phase, design in TRIALS]
    heading = f"**Second-line trials after ICI-based therapy listed in the paper's Table 1** ({TRIALS_AS_OF})."
    detail = (heading + "\n\n" + "\n".join(rows)
              + f"\n\nNo results are claimed for any of these trials. “{QUOTES['R8-trials']}” ({SHORT_CITATION})")
    return {
        "uuid": new_id(),
        "summary": "Clinical trials after first-line ICI (paper's Table 1): check eligibility; no results claimed",
        "indicator": "info",
        "detail": detail,
        "source": source("clinical-trials"),
        "links": [{"label": f"{nct} on ClinicalTrials.gov", "url": f"https://clinicaltrials.gov/study/{nct}",
                   "type": "absolute"} for nct, _phase, _design in TRIALS],
    }

