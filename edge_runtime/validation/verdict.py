"""A site's figures against a bundle's acceptance criteria (edge_runtime.contracts.AcceptanceCriteria): one finding
per bound. The acceptance test before go-live (`trainer site-check`) and the reconciliation after it (`edge-runtime
outcomes`) judge by this same code, so a criterion means the same thing on both sides of go-live."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge_runtime.contracts import AcceptanceCriteria

CHANCE = 0.05  # a definite-call error is "exceeded" when this unlikely under the certified level


@dataclass(frozen=True)
class Finding:
    """One criterion against the site's figure."""

    metric: str
    bound: str  # ">= 0.80" or "<= 0.05"
    value: float | None
    passed: bool


REMEDIES = {
    "view_agreement": "the view gate files this site's view frames under the other view or keeps them out: adapt "
    "with --run so the gate learns the console's views from the site's frames, and check that the manifest's views "
    "are right (the cohort's contact sheet)",
    "guard_share": "the guard measures this site's frames as unlike training: adapt with --run to centre it on the "
    "console (6 or more local subjects per console), or find what differs (preset, probe, grey map)",
    "interval_coverage": "the PDFF interval is too narrow for this site's errors: adapt on labelled subjects spanning "
    "the PDFF range (each band, severe livers included); 12 carry the parent's interval over, 20 or more sharpen it",
    "balanced_accuracy": "the calls do not carry over: adapt on labelled subjects, half of each class, more where "
    "fatty and normal livers near 5 % are common",
    "auc": "the model ranks this site's patients poorly: more labelled subjects for --retrain-heads, or a run that "
    "includes the site",
    "r2": "the PDFF estimates do not follow this site's MRI-PDFF: adapt on labelled subjects across the PDFF range",
    "mae": "the PDFF estimates are off: adapt on labelled subjects across the PDFF range",
    "abs_bias": "the PDFF estimates are shifted at this site: adapt on labelled subjects (the offset is refitted)",
    "definite_error": "more definite calls are wrong than certified: adapt on more labelled subjects, or certify at "
    "the site's own level ([runtime.exam] definite_error)",
}


def remedy(metric: str) -> str:
    """What a failed criterion means at a site, and what data or step would fix it."""
    return REMEDIES.get(metric, "label more local subjects and adapt again")


def judge(metrics: dict[str, float | None], criteria: AcceptanceCriteria) -> list[Finding]:
    """Every bound against its metric; a metric the site's data cannot give (None) fails its bound."""
    findings = [
        Finding(k, f">= {b:g}", metrics.get(k), metrics.get(k) is not None and metrics[k] >= b)
        for k, b in criteria.minimum.items()
    ]
    findings += [
        Finding(k, f"<= {b:g}", metrics.get(k), metrics.get(k) is not None and metrics[k] <= b)
        for k, b in criteria.maximum.items()
    ]
    return findings


def binomial_tail(wrong: int, calls: int, level: float) -> float:
    """P(at least ``wrong`` wrong of ``calls``) when each is wrong with probability ``level``."""
    return sum(math.comb(calls, k) * level**k * (1 - level) ** (calls - k) for k in range(wrong, calls + 1))


def definite_finding(wrong: int, calls: int, level: float) -> Finding:
    """The definite calls' error against the level the bundle certified: failed only when so many wrong calls
    would happen by chance less than 5 % of the time (a handful of calls cannot show a small excess)."""
    value = wrong / calls if calls else None
    passed = calls > 0 and binomial_tail(wrong, calls, level) >= CHANCE
    return Finding("definite_error", f"<= {level:g} (beyond chance)", value, passed)
