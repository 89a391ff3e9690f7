"""cards.terminology: code tables and code checks (clinical-codes.md §0, §2, §4).

The check digits are recomputed here with independent implementations (LOINC mod 10, SNOMED CT Verhoeff),
so a typo in a table fails even if cards.terminology.loinc_check_digit_ok were wrong too.
"""

from __future__ import annotations

import re

import pytest

from cards import terminology as t


# -- independent oracles ----------------------------------------------------------------------------
def loinc_mod10(body: str) -> int:
    """LOINC check digit: from the right, double every other digit starting with the rightmost, add the
    digits of the products and the remaining digits; check = (10 - total mod 10) mod 10."""
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            digit = digit // 10 + digit % 10
        total += digit
    return (10 - total % 10) % 10


_VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]


def verhoeff_ok(number: str) -> bool:
    check = 0
    for position, char in enumerate(reversed(number)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[position % 8][int(char)]]
    return check == 0


def _loinc_codes_used() -> set[str]:
    codes = {*t.ALBUMIN_MASS, *t.ALBUMIN_MOLAR_EXCLUDED, *t.BILIRUBIN_MASS, *t.BILIRUBIN_MOLAR, t.ECOG, t.KARNOFSKY,
             *t.AFP_MASS, *t.AFP_UNITS, t.BODY_WEIGHT, *t.DISEASE_STATUS, t.TUMOR_SIZE, t.TUMOR_LONGEST_DIMENSION,
             *t.OBSERVATION_CODES_OF_INTEREST}
    codes |= {code for code, _display in t.LAB_ORDER_CODES.values()}
    return codes


def _snomed_codes_used() -> set[str]:
    return {*t.HCC_SNOMED, *t.POSSIBLE_HCC_SNOMED, *t.VASCULAR_INVASION_SNOMED, *t.METASTASIS_SNOMED_ORGAN,
            *t.BODY_SITE_SNOMED_ORGAN, *t.ECOG_SNOMED_ANSWERS, t.SEVERE_SNOMED, t.STOP_NO_RESPONSE,
            t.STOP_NOT_TOLERATED, t.DISEASE_WORSENED, t.DISEASE_STABLE, t.DISEASE_IMPROVED, t.DISEASE_UNDETERMINED,
            t.LAB_PROCEDURE_CATEGORY[0], t.EVALUATION_PROCEDURE_CATEGORY[0]}


# -- the oracles themselves, on codes checked by hand --------------------------------------------------
def test_oracle_loinc_1751_7_by_hand():
    # 1751 reversed = 1,5,7,1; doubled positions 0 and 2: 2 and 14 -> 1+4 = 5; total 2+5+5+1 = 13 -> 7
    assert loinc_mod10("1751") == 7


def test_oracle_loinc_53962_gives_7_not_1():
    # 53962 reversed = 2,6,9,3,5; doubled 4, 18 -> 9, 10 -> 1; total 4+6+9+3+1 = 23 -> 7
    assert loinc_mod10("53962") == 7


def test_oracle_verhoeff_accepts_known_snomed_and_rejects_a_typo():
    assert verhoeff_ok("109841003")  # liver cell carcinoma (clinical-codes.md §3.1)
    assert not verhoeff_ok("109841004")


# -- LOINC ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", sorted(_loinc_codes_used()))
def test_every_loinc_code_used_passes_mod10(code):
    body, check = code.split("-")
    assert loinc_mod10(body) == int(check), code
    assert t.loinc_check_digit_ok(code)


def test_afp_53962_1_from_the_brief_fails_the_check_digit():
    assert not t.loinc_check_digit_ok("53962-1")
    assert t.loinc_check_digit_ok("53962-7")
    assert "53962-1" not in _loinc_codes_used()


@pytest.mark.parametrize("bad", ["1751-8", "17517", "1751-", "abc-7", "1751-77", ""])
def test_loinc_check_rejects_malformed_or_wrong(bad):
    assert not t.loinc_check_digit_ok(bad)


def test_loinc_code_lists_match_clinical_rules():
    assert {"1751-7", "61151-7", "61152-5", "2862-1", "76631-1"} == t.ALBUMIN_MASS
    assert {"54347-0", "62234-0", "62235-7"} == t.ALBUMIN_MOLAR_EXCLUDED
    assert not t.ALBUMIN_MASS & t.ALBUMIN_MOLAR_EXCLUDED
    assert {"1975-2", "42719-5", "59827-6", "59828-4", "14631-6"} == t.BILIRUBIN_TOTAL
    assert "1971-1" not in t.BILIRUBIN_TOTAL  # indirect bilirubin is never used
    assert {"1834-1", "53962-7", "83073-7"} == t.AFP_MASS
    assert {"19176-7", "53961-9", "83072-9"} == t.AFP_UNITS
    assert (t.ECOG, t.KARNOFSKY, t.BODY_WEIGHT) == ("89247-1", "89243-0", "29463-7")
    assert {"97509-4", "88040-1"} == t.DISEASE_STATUS


# -- SNOMED CT ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", sorted(_snomed_codes_used()))
def test_every_snomed_code_used_passes_verhoeff(code):
    assert code.isdigit() and verhoeff_ok(code), code


def test_ecog_answer_tables_match_clinical_codes():
    assert t.ECOG_LOINC_ANSWERS == {"LA9622-7": 0, "LA9623-5": 1, "LA9624-3": 2, "LA9625-0": 3, "LA9626-8": 4,
                                    "LA9627-6": 5}
    assert t.ECOG_SNOMED_ANSWERS == {"425389002": 0, "422512005": 1, "422894000": 2, "423053003": 3,
                                     "423237006": 4, "423409001": 5}


# -- ICD-10-CM ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "normal"), [
    ("C220", "C22.0"), ("C22.0", "C22.0"), ("c220", "C22.0"), (" C22.9 ", "C22.9"), ("T451X5A", "T45.1X5A"),
    ("I81", "I81"), ("C7801", "C78.01"), ("N10", "N10"),
])
def test_icd10_normalisation(raw, normal):
    assert t.normalise_icd10(raw) == normal


def test_hcc_and_possible_hcc_sets():
    assert {"C22.0"} == t.HCC_ICD10
    assert {"C22.8", "C22.9"} == t.POSSIBLE_HCC_ICD10
    for not_hcc in ("C22.1", "C22.2", "C22.3", "C22.4", "C22.7"):
        assert not_hcc not in t.HCC_ICD10 | t.POSSIBLE_HCC_ICD10


# -- drugs ----------------------------------------------------------------------------------------------
def test_atc_codes_are_well_formed():
    for item in t.DRUGS:
        for code in item.atc:
            assert re.fullmatch(r"L01[A-Z]{2}\d{2}", code), (item.name, code)


@pytest.mark.parametrize(("name", "ingredient"), [
    ("atezolizumab", "1792776"), ("bevacizumab", "253337"), ("durvalumab", "1919503"), ("nivolumab", "1597876"),
    ("ipilimumab", "1094833"), ("pembrolizumab", "1547545"), ("sorafenib", "495881"), ("lenvatinib", "1603296"),
    ("regorafenib", "1312397"), ("cabozantinib", "1363268"), ("ramucirumab", "1535922"),
])
def test_ingredient_rxnorm_codes_from_clinical_codes(name, ingredient):
    assert t.DRUG_BY_RXNORM[ingredient].name == name


def test_ici_set_is_the_ten_drugs_of_the_rules():
    assert {"atezolizumab", "durvalumab", "tremelimumab", "nivolumab", "ipilimumab",
                           "pembrolizumab", "tislelizumab", "camrelizumab", "sintilimab", "toripalimab"} == t.ICI_NAMES


def test_anti_ctla4_flags():
    assert {d.name for d in t.DRUGS if d.anti_ctla4} == {"tremelimumab", "ipilimumab"}
