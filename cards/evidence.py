"""The paper's sentences, quoted once and cited everywhere (Hwang et al., Liver Cancer 2023).

Quotes are verbatim from shared/reference/hwang-2023-second-line-after-ici-hcc.txt.
"""

from __future__ import annotations

CITATION = ("Hwang SY, Lee SL, Liu H, Lee SS. Second-Line Treatment after Failure of Immune Checkpoint "
            "Inhibitors in Hepatocellular Carcinoma: Tyrosine Kinase Inhibitor, Retrial of Immunotherapy, or "
            "Locoregional Therapy? Liver Cancer 2023.")
SHORT_CITATION = "Hwang et al., Liver Cancer 2023"

QUOTES: dict[str, str] = {
    "R0": ("In this review, we will discuss strategies for second-line treatment after the failure of first-line "
           "ICI-based therapy by looking at published studies and ongoing prospective trials aimed to overcome "
           "the resistance of immunotherapy."),
    "R1": ("Talbot et al. [14] reported that poor performance state (ECOG ≥ 2) at disease progression was "
           "strongly associated with poor OS (HR 2.04 [1.31–3.17], p = 0.0015) on multivariate analysis."),
    "R1-weigh": ("Therefore, the possibility exists that further treatment itself might accelerate clinical "
                 "deterioration in these situations; thus, the risk-benefit balance needs to be carefully weighed."),
    "R2": ("Poor liver function (albumin-bilirubin [ALBI] grade ≥ 3) at disease progression was also associated "
           "with poor OS (HR 1.51 [1.04–2.21], p = 0.0334), but only on univariate analysis."),
    "R2b": ("Moreover, if hyper-progressive disease occurs after failure of ICI-based therapy, it becomes more "
            "difficult to choose further treatment."),
    "R3": ("We suggest that if patients experienced autoimmune adverse events such as pneumonitis, hepatitis, "
           "thyroiditis, adrenalitis, or others during first-line ICI-based therapy, a switch to TKI should be "
           "more strongly preferred as a second-line treatment."),
    "R4": ("However, if patients experienced more common adverse event of TKIs (bevacizumab) such as "
           "gastrointestinal bleeding during first-line combination therapy of atezolizumab plus bevacizumab, a "
           "retrial of ICI-based therapy without TKI would be the preferred second-line choice."),
    "R4-liver": ("However, retrial of ICI-based therapy must be considered cautiously in patients with good liver "
                 "function reserve because 12% of patients experienced treatment-related severe adverse events "
                 "(grade ≥ 3), and poor Child-Pugh class and ALBI (albumin-bilirubin) grade were significantly "
                 "associated with poor prognosis [32]."),
    "R5": ("In particular, stereotactic body radiation therapy (SBRT) is an attractive LAT option for "
           "oligoprogression because not only can it be performed with no or minimal interruption of ICI "
           "therapy, but it also has the potential for immune stimulation [39]."),
    "R5-definition": ("Although there is no strict definition of oligoprogression, disease progression of 3–5 "
                      "lesions in 1–3 organs after achieving at least stable disease of other sites for a minimum "
                      "of 3 months on ICIs is generally suggested as a definition [43, 44]."),
    "R5-continue": ("Differentiating between oligoprogression and true progression may be important because "
                    "clinicians can try continuing with ICI therapy if the oligoprogression sites can be well "
                    "controlled by LAT."),
    "R5-rare": "Studies of SBRT for oligoprogression during ICI therapy in HCC patients are extremely rare.",
    "R6-prognosis": ("Talbot et al. [14] reported that new vascular invasion was a representative pattern of "
                     "post-ICI therapy progression associated with shorter OS (HR 2.15 [95% CI: 1.38–3.35]; "
                     "p = 0.0007), and actually median OS was only 0.4 months."),
    "R6": ("Talbot et al. [14] reported that new vascular invasion was a representative pattern of post-ICI "
           "therapy progression associated with shorter OS (HR 2.15 [95% CI: 1.38–3.35]; p = 0.0007), and "
           "actually median OS was only 0.4 months. Therefore, SBRT can play an important role to control new "
           "vascular invasion in patients with progression after prior ICI-based therapy."),
    "R7": ("However, to date, based on results of the studies currently available, a strategy of switching to "
           "TKI (especially lenvatinib) seems to have more supporting evidence than other options such as retrial "
           "of ICI therapy or LRT."),
    "R7-sequence": ("If clinicians choose sorafenib as a second-line treatment, they can use third-line treatment "
                    "with strong evidence after failure of sorafenib based on several RCTs [21–23]. If clinicians "
                    "choose lenvatinib as a second-line treatment, they may expect a more potent PFS and ORR than "
                    "sorafenib; however, there are no further treatments with strong evidence after failure of "
                    "lenvatinib."),
    "R7-sorafenib": ("They reported that lenvatinib was the most effective compared to other TKIs (median OS 24 vs. "
                     "18–23 months), whereas sorafenib had the best safety profile (with the least severe adverse "
                     "events) compared to other TKIs (63 vs. 67.8–70%)."),
    "ici-continuation": ("Interestingly, post-progression survival was longer (15.3 months) in the group that "
                         "received ICI beyond progression followed by TKIs; therefore, one could postulate that "
                         "subsequent TKIs might be more effective because of synergism with continued ICI beyond "
                         "progressive disease."),
    "R7-ramucirumab": ("Median OS of ramucirumab (only if AFP ≥ 400 ng/mL) [21], regorafenib [22], and "
                       "cabozantinib [23] compared to placebo after failure of sorafenib were 8.5 versus 7.3 "
                       "months (p = 0.0199), 10.6 versus 8.0 months (p < 0.001), and 10.2 versus 8.0 months "
                       "(p = 0.005), respectively."),
    "R7-systemic": ("However, LRT may not be suitable in cases with disseminated tumor progression after previous "
                    "ICI-based therapy."),
    "R8": ("In the remaining cases, clinicians will have to make management decisions based on individual "
           "situations such as patient's preference, liver function, and financial considerations."),
    "R8-trials": ("In the meantime, we await the results of ongoing prospective trials to elucidate the best "
                  "management options."),
    "R4-wong": ("On the basis of the above, Wong et al. [32] concluded that ipilimumab with anti-PD-1(L1) "
                "inhibitors might be effective salvage therapy in patients with advanced HCC after failure of "
                "prior anti-PD-1(L1) inhibitors."),
    "ici-combination": ("Therefore, we must pay attention to adverse events when both ICIs are combined."),
}

# The paper's Table 1 (ongoing trials) lives in the site policy (cards.policy, ``trials``): ids, eligibility and
# the paper's estimated completion dates. No results are claimed (clinical-codes.md §6).
TRIALS_AS_OF = "listed as ongoing in the paper's Table 1, 2023; current status not verified"
