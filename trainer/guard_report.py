"""How much of a cohort a bundle's out-of-distribution guard flags: shown next to `trainer evaluate`'s metrics,
so a site sees a shift (new scanner, preset or population) before it trusts the numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.contracts import GUARD_LIMIT, VIEWS
from edge_runtime.errors import FattyLiverError
from edge_runtime.model.bundle import load_bundle
from edge_runtime.model.interpreter import ALL_CORES
from trainer.dataset import Cohort

SHIFT_FACTOR = 3  # flagged share above this many times the guard's design rate: say so


def guard_report(bundle_dir: str | Path, cohort: Cohort) -> dict[str, Any]:
    """Share of the cohort's view frames beyond the bundle's guard (any part, as at the bedside)."""
    bundle = load_bundle(bundle_dir, num_threads=ALL_CORES)
    if bundle.gate is None or not bundle.gate.guards or bundle.meta.guard is None:
        raise FattyLiverError(f"{bundle_dir}: the bundle has no out-of-distribution guard (exported before guards?)")
    per_view = {}
    for view in VIEWS:
        scores = []
        for sid in cohort.ids:
            image = cohort.image(sid, view)
            scanner = cohort.scanner(sid, view)
            scores.append(bundle.gate.guard_score(view, image, bundle.encode(view, image), scanner)[0])
        per_view[view] = float(np.mean(np.array(scores) > GUARD_LIMIT))
    share = float(np.mean(list(per_view.values())))
    target = bundle.meta.guard.false_alarm_target
    return {
        "bundle": str(bundle_dir),
        "frames": len(cohort.ids) * len(VIEWS),
        "flagged_share": share,
        "per_view": per_view,
        "false_alarm_target": target,
        "shifted": share > SHIFT_FACTOR * target,
    }
