"""`trainer site-check`: is this bundle ready for this site? The site's labelled subjects go through the bedside
path (trainer.site.bedside); each figure gets a bootstrap CI over subjects and the verdict comes from the
bundle's acceptance criteria (or the site's own). Nothing is written unless the check can be made."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from edge_runtime.contracts import FATTY_PDFF, PDFF_BAND_NAMES, AcceptanceCriteria
from edge_runtime.errors import FattyLiverError
from edge_runtime.model.bundle import Bundle, load_bundle
from edge_runtime.model.interpreter import ALL_CORES
from edge_runtime.model.uncertainty import pdff_band
from edge_runtime.scanners.profiles import load_profiles
from edge_runtime.validation.verdict import judge
from trainer.dataset import Cohort, read_cohort
from trainer.metrics import bootstrap_ci, classification_metrics, regression_metrics
from trainer.plots import bland_altman_plot, roc_plot
from trainer.site.bedside import SubjectAnswer, answer_cohort, arrays

N_BOOT = 1000
REPORTED = (
    "auc", "recall", "specificity", "balanced_accuracy", "r2", "mae", "bias", "abs_bias",
    "interval_coverage", "guard_share", "view_agreement", "definite_share", "definite_accuracy",
)  # fmt: skip


class SiteCheckError(FattyLiverError):
    """The acceptance test cannot be made on this input (the message says why); nothing was written."""


def site_metrics(columns: dict[str, np.ndarray]) -> dict[str, float | None]:
    """Every acceptance figure from the subjects' columns (trainer.site.bedside.arrays)."""
    pdff, p, est = columns["pdff"], columns["p_fatty"], columns["pdff_pred"]
    truth = pdff >= FATTY_PDFF
    c = classification_metrics(pdff, p, 0.5, FATTY_PDFF)
    recall = c["recall"] if truth.any() else None
    specificity = c["specificity"]
    r = regression_metrics(pdff, est)
    bias = float(np.mean(est - pdff))
    definite = columns["definite"]
    called_right = (p >= 0.5) == truth
    return {
        "auc": c["auc"],
        "recall": recall,
        "specificity": specificity,
        "balanced_accuracy": (recall + specificity) / 2 if recall is not None and specificity is not None else None,
        "r2": r["r2"],
        "mae": r["mae"],
        "bias": bias,
        "abs_bias": abs(bias),
        "interval_coverage": float(columns["covers"].mean()),
        "guard_share": float(columns["guard"].mean()),
        "view_agreement": float(columns["views_right"].mean()),
        "definite_share": float(definite.mean()),
        "definite_accuracy": float(called_right[definite].mean()) if definite.any() else None,
    }


def with_intervals(columns: dict[str, np.ndarray], seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """The figures and their percentile 95 % CIs from resampling subjects."""
    n = len(columns["pdff"])
    point = site_metrics(columns)
    ci = bootstrap_ci(lambda idx: site_metrics({k: v[idx] for k, v in columns.items()}), n, N_BOOT, seed)
    return point, {k: ci.get(k) for k in point}


def per_group(answers: list[SubjectAnswer], key, order: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Subjects, definite share, definite calls right, interval coverage, MAE, views filed right and guard flags per
    vendor or PDFF band: a site whose failures gather in one group (the sickest livers, one console) sees which. The
    groups follow ``order`` (PDFF bands from normal to severe), else sort by name."""
    out = {}
    present = {key(a) for a in answers}
    for value in [v for v in order if v in present] if order else sorted(present):
        chosen = [a for a in answers if key(a) == value]
        definite = [a for a in chosen if a.definite]
        out[value] = {
            "subjects": len(chosen),
            "definite_share": len(definite) / len(chosen),
            "definite_right": (
                float(np.mean([(a.class_set[0] == "fatty") == (a.pdff >= FATTY_PDFF) for a in definite]))
                if definite
                else None
            ),
            "interval_coverage": float(np.mean([a.interval_covers for a in chosen])),
            "mae": float(np.mean([abs(a.pdff_estimate - a.pdff) for a in chosen])),
            "view_agreement": float(np.mean([a.views_right for a in chosen])),
            "guard_share": float(np.mean([a.guard_share for a in chosen])),
        }
    return out


def load_criteria(bundle: Bundle, criteria_file: str | Path | None) -> AcceptanceCriteria:
    if criteria_file is not None:
        try:
            return AcceptanceCriteria.model_validate_json(Path(criteria_file).read_text())
        except (OSError, ValueError) as exc:
            raise SiteCheckError(f"{criteria_file}: not acceptance criteria ({exc})") from exc
    if bundle.meta.acceptance is None:
        raise SiteCheckError(f"{bundle.root}: the bundle carries no acceptance criteria; give --criteria FILE")
    return bundle.meta.acceptance


def read_site_cohort(manifest: str | Path, bundle: Bundle, profiles: str | None, minimum: int) -> Cohort:
    """The site's subjects, cropped by their scanner profiles and harmonised as the bundle was trained; every
    subject needs MRI-PDFF and there must be enough of them for a verdict.

    Args:
        manifest: the site's manifest.
        bundle: the bundle checked (its harmonisation).
        profiles: a profiles file for the site's consoles.
        minimum: the fewest subjects the criteria accept.
    """
    cohort = read_cohort(manifest, load_profiles(profiles), harmonisation=bundle.harmonisation)
    unlabelled = [s.subject_id for s in cohort.subjects if s.pdff is None]
    if unlabelled:
        shown = ", ".join(unlabelled[:5]) + (" ..." if len(unlabelled) > 5 else "")
        raise SiteCheckError(
            f"{manifest}: the acceptance test needs MRI-PDFF for every subject; {len(unlabelled)} have none ({shown})"
        )
    if len(cohort.subjects) < minimum:
        raise SiteCheckError(
            f"{manifest}: {len(cohort.subjects)} labelled subjects; the acceptance criteria need at least {minimum}"
        )
    return cohort


def site_check(
    bundle_dir: str | Path, manifest: str | Path, out_dir: str | Path, profiles: str | None = None,
    criteria_file: str | Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run the acceptance test; writes site_check.json, site_check.md, roc.png and bland_altman.png.

    Args:
        bundle_dir: the bundle checked.
        manifest: the site's labelled subjects.
        out_dir: where the report goes (written only when the check can be made).
        profiles: a profiles file for the site's consoles.
        criteria_file: acceptance criteria JSON instead of the bundle's own.
    """
    bundle = load_bundle(bundle_dir, num_threads=ALL_CORES)
    criteria = load_criteria(bundle, criteria_file)
    cohort = read_site_cohort(manifest, bundle, profiles, criteria.min_subjects)
    answers = answer_cohort(bundle, cohort, lambda it: tqdm(it, desc="bedside path", unit="subject"))
    columns = arrays(answers)
    metrics, ci = with_intervals(columns)
    findings = judge(metrics, criteria)
    unknown = sorted({a.scanner for a in answers} - set(bundle.meta.scanners))  # stated, not judged (below)
    result = {
        "bundle": {"path": str(bundle_dir), "name": bundle.name, "version": bundle.version, "sha": bundle.sha},
        "manifest": str(manifest),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "subjects": len(answers),
        "pass": all(f.passed for f in findings),
        "metrics": metrics,
        "ci95": ci,
        "criteria": criteria.model_dump(),
        "findings": [asdict(f) for f in findings],
        "unknown_scanners": unknown,
        "per_vendor": per_group(answers, lambda a: a.vendor),
        "per_band": per_group(answers, lambda a: pdff_band(a.pdff), PDFF_BAND_NAMES),
        "subjects_detail": [asdict(a) for a in answers],
    }
    write_outputs(Path(out_dir), result, columns)
    return result


def write_outputs(out: Path, result: dict[str, Any], columns: dict[str, np.ndarray]) -> None:
    from trainer.site.report import markdown

    out.mkdir(parents=True, exist_ok=True)
    (out / "site_check.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "site_check.md").write_text(markdown(result))
    roc_plot(out / "roc.png", columns["pdff"], columns["p_fatty"], FATTY_PDFF, title="ROC at this site")
    bland_altman_plot(out / "bland_altman.png", columns["pdff"], columns["pdff_pred"])
