"""The acceptance criteria a bundle carries, derived from its own cross-validation (edge_runtime.validation.verdict
judges a site by them).

The bounds leave room for a site's sampling error at about 30 subjects (an AUC's standard error there is about
0.05-0.07), but not for a model that has lost what its CV promised: docs/DESIGN.md, "A new scanner at a site".
"""

from __future__ import annotations

from edge_runtime.contracts import AcceptanceCriteria

AUC_MARGIN = 0.10  # below the CV AUC
BALANCED_ACCURACY_MARGIN = 0.10
R2_MARGIN = 0.25
MAE_FACTOR = 1.5  # times the CV MAE
FLOORS = {"auc": 0.70, "balanced_accuracy": 0.70, "r2": 0.20}
COVERAGE_MARGIN = 0.15  # below the interval's declared coverage
GUARD_SHARE_MAX = 0.05
VIEW_AGREEMENT_MIN = 0.95  # view frames the gate files as the view they show ('auto', as grab sends them)
BIAS_MAX_PP = 1.5
MIN_SUBJECTS = 20


def default_criteria(pooled: dict[str, float | None], pdff_coverage: float | None) -> AcceptanceCriteria | None:
    """Bounds from the run's pooled out-of-fold metrics; None when the run has none to derive them from."""
    minimum: dict[str, float] = {"view_agreement": VIEW_AGREEMENT_MIN}
    maximum: dict[str, float] = {"guard_share": GUARD_SHARE_MAX}
    if pooled.get("auc") is not None:
        minimum["auc"] = max(FLOORS["auc"], pooled["auc"] - AUC_MARGIN)
    recall, specificity = pooled.get("recall"), pooled.get("specificity")
    if recall is not None and specificity is not None:
        balanced = (recall + specificity) / 2 - BALANCED_ACCURACY_MARGIN
        minimum["balanced_accuracy"] = max(FLOORS["balanced_accuracy"], balanced)
    if pooled.get("r2") is not None:
        minimum["r2"] = max(FLOORS["r2"], pooled["r2"] - R2_MARGIN)
    if pooled.get("mae") is not None:
        maximum["mae"] = MAE_FACTOR * pooled["mae"]
        maximum["abs_bias"] = BIAS_MAX_PP
    if pdff_coverage is not None:
        minimum["interval_coverage"] = pdff_coverage - COVERAGE_MARGIN
    if len(minimum) == 1:  # nothing from the CV: no criteria to derive
        return None
    return AcceptanceCriteria(
        min_subjects=MIN_SUBJECTS,
        minimum={k: round(v, 4) for k, v in minimum.items()},
        maximum={k: round(v, 4) for k, v in maximum.items()},
        derived_from=(
            f"the bundle's pooled CV: AUC and balanced accuracy at most {AUC_MARGIN:g} below it, R2 at most "
            f"{R2_MARGIN:g} below, MAE at most {MAE_FACTOR:g}x, |bias| at most {BIAS_MAX_PP:g} pp, the PDFF interval "
            f"covering at most {COVERAGE_MARGIN:g} below its level, the guard flagging at most "
            f"{GUARD_SHARE_MAX:.0%} of frames, the gate filing at least {VIEW_AGREEMENT_MIN:.0%} of view frames right"
        ),
    )
