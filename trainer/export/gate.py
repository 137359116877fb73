"""Export step: fit the bundle's view gate and out-of-distribution guard on the bundle's own encoder features.

Both are fitted on what the bedside will compute (the exported, possibly int8, encoder's features), so no
float-to-int8 gap sits between how they were fitted and how they are used.

- View gate: logistic regression over ``VIEW_CLASSES`` on standardised, pooled features (``view_features``:
  four quadrant means of the 7x7 map) of the train and calibration subjects' views and their ``view=other``
  rows; subject-level cross-validation gives the confusion matrix and picks the confidence floor (the lowest
  that admits at most 1 % of other frames into pairing and files at most 1 % of view frames under the other
  view).
- Guard: per view, a PCA summary of the same subjects' features and a summary of their speckle texture. Each
  threshold is the (1 - target / 2) quantile of out-of-fold scores (each subject scored by a summary fitted
  without it), so it is set on subjects the summary never saw (trainer.export.guard); the fidelity subjects,
  never used here, report the false-alarm rate of the whole guard (both parts and clipping).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from calibration.fidelity import GateFitReport, GuardFitReport
from calibration.split import ExportSplit
from edge_runtime.contracts import (
    FEATURE_MAP,
    GUARD_LIMIT,
    OTHER_VIEW,
    VIEW_CLASSES,
    VIEWS,
    GuardSpec,
    SpeckleGuardSpec,
    ViewGateSpec,
)
from edge_runtime.model.gate import (
    Gate,
    SpeckleGuard,
    ViewHead,
    has_colour,
    speckle_texture,
    view_features,
)
from edge_runtime.pipeline.preprocess import harmonise
from trainer.dataset import Cohort
from trainer.export.conversion import ConvertedEncoders
from trainer.export.guard import SPECKLE_MIN_SUBJECTS, fit_features, fit_speckle
from trainer.gate_features import GateFeatures

GUARD_FALSE_ALARMS = 0.02  # share of training-like frames the guard flags, by design
OTHER_ADMITTED_MAX = 0.01  # the view gate's floor admits at most this share of other frames (CV)
VIEW_SWAPPED_MAX = 0.01  # ... and files at most this share of view frames under the other view (CV)
VIEW_RECALL_BAR = 0.99  # each view's CV recall for the gate to overrule a frame's named view
FLOORS = np.round(np.arange(0.5, 0.995, 0.01), 2)
GUARD_METHOD = (
    "PCA of standardised features, each PDFF band weighted alike: Mahalanobis distance per component + residual / "
    "training residual"
)
SPECKLE_METHOD = "Mahalanobis distance of the standardised speckle autocorrelations (Ledoit-Wolf covariance)"


SEVERE_LOOKS = (60.0, 120.0)  # grey levels lost at the sector bottom: how a severely fatty liver attenuates
NOISE_FLOOR = 10.0  # grey level of the electronic noise the deep echoes sink into


def attenuated(image: np.ndarray, loss: float, harmonisation: str) -> np.ndarray:
    """A view frame as severe steatosis shows it: echoes fading with depth (the liver attenuates) into the noise
    floor, so the diaphragm and the kidney's lower edge are lost; then harmonised as the bedside would. Teaching
    the view head these keeps the sickest livers from being filed as 'other' (DESIGN.md, "The honest answer")."""
    grey = image.astype(np.float32)
    sector = image.max(axis=2, keepdims=True) > 0
    ramp = loss * np.linspace(0.0, 1.0, image.shape[0], dtype=np.float32)[:, None, None]
    rng = np.random.default_rng(zlib.crc32(image.tobytes()))
    noise = np.abs(rng.normal(NOISE_FLOOR, NOISE_FLOOR / 2, image.shape[:2])).astype(np.float32)[..., None]
    faded = np.where(sector, np.clip(np.maximum(grey - ramp, noise), 1, 255), 0).astype(np.uint8)
    return harmonise(faded, harmonisation)


@dataclass
class GateFit:
    gate: Gate | None
    view_gate: ViewGateSpec | None
    guard: GuardSpec | None
    report: GateFitReport
    features: GateFeatures | None = None  # what the view head and guard were fitted on, kept in the run


def frame_rows(
    cohort: Cohort,
    encoders: ConvertedEncoders,
    ids: list[str],
    views: dict[str, np.ndarray],
    faded: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features, class index and subject of every view and other frame of these subjects that reaches the head
    at the bedside (frames with colour in the box are turned away before it, so it need not learn them).

    Args:
        cohort: the preprocessed images, with the view=other rows.
        encoders: the bundle's encoder (only the other frames still need encoding).
        ids: the subjects, in the order of the rows of ``views``.
        views: view -> (subjects, F) features already computed for the guard.
        faded: view -> the severe looks' features, subject by subject (None: encoded here).
    """
    kept = {sid: [image for image in cohort.others.get(sid, []) if not has_colour(image)] for sid in ids}
    others = [image for sid in ids for image in kept[sid]]
    other_features = iter(encoders.encode(VIEWS[0], others) if others else [])
    faded = faded or {v: encoders.encode(v, severe_images(cohort, ids, v)) for v in VIEWS}
    rows, labels, groups = [], [], []
    for i, sid in enumerate(ids):  # per subject: its views (as shown, and as severe steatosis fades them), others
        shots = [(k, views[v][i]) for k, v in enumerate(VIEWS) if not has_colour(cohort.image(sid, v))]
        shots += [
            (k, faded[v][i * len(SEVERE_LOOKS) + j]) for k, v in enumerate(VIEWS) for j in range(len(SEVERE_LOOKS))
        ]
        shots += [(VIEW_CLASSES.index(OTHER_VIEW), next(other_features)) for _ in kept[sid]]
        rows += [features for _, features in shots]
        labels += [label for label, _ in shots]
        groups += [sid] * len(shots)
    return np.stack(rows), np.array(labels), groups


def severe_images(cohort: Cohort, ids: list[str], view: str) -> list[np.ndarray]:
    """Every subject's view frame at each severe-attenuation look, subject by subject."""
    return [attenuated(cohort.image(s, view), loss, cohort.harmonisation) for s in ids for loss in SEVERE_LOOKS]


VIEW_C = 1.0  # inverse L2 strength of the view head (chosen by subject-level CV: DESIGN.md, "The view gate")


def view_pooling(feature_size: int) -> str:
    """'grid2' when the encoder gives the flatten 7x7 map, else 'none' (the 'avg' encoder is pooled already)."""
    return "grid2" if feature_size == int(np.prod(FEATURE_MAP)) else "none"


def _logistic(
    features: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> tuple[StandardScaler, LogisticRegression]:
    scaler = StandardScaler().fit(features)
    model = LogisticRegression(C=VIEW_C, max_iter=3000, class_weight="balanced")
    return scaler, model.fit(scaler.transform(features), labels, sample_weight=weights)


def _cv_probabilities(
    features: np.ndarray, labels: np.ndarray, groups: list[str], weights: np.ndarray | None = None
) -> np.ndarray:
    folds = GroupKFold(n_splits=min(5, len(set(groups))))
    probs = np.zeros((len(labels), len(VIEW_CLASSES)))
    for fit, held in folds.split(features, labels, groups):
        scaler, model = _logistic(features[fit], labels[fit], None if weights is None else weights[fit])
        probs[np.ix_(held, model.classes_)] = model.predict_proba(scaler.transform(features[held]))
    return probs


def _admitted(probs: np.ndarray, labels: np.ndarray, floor: float) -> float:
    """Share of other frames the gate would pair at this floor (CV)."""
    other = labels == VIEW_CLASSES.index(OTHER_VIEW)
    return float(np.mean((probs[other].argmax(1) < len(VIEWS)) & (probs[other].max(1) >= floor)))


def _swapped(probs: np.ndarray, labels: np.ndarray, floor: float) -> float:
    """Share of view frames the gate would file under the other view at this floor (CV): a kidney-liver frame
    paired as the liver view puts a wrong image into a pair as surely as an admitted other frame."""
    view = labels < len(VIEWS)
    predicted = probs[view].argmax(1)
    swapped = (predicted < len(VIEWS)) & (predicted != labels[view]) & (probs[view].max(1) >= floor)
    return float(np.mean(swapped))


def choose_floor(probs: np.ndarray, labels: np.ndarray) -> float:
    """The lowest confidence floor at which the CV puts no wrong image into pairs: other frames admitted and
    view frames swapped each at most 1 %; 0.99 when no floor manages both."""
    fine = [
        f
        for f in FLOORS
        if _admitted(probs, labels, f) <= OTHER_ADMITTED_MAX and _swapped(probs, labels, f) <= VIEW_SWAPPED_MAX
    ]
    return float(fine[0]) if fine else float(FLOORS[-1])


def fit_view_gate(
    features: np.ndarray, labels: np.ndarray, groups: list[str], weights: np.ndarray | None = None
) -> tuple[ViewHead, ViewGateSpec]:
    """Pool, cross-validate by subject, choose the floor, then fit on every frame.

    Args:
        features: (N, F) encoder features.
        labels: (N,) index into VIEW_CLASSES.
        groups: each frame's subject.
        weights: each frame's weight in the fit (a site's few frames count as much as the run's many), or None.
    """
    pooling = view_pooling(features.shape[1])
    features = view_features(features, pooling)
    probs = _cv_probabilities(features, labels, groups, weights)
    floor = choose_floor(probs, labels)
    predicted = probs.argmax(1)
    confusion = [[int(np.sum((labels == t) & (predicted == p))) for p in range(3)] for t in range(3)]
    admitted = _admitted(probs, labels, floor)
    recall = {c: float(np.mean(predicted[labels == k] == k)) for k, c in enumerate(VIEW_CLASSES)}
    scaler, model = _logistic(features, labels, weights)
    head = ViewHead(
        scaler.mean_.astype(np.float32),
        scaler.scale_.astype(np.float32),
        model.coef_.T.astype(np.float32),
        model.intercept_.astype(np.float32),
        pooling,
    )
    counts = {c: int(np.sum(labels == k)) for k, c in enumerate(VIEW_CLASSES)}
    meets = min(recall[v] for v in VIEWS) >= VIEW_RECALL_BAR and admitted <= OTHER_ADMITTED_MAX
    spec = ViewGateSpec(
        feature_pooling=pooling,
        confidence_floor=floor,
        cv_confusion=confusion,
        cv_recall=recall,
        cv_other_admitted=admitted,
        cv_view_swapped=_swapped(probs, labels, floor),
        frames=counts,
        meets_bar=meets,
    )
    return head, spec


def fit_guard(
    encoders: ConvertedEncoders, cohort: Cohort, split: ExportSplit, looks: FittedLooks
) -> tuple[Gate, GuardSpec, GuardFitReport]:
    """The guard's features and speckle parts, each at half the false-alarm target (so together at most the
    target), and its false alarms on the fidelity subjects as the bedside scores them (clipping included). Each
    subject's frames count as shown and as severe steatosis fades them, and each PDFF band weighs alike in the
    features part, so the sickest livers stay in distribution however few of them the run had (DESIGN.md, "No
    blind spot by severity").

    Args:
        encoders: the bundle's encoder (the fidelity frames still need encoding).
        cohort: the preprocessed images of every subject named in ``split``.
        split: train and calibration subjects fit the guard; fidelity subjects judge it.
        looks: the fitted subjects' frames and features, as shown and faded.
    """
    fitted = split.train + split.calibration
    groups = fitted + [s for s in fitted for _ in SEVERE_LOOKS]
    pdff_of = dict(zip(cohort.ids, cohort.pdff(), strict=True))
    pdff = np.array([pdff_of[s] for s in groups])
    by_band = pdff if np.isfinite(pdff).all() else None  # a subject without MRI-PDFF: every frame counts alike
    guards = {v: fit_features(looks.all_features(v), groups, GUARD_FALSE_ALARMS / 2, by_band) for v in VIEWS}
    speckle = fit_speckle_parts(looks, groups)
    gate = Gate(None, guards, speckle)
    flagged = []
    for view in VIEWS:
        images = [cohort.image(s, view) for s in split.fidelity]
        held = encoders.encode(view, images) if images else []
        flagged += [gate.guard_score(view, image, f)[0] > GUARD_LIMIT for image, f in zip(images, held, strict=True)]
    speckle_spec = None
    if speckle is not None:
        speckle_spec = SpeckleGuardSpec(method=SPECKLE_METHOD, thresholds={v: g.threshold for v, g in speckle.items()})
    spec = GuardSpec(
        method=GUARD_METHOD,
        components=int(guards[VIEWS[0]].components.shape[0]),
        false_alarm_target=GUARD_FALSE_ALARMS,
        thresholds={view: guard.threshold for view, guard in guards.items()},
        held_out_false_alarm=float(np.mean(flagged)) if flagged else None,
        speckle=speckle_spec,
    )
    skipped = None if speckle is not None else f"not fitted: {len(fitted)} subjects ({SPECKLE_MIN_SUBJECTS} needed)"
    return gate, spec, GuardFitReport(fitted_subjects=len(fitted), fidelity_frames=len(flagged), speckle=skipped)


def fit_speckle_parts(looks: FittedLooks, groups: list[str]) -> dict[str, SpeckleGuard] | None:
    """Per view, the speckle part on the fitted frames (the model inputs, as the bedside sees them, and faded); None
    under SPECKLE_MIN_SUBJECTS subjects, where its threshold would false-alarm on new subjects."""
    if len(set(groups)) < SPECKLE_MIN_SUBJECTS:
        return None
    parts = {}
    for view in VIEWS:
        textures = np.stack([speckle_texture(image) for image in looks.all_images(view)])
        parts[view] = fit_speckle(textures, groups, GUARD_FALSE_ALARMS / 2)
    return parts


@dataclass(frozen=True)
class FittedLooks:
    """The fitted subjects' view frames as shown and at each severe look (subject by subject), with features."""

    images: dict[str, list[np.ndarray]]
    features: dict[str, np.ndarray]
    faded_images: dict[str, list[np.ndarray]]
    faded: dict[str, np.ndarray]

    @classmethod
    def of(cls, cohort: Cohort, encoders: ConvertedEncoders, ids: list[str]) -> FittedLooks:
        images = {v: [cohort.image(s, v) for s in ids] for v in VIEWS}
        faded_images = {v: severe_images(cohort, ids, v) for v in VIEWS}
        features = {v: encoders.encode(v, images[v]) for v in VIEWS}
        return cls(images, features, faded_images, {v: encoders.encode(v, faded_images[v]) for v in VIEWS})

    def all_features(self, view: str) -> np.ndarray:
        return np.concatenate([self.features[view], self.faded[view]])

    def all_images(self, view: str) -> list[np.ndarray]:
        return self.images[view] + self.faded_images[view]


def fit_gate(cohort: Cohort, encoders: ConvertedEncoders, split: ExportSplit) -> GateFit:
    """The bundle's gate: a view head when the cohort has other rows on enough subjects, and always a guard.

    Args:
        cohort: the run's preprocessed images, with its view=other rows.
        encoders: the exported encoder(s); the gate works on their features.
        split: train and calibration subjects fit it, fidelity subjects judge it.
    """
    if len(set(encoders.files.values())) != 1:
        return GateFit(None, None, None, GateFitReport(skipped="one encoder per view: no shared features to gate on"))
    fitted = split.train + split.calibration
    looks = FittedLooks.of(cohort, encoders, fitted)  # encoded once, for the guard and the view head
    guarded, guard_spec, guard_report = fit_guard(encoders, cohort, split, looks)
    with_others = [s for s in fitted if cohort.others.get(s)]
    head, view_spec, skipped, kept = None, None, None, None
    views = looks.features
    if len(with_others) >= 2:
        features, labels, groups = frame_rows(cohort, encoders, fitted, views, looks.faded)
        head, view_spec = fit_view_gate(features, labels, groups)
        kept = GateFeatures(fitted, views, features, labels, np.array(groups), SEVERE_LOOKS)
    else:
        skipped = f"not fitted: {len(with_others)} subject(s) have view=other rows (2 needed)"
    report = GateFitReport(guard=guard_report, view_gate=skipped)
    return GateFit(replace(guarded, view_head=head), view_spec, guard_spec, report, kept)
