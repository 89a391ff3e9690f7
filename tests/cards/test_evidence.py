"""cards.evidence: every quote is verbatim from the paper (Hwang et al., Liver Cancer 2023).

The paper's text lives outside the repository at ../shared/reference/hwang-2023-second-line-after-ici-hcc.txt
(relative to the repository root). Comparison: whitespace collapsed, ``$`` (LaTeX math markers in the text)
removed; a quote with an elision "[…]" must match piece by piece, in order.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from cards.evidence import CITATION, QUOTES
from cards.policy import default_policy

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO.parent / "shared" / "reference" / "hwang-2023-second-line-after-ici-hcc.txt"
RULE_KEYS = {"R0", "R1", "R2", "R2b", "R3", "R4", "R5", "R6", "R7", "R8"}


def normalise(text: str) -> str:
    return " ".join(text.replace("$", "").split())


@pytest.fixture(scope="module")
def paper() -> str:
    if not PAPER.is_file():
        if os.environ.get("CI", "").lower() == "true":  # CI must check the quotes, never skip them
            pytest.fail(f"paper text not available at {PAPER}: CI needs ../shared/reference beside the checkout")
        pytest.skip(f"paper text not available at {PAPER} (shared/reference is outside the repository)")
    return normalise(PAPER.read_text(encoding="utf-8"))


def test_normalise_by_example():
    assert normalise("HR 2.04 [1.31–3.17], $p = 0.0015$)\n  on") == "HR 2.04 [1.31–3.17], p = 0.0015) on"


@pytest.mark.parametrize("key", sorted(QUOTES))
def test_quote_is_verbatim_in_the_paper(key, paper):
    pieces = [normalise(piece) for piece in QUOTES[key].split("[…]")]
    position = 0
    for piece in pieces:
        assert piece, f"{key}: empty piece around an elision"
        found = paper.find(piece, position)
        assert found >= 0, f"{key}: not verbatim in the paper: {piece[:80]!r}"
        position = found + len(piece)


def test_every_rule_has_a_quote():
    assert set(QUOTES) >= RULE_KEYS


def test_quotes_are_not_empty_and_have_no_elision_at_the_ends():
    for key, quote in QUOTES.items():
        assert quote.strip(), key
        assert not quote.strip().startswith("[…]") and not quote.strip().endswith("[…]"), key


def test_key_numbers_of_the_rules_are_quoted():
    # the numbers the cards cite must come from the quoted sentences (clinical-rules.md §3)
    assert "ECOG ≥ 2" in QUOTES["R1"] and "HR 2.04" in QUOTES["R1"]
    assert "HR 1.51" in QUOTES["R2"] and "univariate" in QUOTES["R2"]
    assert "HR 2.15" in QUOTES["R6"]
    assert "AFP ≥ 400 ng/mL" in QUOTES["R7-ramucirumab"]
    assert "3–5" in QUOTES["R5-definition"] and "3 months" in QUOTES["R5-definition"]


def test_trials_are_the_papers_table_1(paper):
    trials = default_policy().trials
    for trial in trials:
        assert trial.id in paper, trial.id
    table_1 = set(re.findall(r"NCT\d{8}", paper))
    assert {trial.id for trial in trials} == table_1


def test_citation_names_the_paper(paper):
    assert "Liver Cancer 2023" in CITATION
    assert normalise("Second-Line Treatment after Failure of Immune Checkpoint Inhibitors in Hepatocellular "
                     "Carcinoma") in paper
