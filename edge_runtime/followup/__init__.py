"""Follow-up: each exam against the patient's previous report (change), and how that report is found (priors)."""
