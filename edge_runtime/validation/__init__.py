"""Validation at the site, after go-live: MRI-PDFF reconciled with the box's answers (reconcile, figures, report)
and drift watched without labels (drift)."""
