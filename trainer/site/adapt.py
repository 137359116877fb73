"""`trainer site-adapt`: a bundle adapted to a new scanner or site from a handful of its own exams, shipped as a new
bundle with its parent, its local evidence and its before/after figures in bundle.json's `site` section.

What is refitted, and why (docs/DESIGN.md, "A new scanner at a site"):
- the model-error statements on the local labelled subjects: the parent's Platt calibrator recalibrated (a new
  slope and intercept: the operating point moves, the parent's ranking stays), the certified definite calls, the
  class sets, and the PDFF interval's offset and scale (its shape stays the parent's: trainer.site.interval);
- with `--run`, the view gate on the run's training frames plus the local ones (labelled and unlabelled, weighted to
  count as much), and the guard centred on each console whose local frames the parent measures out of distribution
  (from its own mean and spread), so the site's images are in distribution while a foreign look is still flagged;
- with `--retrain-heads`, the heads too (trainer.site.head_refit; opt-in: recalibration did better);
- the scanner list, so the bedside accepts the site's consoles.
The encoder is the parent's, byte for byte. Every `after` figure is nested: local subjects are split into folds,
the adaptation (heads included) is fitted without each fold and scored on it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from calibration.split import subject_hash
from edge_runtime.config import ExamPolicy
from edge_runtime.contracts import VIEWS, CertifiedCalls, ExamCalibration, SiteAdaptation
from edge_runtime.errors import FattyLiverError
from edge_runtime.model.bundle import Bundle, load_bundle
from edge_runtime.model.gate import GATE_FILE
from edge_runtime.model.interpreter import ALL_CORES
from edge_runtime.model.uncertainty import Members, fewest_calls
from edge_runtime.pipeline.exam import ExamModel
from edge_runtime.scanners.profiles import load_profiles, profiles_mapping
from edge_runtime.validation.verdict import judge
from trainer.config import TrainConfig
from trainer.dataset import Cohort, read_cohort
from trainer.model_error import measure
from trainer.runs import Run, open_run
from trainer.site.bedside import RawAnswer, SubjectAnswer, arrays, exam_model, run_cohort, state
from trainer.site.check import site_metrics
from trainer.site.gate_refit import GateRefit, gate_refit, run_split
from trainer.site.head_refit import HeadRefit, converted, head_refit
from trainer.site.interval import site_interval
from trainer.site.writer import bump, hashed_ids, head_files, write_adapted

MIN_LABELLED = 8  # and at least 3 of each class: fewer cannot fit a calibrator and score it on held-out subjects
MIN_PER_CLASS = 3
LOCAL_FOLDS = 4


class SiteAdaptError(FattyLiverError):
    """The adaptation cannot be made on this input (the message says why); nothing was written."""


@dataclass
class Local:
    """The site's subjects and what the parent bundle gives for them."""

    labelled: Cohort | None
    unlabelled: Cohort | None
    raw: list[RawAnswer]  # labelled subjects, in cohort order
    raw_unlabelled: list[RawAnswer]


def attainable_coverage(subjects: int, requested: float) -> float:
    """The highest class-set coverage n calibration subjects can certify (n / (n + 1)), at most the one asked for."""
    return min(requested, math.floor(100 * subjects / (subjects + 1)) / 100)


def local_folds(fatty: np.ndarray, folds: int = LOCAL_FOLDS) -> np.ndarray:
    """Fold of each local subject, each class dealt round the folds so every training part holds both."""
    out = np.empty(len(fatty), dtype=int)
    for group in (np.flatnonzero(fatty), np.flatnonzero(~fatty)):
        out[group] = np.arange(len(group)) % folds
    return out


def calibration_rows(cohort: Cohort, members: list[Members], folds: np.ndarray) -> list[dict[str, Any]]:
    """The local subjects as the rows the run's exam calibration is fitted on (trainer.model_error)."""
    return [
        {
            "pdff": float(s.pdff),
            "fold": int(k),
            "vendor": s.vendor,
            "p_fatty_ensemble": m.p_fatty,
            "pdff_ensemble": m.pdff,
            "log_pdff_spread": m.log_pdff_spread,
        }
        for s, m, k in zip(cohort.subjects, members, folds, strict=True)
    ]


def fold_members(local: Local, heads: HeadRefit | None, folds: np.ndarray, outer: int | None) -> list[Members]:
    """Each labelled subject's ensemble answer from heads that saw neither it nor the outer fold's subjects: the
    parent's heads (they saw no local subject), or heads retrained without those folds.

    Args:
        local: the site's subjects and the parent's answers.
        heads: the head retraining, or None to keep the parent's heads.
        folds: each labelled subject's local fold.
        outer: the fold being scored (nested), or None for the final calibration.
    """
    if heads is None:
        return [r.members for r in local.raw]
    out = []
    for i, fold in enumerate(int(f) for f in folds):
        excluded = frozenset({fold} if outer is None or fold == outer else {fold, outer})
        out.append(heads.members_without(folds, excluded)[i])
    return out


def fit_calibration(bundle: Bundle, rows: list[dict[str, Any]]) -> tuple[ExamModel, ExamCalibration]:
    """The exam calibration refitted on these local subjects, as the bedside will apply it. The parent's p_fatty
    calibrator is recalibrated (slope and intercept) rather than refitted: a dozen subjects can move its operating
    point but cannot be trusted to reorder patients the parent ranks well. The class sets state the highest coverage
    these few subjects certify; the PDFF interval keeps the parent's coverage, its shape from the parent's
    calibration and its offset and scale from the site's residuals (trainer.site.interval)."""
    sets = bundle.meta.exam.class_sets
    stated = bundle.meta.exam.pdff_normalised or bundle.meta.exam.pdff_interval
    folds = [r["fold"] for r in rows]
    inner = len(rows) - max(folds.count(k) for k in set(folds))
    config = TrainConfig(task="both", class_coverage=attainable_coverage(len(rows), sets.coverage if sets else 0.95))
    interval = attainable_coverage(inner, stated.coverage if stated else 0.9)
    calibration, _ = measure(rows, config, interval_coverage=interval, base=bundle.meta.exam.p_fatty)
    parent_interval = bundle.meta.exam.pdff_normalised
    if parent_interval is not None and calibration.pdff_normalised is not None:
        carried, _ = site_interval(parent_interval, rows)
        calibration = calibration.model_copy(update={"pdff_normalised": carried})
    return ExamModel.from_bundle(calibration, bundle.threshold, ExamPolicy()), calibration


def check_inputs(bundle: Bundle, run: Run | None, local: list[Cohort]) -> None:
    """A run that did not make this bundle, or local subjects the run trained on, are refused by name."""
    if run is None:
        return
    trained = subject_hash(run_split(run).train)
    if trained != bundle.meta.calibration.train_subject_id_sha256 or run.weights_id != bundle.meta.training.weights_id:
        raise SiteAdaptError(f"{run.path} did not make {bundle.root}: their training subjects or weights differ")
    run_ids = {s for fold in run.folds for s in fold}
    run_images = set(run.digests.values())
    for cohort in local:
        ids = sorted(set(cohort.ids) & run_ids)
        images = sorted(k[0] for k, d in cohort.digests.items() if d in run_images)
        if ids or images:
            named = ", ".join((ids or images)[:5])
            raise SiteAdaptError(f"local subjects the run trained on ({'ids' if ids else 'images'}): {named}")


def read_local(
    bundle: Bundle, manifest: str | None, unlabelled: str | None, profiles: str | None
) -> tuple[Cohort | None, Cohort | None]:
    """The labelled local subjects (every one with MRI-PDFF, enough of each class) and any unlabelled exams.

    Args:
        bundle: the parent bundle (its harmonisation and PDFF line).
        manifest: the labelled local manifest, or None.
        unlabelled: a manifest of local exams without MRI-PDFF, or None.
        profiles: a profiles file for the site's consoles.
    """
    known = load_profiles(profiles)
    labelled = read_cohort(manifest, known, harmonisation=bundle.harmonisation) if manifest else None
    extra = read_cohort(unlabelled, known, harmonisation=bundle.harmonisation) if unlabelled else None
    if labelled is not None:
        missing = [s.subject_id for s in labelled.subjects if s.pdff is None]
        if missing:
            raise SiteAdaptError(
                f"{manifest}: {len(missing)} subjects have no MRI-PDFF ({', '.join(missing[:5])}); give unlabelled "
                "exams with --unlabelled"
            )
        fatty = labelled.pdff() >= bundle.meta.exam.fatty_pdff
        if len(fatty) < MIN_LABELLED or min(fatty.sum(), (~fatty).sum()) < MIN_PER_CLASS:
            raise SiteAdaptError(
                f"{manifest}: {len(fatty)} labelled subjects ({int(fatty.sum())} fatty); adaptation needs at least "
                f"{MIN_LABELLED}, with {MIN_PER_CLASS} of each class"
            )
    if labelled is None and extra is None:
        raise SiteAdaptError("nothing to adapt on: give --manifest (labelled) and/or --unlabelled")
    return labelled, extra


def nested_answers(
    bundle: Bundle, local: Local, refit: GateRefit | None, heads: HeadRefit | None
) -> list[SubjectAnswer]:
    """Each labelled local subject scored by an adaptation (heads, calibration, gate and guard) fitted without its
    fold.

    Args:
        bundle: the parent bundle.
        local: the site's subjects and the parent's answers.
        refit: the view gate and guard refitter (None without --run).
        heads: the head retraining (None without --run).
    """
    cohort = local.labelled
    folds = local_folds(cohort.pdff() >= bundle.meta.exam.fatty_pdff)
    unlabelled_ids = local.unlabelled.ids if local.unlabelled else []
    answers: list[SubjectAnswer | None] = [None] * len(folds)
    for k in tqdm(sorted(set(folds)), desc="nested folds", unit="fold"):
        members = fold_members(local, heads, folds, k)
        rows = calibration_rows(cohort, members, folds)
        train = [i for i, f in enumerate(folds) if f != k]
        model, _ = fit_calibration(bundle, [rows[i] for i in train])
        gate = refit.fit([cohort.ids[i] for i in train] + unlabelled_ids) if refit else None
        for i in np.flatnonzero(folds == k):
            sid, raw = cohort.ids[i], replace(local.raw[i], members=members[i])
            if gate is not None:
                raw = replace(raw, guard_flags=tuple(refit.flags(gate, sid, raw)))
                raw = replace(raw, views_filed=refit.views_filed(gate, sid, raw))
            answers[i] = state(model, cohort.subjects[i], raw)
    return answers


def unlabelled_guard_share(local: Local, refit: GateRefit) -> float:
    """The refitted guard's flags on unlabelled exams, each scored by a guard fitted without its fold."""
    ids = local.unlabelled.ids
    folds = np.arange(len(ids)) % LOCAL_FOLDS
    flagged = []
    for k in sorted(set(folds)):
        gate = refit.fit([s for s, f in zip(ids, folds, strict=True) if f != k])
        for i in np.flatnonzero(folds == k):
            flagged += refit.flags(gate, ids[i], local.raw_unlabelled[i])
    return float(np.mean(flagged))


def parent_guard_share(local: Local) -> float:
    raws = local.raw or local.raw_unlabelled
    return float(np.mean([f for r in raws for f in r.guard_flags]))


def adaptation_note(n: int, definite: CertifiedCalls | None, refit: bool, guard_after: float | None) -> str:
    """What the adapted bundle can be trusted for, in words a physicist signs.

    Args:
        n: labelled local subjects.
        definite: the definite calls the local calibration certifies (None without labels).
        refit: whether the view gate and guard were refitted.
        guard_after: the refitted guard's nested flag share on local frames.
    """
    if n == 0:
        said = (
            "Only the guard was adapted: without MRI-PDFF nothing shows whether the calls and the PDFF carry over "
            "to this scanner. Do not act on its calls until `trainer site-check` passes on labelled local subjects."
        )
    else:
        said = f"Calibrated on {n} labelled local subjects; " + certified_words(definite)
    if not refit:
        said += " The guard is the parent's (no --run): it may still flag this site's frames."
    elif guard_after is not None and guard_after > 0.05:
        said += f" The refitted guard still flags {guard_after:.0%} of held-out local frames."
    return said


def certified_words(definite: CertifiedCalls | None) -> str:
    """Which definite calls the local calibration certifies, and how many subjects would certify the rest."""
    if definite is None:
        return "no definite calls are certified."
    classes = [c for c, t in (("fatty", definite.fatty_threshold), ("normal", definite.normal_threshold)) if t]
    if len(classes) == 2:
        return f"definite calls of both classes are certified at {definite.error:.0%} wrong."
    certified = f"only definite {classes[0]} calls are" if classes else "no definite calls are"
    return (
        f"{certified} certified at {definite.error:.0%} wrong: a class needs at least {fewest_calls(definite.error)} "
        "right calls beyond its threshold, so label more local subjects to certify the rest."
    )


def site_adapt(
    bundle_dir: str | Path,
    out_dir: str | Path,
    manifest: str | None = None,
    run_dir: str | None = None,
    unlabelled: str | None = None,
    profiles: str | None = None,
    site: str | None = None,
    retrain_heads: bool = False,
) -> dict[str, Any]:
    """Adapt a bundle to a site; writes the new bundle and returns its before/after figures and verdict.

    Args:
        bundle_dir: the parent bundle.
        out_dir: the adapted bundle's folder (absent or empty).
        manifest: labelled local subjects (8 or more, 3 of each class), or None with ``unlabelled``.
        run_dir: the run the parent was exported from (retrains the heads, refits the view gate and guard).
        unlabelled: local exams without MRI-PDFF.
        profiles: a profiles file for the site's consoles.
        site: the site's name in the bundle (default: the manifest's folder).
        retrain_heads: retrain the heads on the run's subjects plus the labelled local ones (needs ``run_dir``).
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise SiteAdaptError(f"{out}: exists and is not empty; give a new folder for the adapted bundle")
    parent = load_bundle(bundle_dir, num_threads=ALL_CORES)
    run = open_run(run_dir) if run_dir else None
    labelled, extra = read_local(parent, manifest, unlabelled, profiles)
    check_inputs(parent, run, [c for c in (labelled, extra) if c is not None])
    if labelled is None and run is None:
        raise SiteAdaptError("with unlabelled exams only, adaptation refits the guard, which needs --run")
    bar = lambda it: tqdm(it, desc="local exams through the parent bundle", unit="subject")  # noqa: E731
    local = Local(labelled, extra, run_cohort(parent, labelled, bar) if labelled else [],
                  run_cohort(parent, extra, bar) if extra else [])  # fmt: skip
    sets = [(c, r) for c, r in ((labelled, local.raw), (extra, local.raw_unlabelled)) if c is not None]
    refit = gate_refit(parent, run, sets) if run else None
    heads = site_heads(run, refit, local) if retrain_heads and run and refit and labelled else None
    return finish(parent, out, local, (refit, heads), site or Path(manifest or unlabelled).parent.name)


def site_heads(run: Run, refit: GateRefit, local: Local) -> HeadRefit | None:
    """The head retraining over the run's subjects (features the gate refit already holds) and the labelled local
    ones; None for a run whose heads do not read the shared encoder's features (a fine-tuned backbone)."""
    if run.config.finetune is not None:
        return None
    source = [s for s in refit.cohort.subjects if s.subject_id in set(refit.source_ids)]
    order = {s.subject_id: s for s in source}
    source_cohort = Cohort([order[s] for s in refit.source_ids], {}, refit.cohort.harmonisation)
    source_features = {v: np.stack([refit.features[v][s] for s in refit.source_ids]) for v in VIEWS}
    local_features = {v: np.stack([r.features[v] for r in local.raw]) for v in VIEWS}
    return head_refit(run, source_cohort, source_features, local.labelled, local_features)


def labelled_updates(
    parent: Bundle, local: Local, heads: HeadRefit | None, refit: GateRefit | None
) -> tuple[dict[str, Any], dict[str, bytes], dict[str, Any]]:
    """With labels: the before and nested after figures, the final heads and calibration on every local subject.
    Returns the figures, the files written over the parent's, and the bundle.json fields that change.

    Args:
        parent: the parent bundle.
        local: the site's subjects and the parent's answers for them.
        heads: the head retraining (None: the parent's heads stay).
        refit: the view gate and guard refitter (None without --run).
    """
    parent_model = exam_model(parent)
    pairs = zip(local.labelled.subjects, local.raw, strict=True)
    before = site_metrics(arrays([state(parent_model, s, r) for s, r in pairs]))
    after = site_metrics(arrays(nested_answers(parent, local, refit, heads)))
    folds = local_folds(local.labelled.pdff() >= parent.meta.exam.fatty_pdff)
    members = fold_members(local, heads, folds, None)
    _, calibration = fit_calibration(parent, calibration_rows(local.labelled, members, folds))
    files, updates = {}, {"exam": calibration}
    if heads is not None:
        final = heads.ensemble(np.arange(heads.n_local), heads.config.seed)
        probe = {v: heads.features[v][heads.n_source :, 0] for v in VIEWS}
        description = (
            f"float32, trained on the bundle's int8 encoder features of the run's {heads.n_source} training "
            f"subjects and {heads.n_local} site subjects; an ensemble of {len(final)} heads"
        )
        files, head_fields = head_files(parent, converted(final, probe), description)
        updates |= head_fields
    return {"before": before, "after": after}, files, updates


def finish(
    parent: Bundle, out: Path, local: Local, refits: tuple[GateRefit | None, HeadRefit | None], site: str
) -> dict[str, Any]:
    """Before/after figures, the final refit on every local subject, and the new bundle.

    Args:
        parent: the parent bundle.
        out: the adapted bundle's folder.
        local: the site's subjects and the parent's raw answers for them.
        refits: the view gate and guard refitter and the head retraining (each None when not made).
        site: the site's name.
    """
    refit, heads = refits
    cohorts = [c for c in (local.labelled, local.unlabelled) if c is not None]
    updates: dict[str, Any] = {"version": bump(parent.version), "created": dt.datetime.now(dt.UTC)}
    local_profiles = {k: v for c in cohorts for k, v in profiles_mapping(c.profiles).items()}
    updates["scanners"] = {**parent.meta.scanners, **local_profiles}
    adapted, findings, definite, replaced = ["scanners"], [], None, {}
    if local.labelled is not None:
        figures, replaced, changed = labelled_updates(parent, local, heads, refit)
        before, after = figures["before"], figures["after"]
        updates |= changed
        definite = changed["exam"].definite
        adapted += ["heads", "model_error"] if heads is not None else ["model_error"]
        findings = judge(after, parent.meta.acceptance) if parent.meta.acceptance else []
    else:
        before = {"guard_share": parent_guard_share(local)}
        after = {"guard_share": unlabelled_guard_share(local, refit)}
    if refit is not None:
        replaced[GATE_FILE] = refit.fit([s for c in cohorts for s in c.ids]).to_bytes()
        updates["guard"], updates["view_gate"] = refit.spec, refit.view_spec
        updates["files"] = parent.meta.files.model_copy(update={"gate": GATE_FILE})
        adapted += ["view_gate", "guard"]
    n = len(local.labelled.ids) if local.labelled else 0
    updates["site"] = SiteAdaptation(
        site=site,
        parent=f"{parent.name} {parent.version}",
        parent_sha256=hashlib.sha256((parent.root / "bundle.json").read_bytes()).hexdigest(),
        date=dt.datetime.now(dt.UTC).replace(microsecond=0),
        labelled_subjects=n,
        unlabelled_subjects=len(local.unlabelled.ids) if local.unlabelled else 0,
        subject_id_sha256=hashed_ids([s for c in cohorts for s in c.ids]),
        adapted=adapted,
        before=before,
        after=after,
        criteria=parent.meta.acceptance if n else None,
        passed=all(f.passed for f in findings) if findings else None,
        note=adaptation_note(n, definite, refit is not None, after.get("guard_share")),
    )
    meta = write_adapted(parent, out, updates, replaced)
    return {"bundle": str(out), "meta": meta, "before": before, "after": after, "findings": findings}
