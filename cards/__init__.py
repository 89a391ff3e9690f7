"""The pure clinical core: FHIR data in, assessment and CDS Hooks cards out. No Flask, HTTP, database or clock.

Source: Hwang SY, Lee SL, Liu H, Lee SS. Second-Line Treatment after Failure of Immune Checkpoint Inhibitors in
Hepatocellular Carcinoma. Liver Cancer 2023. Rules: shared/design/clinical-rules.md.
"""
