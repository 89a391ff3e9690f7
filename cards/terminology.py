"""Code tables: LOINC, SNOMED CT, ICD-10-CM, RxNorm, ATC and UCUM, in one place (data, not logic).

Every code and its source is listed in shared/reference/clinical-codes.md; section numbers below refer to it.
"""

from __future__ import annotations

from dataclasses import dataclass

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
UCUM = "http://unitsofmeasure.org"
ICD10_WHO = "http://hl7.org/fhir/sid/icd-10"

# Other spellings of the same code systems (clinical-rules.md §1 "Code systems"): OIDs, and WHO ICD-10, whose
# codes the rules read exactly as ICD-10-CM (C22.0, C78.0, K75.4 … mean the same in both).
SYSTEM_ALIASES = {
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.3": ICD10CM,
    ICD10_WHO: ICD10CM,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "urn:oid:2.16.840.1.113883.6.8": UCUM,
    "http://www.nlm.nih.gov/research/umls/rxnorm/": RXNORM,
}
ICD10_SYSTEMS = frozenset({ICD10CM})

# --- Diagnoses (§3.1) ------------------------------------------------------------------------------
HCC_ICD10 = frozenset({"C22.0"})
HCC_SNOMED = frozenset({"109841003"})
POSSIBLE_HCC_ICD10 = frozenset({"C22.8", "C22.9"})  # unspecified liver malignancy: "possible HCC"
POSSIBLE_HCC_SNOMED = frozenset({"93870000"})

VASCULAR_INVASION_ICD10_PREFIXES = ("I81",)  # portal vein thrombosis (§3.1)
VASCULAR_INVASION_SNOMED: frozenset[str] = frozenset()  # none verified; configurable by extending this set

# Secondary malignant neoplasm -> organ name (§3.2; clinical-rules.md §1 "Organ names").
METASTASIS_ICD10_PREFIX_ORGAN = (
    ("C78.7", "liver"),
    ("C78.0", "lung"),
    ("C79.5", "bone"),
    ("C79.7", "adrenal"),
    ("C77", "lymph-node"),
    ("C78.6", "peritoneum"),
    ("C79.3", "brain"),
    ("C78", "other"),
    ("C79", "other"),
    ("C7B", "other"),
)
METASTASIS_SNOMED_ORGAN = {
    "94381002": "liver",
    "94391008": "lung",
    "94222008": "bone",
    "94161006": "adrenal",
    "94225005": "brain",
    "128462008": "other",
}
# BodyStructure.location (lesion site) -> organ name.
BODY_SITE_SNOMED_ORGAN = {
    "10200004": "liver",
    "39607008": "lung",
    "272673000": "bone",
    "23451007": "adrenal",
    "59441001": "lymph-node",
    "15425007": "peritoneum",
    "12738006": "brain",
}
ORGANS = ("liver", "lung", "bone", "adrenal", "lymph-node", "peritoneum", "brain", "other")

# --- Adverse events (§3.3, §3.4; clinical-rules.md §3 R3/R4) ----------------------------------------
IRAE_ICD10 = {
    "J70.2": "pneumonitis", "J70.4": "pneumonitis",
    "K71.2": "hepatitis", "K71.6": "hepatitis", "K75.4": "hepatitis",
    "E06.4": "thyroiditis", "E03.2": "hypothyroidism", "E06.3": "thyroiditis", "E05.90": "hyperthyroidism",
    "E27.3": "adrenal insufficiency", "E27.40": "adrenal insufficiency", "E27.49": "adrenal insufficiency",
    "K52.1": "colitis",
    "E23.1": "hypophysitis",
    "I40.8": "myocarditis", "I40.9": "myocarditis", "I51.4": "myocarditis",
    "N14.19": "nephritis", "N10": "nephritis", "N12": "nephritis",
    "L27.0": "dermatitis", "L27.1": "dermatitis",
}
DRUG_ADVERSE_EFFECT_ICD10_PREFIX = "T45.1X5"  # adverse effect of antineoplastic drugs (A/D/S)
BEV_EVENT_ICD10 = {
    "K92.0": "haematemesis", "K92.1": "melaena", "K92.2": "gastrointestinal bleeding",
    "I85.01": "variceal bleeding", "I85.11": "variceal bleeding",
    "K63.1": "intestinal perforation", "K22.3": "oesophageal perforation", "K25.5": "gastric ulcer perforation",
}
BEV_EVENT_ICD10_PREFIXES = {"I74": "arterial thromboembolism", "I63": "cerebral infarction",
                            "I21": "myocardial infarction"}
SEVERE_SNOMED = "24484000"  # Condition.severity "Severe"
AE_SEVERITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/adverse-event-severity"

# --- Observations (§2) ------------------------------------------------------------------------------
ALBUMIN_MASS = frozenset({"1751-7", "61151-7", "61152-5", "2862-1", "76631-1"})
ALBUMIN_MOLAR_EXCLUDED = frozenset({"54347-0", "62234-0", "62235-7"})  # never fed to ALBI
BILIRUBIN_MASS = frozenset({"1975-2", "42719-5", "59827-6", "59828-4"})
BILIRUBIN_MOLAR = frozenset({"14631-6"})
BILIRUBIN_TOTAL = BILIRUBIN_MASS | BILIRUBIN_MOLAR
ECOG = "89247-1"
KARNOFSKY = "89243-0"
AFP_MASS = frozenset({"1834-1", "53962-7", "83073-7"})
AFP_UNITS = frozenset({"19176-7", "53961-9", "83072-9"})  # IU/mL: "not evaluated" for AFP >= 400 ng/mL
BODY_WEIGHT = "29463-7"
INR = frozenset({"6301-6", "34714-6", "46418-0"})
DISEASE_STATUS = frozenset({"97509-4", "88040-1"})  # mCODE STU2+ and STU1
TUMOR_SIZE = "21889-1"
TUMOR_LONGEST_DIMENSION = "33728-7"

DISEASE_WORSENED = "271299001"
DISEASE_STABLE = "359746009"
DISEASE_IMPROVED = "268910001"
DISEASE_UNDETERMINED = "709137006"

# Results that EHRs also send as components of a panel Observation (hepatic function panel, coagulation panel)
PANEL_RESULT_CODES = ALBUMIN_MASS | BILIRUBIN_TOTAL | AFP_MASS | AFP_UNITS | INR

OBSERVATION_CODES_OF_INTEREST = (
    *sorted(ALBUMIN_MASS), *sorted(BILIRUBIN_TOTAL), ECOG, KARNOFSKY, *sorted(AFP_MASS), *sorted(AFP_UNITS),
    BODY_WEIGHT, *sorted(DISEASE_STATUS), TUMOR_SIZE, *sorted(INR),
)

# ECOG answers (§2.3): LOINC LL529-9 and SNOMED grade concepts -> grade.
ECOG_LOINC_ANSWERS = {"LA9622-7": 0, "LA9623-5": 1, "LA9624-3": 2, "LA9625-0": 3, "LA9626-8": 4, "LA9627-6": 5}
ECOG_SNOMED_ANSWERS = {"425389002": 0, "422512005": 1, "422894000": 2, "423053003": 3, "423237006": 4,
                       "423409001": 5}
# Karnofsky answers (LL4986-7, §2.4) -> score.
KARNOFSKY_LOINC_ANSWERS = {"LA29175-9": 100, "LA29176-7": 90, "LA29177-5": 80, "LA29178-3": 70,
                           "LA29179-1": 60, "LA29180-9": 50, "LA29181-7": 40, "LA29182-5": 30,
                           "LA29183-3": 20, "LA29184-1": 10, "LA9627-6": 0}

# --- Units (UCUM; §1, §2.6) -------------------------------------------------------------------------
# unit code (case-sensitive UCUM, plus common human spellings) -> factor to the canonical unit
BILIRUBIN_TO_UMOL_L = {"umol/L": 1.0, "µmol/L": 1.0, "mg/dL": 17.1, "mg/dl": 17.1}
ALBUMIN_TO_G_L = {"g/L": 1.0, "g/l": 1.0, "g/dL": 10.0, "g/dl": 10.0}
AFP_TO_NG_ML = {"ng/mL": 1.0, "ng/ml": 1.0, "ug/L": 1.0, "µg/L": 1.0}
WEIGHT_TO_KG = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237, "[oz_av]": 0.028349523125}
LENGTH_TO_MM = {"mm": 1.0, "cm": 10.0}

INR_UNITS = {"{INR}": 1.0, "1": 1.0, "": 1.0}  # dimensionless; "" = recorded without a unit

# --- Child-Pugh inputs recorded as Conditions (clinical-rules.md §1; ICD-10-CM) ---------------------
ASCITES_ICD10 = frozenset({"R18.8", "R18.0"})
ENCEPHALOPATHY_ICD10 = frozenset({"K76.82"})
ACTIVE_CLINICAL_STATUS = frozenset({"active", "recurrence", "relapse"})

# --- Medication stop reasons (§2.9, mCODE TreatmentTerminationReasonVS) -----------------------------
STOP_NO_RESPONSE = "266721009"  # progression
STOP_NOT_TOLERATED = "407563006"  # toxicity


# --- Drugs (§4) -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Drug:
    """One drug with every code it may be recorded under (ingredient and product RxNorm, ATC, names)."""

    name: str
    rxnorm: frozenset[str]  # ingredient (IN) and product (SCD/SBD) RXCUIs
    atc: frozenset[str]  # current and legacy (pre-2022 L01XC/L01XE) ATC codes
    names: tuple[str, ...]  # lower-case generic and brand names matched in text/display
    ici: bool = False
    anti_ctla4: bool = False
    anti_vegf: bool = False  # bevacizumab-type bleeding/thrombosis risk (antibodies and TKIs)
    tki: bool = False


def _drug(name: str, rxnorm: tuple[str, ...] = (), atc: tuple[str, ...] = (), brands: tuple[str, ...] = (),
          **flags: bool) -> Drug:
    return Drug(name, frozenset(rxnorm), frozenset(atc), (name, *brands), **flags)


DRUGS: tuple[Drug, ...] = (
    _drug("atezolizumab", ("1792776",), ("L01FF05", "L01XC32"), ("tecentriq",), ici=True),
    _drug("durvalumab", ("1919503",), ("L01FF03", "L01XC28"), ("imfinzi",), ici=True),
    _drug("tremelimumab", ("2619317", "2619323", "2619325", "2619326"), ("L01FX20",), ("imjudo",),
          ici=True, anti_ctla4=True),
    _drug("nivolumab", ("1597876",), ("L01FF01", "L01XC17"), ("opdivo",), ici=True),
    _drug("ipilimumab", ("1094833",), ("L01FX04", "L01XC11"), ("yervoy",), ici=True, anti_ctla4=True),
    _drug("pembrolizumab", ("1547545",), ("L01FF02", "L01XC18"), ("keytruda",), ici=True),
    _drug("tislelizumab", (), ("L01FF09",), ("tevimbra",), ici=True),
    _drug("camrelizumab", (), (), (), ici=True),
    _drug("sintilimab", (), (), ("tyvyt",), ici=True),
    _drug("toripalimab", (), (), ("loqtorzi",), ici=True),
    _drug("bevacizumab", ("253337",), ("L01FG01", "L01XC07"), ("avastin",), anti_vegf=True),
    _drug("ramucirumab", ("1535922", "1657775", "1657777", "1657780", "1657781"), ("L01FG02", "L01XC21"),
          ("cyramza",), anti_vegf=True),
    _drug("rivoceranib", (), (), ("apatinib",), anti_vegf=True, tki=True),
    _drug("sorafenib", ("495881", "597745", "597746", "597747", "615977", "615978", "615979"),
          ("L01EX02", "L01XE05"), ("nexavar",), anti_vegf=True, tki=True),
    _drug("lenvatinib", ("1603296", "1604345"), ("L01EX08", "L01XE29"), ("lenvima",), anti_vegf=True, tki=True),
    _drug("regorafenib", ("1312397",), ("L01EX05", "L01XE21"), ("stivarga",), anti_vegf=True, tki=True),
    _drug("cabozantinib", ("1363268",), ("L01EX07", "L01XE26"), ("cabometyx", "cometriq"), anti_vegf=True,
          tki=True),
    _drug("tivozanib", ("2534233",), ("L01EK03", "L01XE34"), ("fotivda",), anti_vegf=True, tki=True),
)
DRUGS_BY_NAME = {drug.name: drug for drug in DRUGS}
DRUG_BY_RXNORM = {code: drug for drug in DRUGS for code in drug.rxnorm}
DRUG_BY_ATC = {code: drug for drug in DRUGS for code in drug.atc}
ICI_NAMES = frozenset(drug.name for drug in DRUGS if drug.ici)

# ServiceRequest codes offered by the data-quality card.
LAB_ORDER_CODES = {
    "albumin": ("1751-7", "Albumin [Mass/volume] in Serum or Plasma"),
    "bilirubin": ("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma"),
    "afp": ("1834-1", "Alpha-1-Fetoprotein [Mass/volume] in Serum or Plasma"),
    "ecog": ("89247-1", "ECOG Performance Status score"),
    "weight": ("29463-7", "Body weight"),
    "inr": ("6301-6", "INR in Platelet poor plasma by Coagulation assay"),
}
LAB_PROCEDURE_CATEGORY = ("108252007", "Laboratory procedure")
EVALUATION_PROCEDURE_CATEGORY = ("386053000", "Evaluation procedure")

# Topic codes of our cards (source.topic) and override reasons for order-entry cards.
CARD_TOPIC_SYSTEM = "urn:hcc-second-line-cds:card-topic"
OVERRIDE_REASON_SYSTEM = "urn:hcc-second-line-cds:override-reason"
OVERRIDE_REASONS = (
    ("tumour-board", "Discussed with tumour board"),
    ("patient-preference", "Patient preference after informed discussion"),
    ("benefit-outweighs-risk", "Benefit outweighs risk"),
    ("record-data-wrong", "Data in the record are wrong"),
)


def normalise_icd10(code: str) -> str:
    """ICD-10-CM with the dot after the third character ("C220" -> "C22.0"), upper case."""
    code = code.strip().upper()
    if "." not in code and len(code) > 3:
        code = f"{code[:3]}.{code[3:]}"
    return code


def loinc_check_digit_ok(code: str) -> bool:
    """LOINC mod-10 check digit (clinical-codes.md §2.8): catches typos such as AFP 53962-1."""
    body, _, check = code.partition("-")
    if not body.isdigit() or not check.isdigit() or len(check) != 1:
        return False
    digits = [int(c) for c in body]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 0:
            doubled = digit * 2
            total += doubled // 10 + doubled % 10
        else:
            total += digit
    return (10 - total % 10) % 10 == int(check)
