"""The view gate refitted and the guard centred for a site, so the site's views are recognised and its appearance is
in distribution, while an appearance neither training nor the site has shown is still flagged.

- The view head is refitted on the run's training frames plus the site's, through the bundle's encoder, the site's
  frames weighted to count as much as the run's (a dozen subjects would otherwise be drowned by ninety).
- The guard keeps the parent's spread, components and thresholds, and gains a centre for each console of the site,
  whatever profile name it carries (edge_runtime.model.gate.ScannerCentre): a new console, or a known one with
  another B-mode generator, shifts every frame by about the same offset, and refitting the whole guard on a few
  local frames would widen it for every console (DESIGN.md, "A new scanner at a site"). Whether a console is off
  training cannot be told from a dozen subjects when it is only a little off, so every console with enough local
  frames is centred, widened no more than its own held-out frames need.
Every frame is encoded once (views, other frames, severe-attenuation looks); each refit (one per nested fold, then
the final one) is a logistic regression and a few means."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.stats import t as student_t
from tqdm.auto import tqdm

from calibration.split import ExportSplit
from edge_runtime.contracts import GUARD_LIMIT, VIEWS, GuardSpec, ViewGateSpec
from edge_runtime.model.bundle import Bundle
from edge_runtime.model.gate import CENTRE_MAX_WIDENING, Gate, GatePolicy, ScannerCentre, speckle_texture
from edge_runtime.model.uncertainty import conformal_quantile
from trainer import gate_features
from trainer.dataset import Cohort, read_cohort
from trainer.export.gate import SEVERE_LOOKS, fit_view_gate, frame_rows
from trainer.gate_features import GateFeatures
from trainer.runs import Run
from trainer.site.bedside import RawAnswer

LOCAL_PREFIX = "site:"  # local ids inside the combined cohort (a site's ids may repeat the run's)
CENTRE_MIN_FRAMES = 6  # fewer local frames of a view: the console's mean is too noisy to centre the guard on
SITE_WEIGHT_MAX = 10.0  # the most one local frame may count for in the view gate's fit


class BundleEncoders:
    """The bundle's int8 encoder in the form the export's guard fitting calls."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle

    def encode(self, view: str, images: list[np.ndarray]) -> np.ndarray:
        shown = tqdm(images, desc=f"frames through the bundle ({view} encoder)", unit="frame", leave=False)
        return np.stack([self.bundle.encode(view, image) for image in shown])


def run_split(run: Run) -> ExportSplit:
    """Who trained the run's bundle (split.json): the frames the parent's guard was fitted on."""
    split = json.loads((run.path / "split.json").read_text())
    return ExportSplit(split["train"], split.get("calibration", []), split.get("fidelity", []))


def combined_cohort(source: Cohort, local: list[Cohort]) -> Cohort:
    """The run's training images and the site's in one cohort; local ids carry LOCAL_PREFIX."""
    subjects, images, others = list(source.subjects), dict(source.images), dict(source.others)
    for cohort in local:
        subjects += [replace(s, subject_id=LOCAL_PREFIX + s.subject_id) for s in cohort.subjects]
        images |= {(LOCAL_PREFIX + sid, v): image for (sid, v), image in cohort.images.items()}
        others |= {LOCAL_PREFIX + sid: frames for sid, frames in cohort.others.items()}
    return Cohort(subjects, images, source.harmonisation, others=others)


@dataclass
class GateRefit:
    """Refits the view gate, and centres the parent's guard, on the run's training frames plus chosen local ones."""

    bundle: Bundle
    cohort: Cohort
    source_ids: list[str]
    features: dict[str, dict[str, np.ndarray]]  # view -> subject id (combined cohort) -> features
    shots: tuple[np.ndarray, np.ndarray, np.ndarray]  # every frame the view head learns from: features, class, subject
    spec: GuardSpec | None = field(default=None, init=False)  # the last fit's bundle.json parts
    view_spec: ViewGateSpec | None = field(default=None, init=False)
    textures: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, init=False)  # speckle, computed once

    def fit(self, local_ids: list[str]) -> Gate:
        """The gate a bundle adapted on these local subjects carries."""
        fitted = self.source_ids + [LOCAL_PREFIX + s for s in local_ids]
        rows, labels, groups = self.shots
        chosen = np.isin(groups, fitted)
        weights = site_weights(groups[chosen])
        head, self.view_spec = fit_view_gate(rows[chosen], labels[chosen], list(groups[chosen]), weights)
        parent, spec = self.bundle.gate, self.bundle.meta.guard
        if parent is None or not parent.guards or spec is None:
            self.spec = None
            return Gate(head, None)
        centres = dict(parent.centres or {}) | self.new_centres(local_ids)
        self.spec = spec.model_copy(update={"scanner_centres": {k: c.frames for k, c in centres.items()}})
        return Gate(head, parent.guards, parent.speckle, centres or None)

    def new_centres(self, local_ids: list[str]) -> dict[str, ScannerCentre]:
        """A centre for each console of these local subjects with at least CENTRE_MIN_FRAMES subjects."""
        by_scanner: dict[str, list[str]] = {}
        for sid in (LOCAL_PREFIX + s for s in local_ids):
            by_scanner.setdefault(self.cohort.scanner(sid, VIEWS[0]), []).append(sid)
        enough = {k: ids for k, ids in by_scanner.items() if len(ids) >= CENTRE_MIN_FRAMES}
        return {k: replace(self.centre_of(ids), widening=self.widening(k, ids)) for k, ids in enough.items()}

    def centre_of(self, subject_ids: list[str]) -> ScannerCentre:
        """The mean features and speckle texture of these subjects' view frames (one console's)."""
        features, speckle = {}, {}
        for v in VIEWS:
            features[v] = np.mean([self.features[v][s] for s in subject_ids], axis=0).astype(np.float32)
            speckle[v] = np.mean([self.texture(s, v) for s in subject_ids], axis=0).astype(np.float32)
        return ScannerCentre(features, speckle, len(subject_ids))

    def widening(self, scanner: str, subject_ids: list[str]) -> float:
        """The console's own spread (ScannerCentre.widening): each local subject's frames scored from the mean of
        the others', then widening_for those held-out scores."""
        parent = self.bundle.gate
        scores = []
        for held in subject_ids:
            centre = self.centre_of([s for s in subject_ids if s != held])
            probe = Gate(None, parent.guards, parent.speckle, {scanner: centre})
            for v in VIEWS:
                scores.append(probe.guard_score(v, self.cohort.image(held, v), self.features[v][held], scanner)[0])
        return widening_for(scores, self.bundle.meta.guard.false_alarm_target, len(subject_ids))

    def texture(self, subject_id: str, view: str) -> np.ndarray:
        key = (subject_id, view)
        if key not in self.textures:
            self.textures[key] = speckle_texture(self.cohort.image(subject_id, view))
        return self.textures[key]

    def flags(self, gate: Gate, subject_id: str, raw: RawAnswer) -> list[bool]:
        """Per view, whether this guard flags a local subject's frame."""
        sid = LOCAL_PREFIX + subject_id
        flagged = []
        for v in VIEWS:
            scored = gate.guard_score(v, self.cohort.image(sid, v), raw.features[v], self.cohort.scanner(sid, v))
            flagged.append(scored is not None and scored[0] > GUARD_LIMIT)
        return flagged

    def views_filed(self, gate: Gate, subject_id: str, raw: RawAnswer) -> tuple[str | None, ...]:
        """Where this gate files a local subject's two view frames ('auto', at its own floor)."""
        policy = GatePolicy(gate, self.view_spec, "model")
        images = [self.cohort.image(LOCAL_PREFIX + subject_id, v) for v in VIEWS]
        return tuple(policy.route("auto", im, raw.features[v]).view for v, im in zip(VIEWS, images, strict=True))


def widening_for(held_out_scores: list[float], false_alarm_target: float, subjects: int) -> float:
    """How far a console's centre widens the guard, from its local frames' held-out guard scores: their conformal
    quantile at the guard's false-alarm target when the count states it, else the normal prediction bound of their
    logs at that target (Student's t on ``subjects`` - 1 degrees of freedom: a subject's two views are not two
    independent witnesses). Between 1 and CENTRE_MAX_WIDENING. A dozen subjects (24 frames) cannot state 2 %: the
    most allowed lets a new look on the site's own console through, and their largest score alone flags too many of
    the site's own frames (DESIGN.md, "A new scanner at a site")."""
    quantile = conformal_quantile(held_out_scores, 1.0 - false_alarm_target)
    if not np.isfinite(quantile):
        logs = np.log(np.maximum(held_out_scores, 1e-6))
        spread = float(logs.std(ddof=1)) * math.sqrt(1.0 + 1.0 / subjects)
        quantile = math.exp(float(logs.mean()) + float(student_t.ppf(1.0 - false_alarm_target, subjects - 1)) * spread)
    return float(np.clip(quantile, 1.0, CENTRE_MAX_WIDENING))


def site_weights(groups: np.ndarray) -> np.ndarray:
    """Each frame's weight in the view gate's fit: the run's frames 1, the site's such that the site's frames together
    weigh as much as the run's, at most SITE_WEIGHT_MAX each."""
    local = np.char.startswith(groups.astype(str), LOCAL_PREFIX)
    weights = np.ones(len(groups))
    if local.any() and (~local).any():
        weights[local] = min(float((~local).sum()) / float(local.sum()), SITE_WEIGHT_MAX)
    return weights


def source_features(bundle: Bundle, run: Run, source: Cohort, source_ids: list[str]) -> GateFeatures:
    """The run's training frames through the bundle's encoder: kept by its export (trainer.gate_features), or
    encoded here, and kept, when the export predates keeping them.

    Args:
        bundle: the parent bundle (its encoder's hash names the kept file).
        run: the run the bundle was exported from.
        source: the run's cohort, limited to the gate's subjects.
        source_ids: the train and calibration subjects, in the order the features are kept.
    """
    path = gate_features.path_for(run.path, bundle.meta.sha256[bundle.meta.files.encoder[VIEWS[0]]])
    kept = gate_features.load(path, source_ids, SEVERE_LOOKS)
    if kept is not None:
        return kept
    said = "no gate features kept for this bundle's encoder, subjects and looks"
    tqdm.write(f"{run.path}: {said}; encoding the run's training frames")
    views = {}
    for v in VIEWS:
        shown = tqdm(source_ids, desc=f"training {v} views through the bundle", unit="subject")
        views[v] = np.stack([bundle.encode(v, source.image(sid, v)) for sid in shown])
    rows, labels, groups = frame_rows(source, BundleEncoders(bundle), source_ids, views)
    kept = GateFeatures(source_ids, views, rows, labels, np.array(groups), SEVERE_LOOKS)
    gate_features.save(kept, path)  # the next adaptation of this bundle reads them
    return kept


def gate_refit(bundle: Bundle, run: Run, local: list[tuple[Cohort, list[RawAnswer]]]) -> GateRefit:
    """The run's training frames (kept by export, else encoded) beside the local features already computed; only
    the local other frames and severe-attenuation looks are encoded here."""
    split = run_split(run)
    source_ids = split.train + split.calibration
    source = read_cohort(run.manifest, run.profiles, harmonisation=bundle.harmonisation)
    source = Cohort(
        [s for s in source.subjects if s.subject_id in set(source_ids)], source.images, bundle.harmonisation,
        others=source.others,
    )  # fmt: skip
    kept = source_features(bundle, run, source, source_ids)
    features = {v: dict(zip(source_ids, kept.views[v], strict=True)) for v in VIEWS}
    local_ids = [LOCAL_PREFIX + s for c, _ in local for s in c.ids]
    for cohort, raws in local:
        for sid, raw in zip(cohort.ids, raws, strict=True):
            for v in VIEWS:
                features[v][LOCAL_PREFIX + sid] = raw.features[v]
    cohort = combined_cohort(source, [c for c, _ in local])
    local_views = {v: np.stack([features[v][s] for s in local_ids]) for v in VIEWS}
    rows, labels, groups = frame_rows(cohort, BundleEncoders(bundle), local_ids, local_views)
    shots = (
        np.concatenate([kept.rows, rows]),
        np.concatenate([kept.labels, labels]),
        np.concatenate([kept.groups, np.array(groups)]),
    )
    return GateRefit(bundle, cohort, source_ids, features, shots)
