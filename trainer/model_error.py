"""What a model knows about its own error, learnt from a run's out-of-fold predictions: the p_fatty calibrator (Platt),
the class sets and the PDFF interval the exam states. ("Calibration" alone means the int8 calibration of calibration/.)

Each subject in a cross-validated run has one prediction from the fold model that never saw it, so these are
honest stand-ins for bedside outputs. From them the run learns:
- a Platt calibrator (logistic regression on logit(p_fatty), plus the PDFF estimate when the run has both
  outputs, so the calibrated call listens to both and they contradict each other less often);
- a split-conformal 90 % interval for PDFF in log(1 + PDFF) space (errors grow with the fat fraction);
- how often the call and the PDFF disagree about the 5 % line, before and after.
Every "after" figure is cross-fitted: fitted on the other folds, scored on the fold held out.
The bedside applies the calibrator with edge_runtime.pipeline.exam, the same code that scores it here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from edge_runtime.contracts import (
    CertifiedCalls,
    ClassSets,
    ExamCalibration,
    NormalisedPdffInterval,
    PdffInterval,
    PlattCalibrator,
)
from edge_runtime.model.uncertainty import definite_bounds, sigmoid
from edge_runtime.pipeline.exam import calibrated_logit, calibrator_inputs, log1p_interval
from trainer.config import TrainConfig
from trainer.conformal import (
    coverage_by,
    cross_fit_class_sets,
    cross_fit_pdff_interval,
    fit_certified_calls,
    fit_class_sets,
    fit_pdff_interval,
    risk_coverage,
)

MODEL_ERROR_FILE = "model_error.json"
COVERAGE = 0.9
ECE_BINS = 10


def reliability_bins(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> list[tuple[int, float, float]]:
    """Equal-width bins of p that hold subjects: (subjects, mean predicted p, observed share fatty) each.
    The ECE and the reliability diagram both read these, so the figure shows what the number measures."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    return [
        (int((which == b).sum()), float(p[which == b].mean()), float(y[which == b].mean()))
        for b in range(bins)
        if (which == b).any()
    ]


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over equal-width bins: the mean |observed rate - mean p| weighted by each bin's share of subjects."""
    return float(sum(count * abs(rate - mean_p) for count, mean_p, rate in reliability_bins(y, p, bins)) / len(p))


def chance_ece(p: np.ndarray, draws: int = 200, seed: int = 0) -> float:
    """The ECE a perfectly calibrated predictor with these probabilities scores by chance at this sample size:
    outcomes drawn from p itself. An observed ECE near this figure is as good as the cohort can show."""
    rng = np.random.default_rng(seed)
    return float(np.mean([expected_calibration_error((rng.random(len(p)) < p).astype(float), p) for _ in range(draws)]))


def fit_platt(
    p_fatty: np.ndarray, pdff: np.ndarray, y: np.ndarray, inputs: list[str], base: PlattCalibrator | None = None
) -> PlattCalibrator:
    """Logistic regression of the truth on the calibrator's inputs (weakly regularised: C = 100).

    With a ``base`` calibrator only its slope and intercept are refitted (logistic recalibration): the direction it
    learned from many subjects is kept and a few new ones move its operating point without reordering anyone. A
    slope that is not positive would reverse the base's ranking, so the base is kept as it is.

    Args:
        p_fatty: raw out-of-fold p_fatty per subject.
        pdff: out-of-fold PDFF estimate per subject (ignored unless "pdff" is an input).
        y: 1 for fatty subjects, 0 otherwise.
        inputs: the design columns (see edge_runtime.pipeline.exam.calibrator_inputs); a base brings its own.
        base: a calibrator fitted elsewhere, to recalibrate rather than replace.
    """
    if base is not None:
        x = calibrated_logit(base, p_fatty, pdff)[:, None]
        model = LogisticRegression(C=100.0, max_iter=1000).fit(x, y)
        slope, shift = float(model.coef_[0][0]), float(model.intercept_[0])
        slope, shift = (slope, shift) if slope > 0 else (1.0, 0.0)
        return PlattCalibrator(inputs=base.inputs, coef=[slope * c for c in base.coef],
                               intercept=slope * base.intercept + shift, subjects=len(y))  # fmt: skip
    x = calibrator_inputs(p_fatty, pdff, inputs)
    model = LogisticRegression(C=100.0, max_iter=1000).fit(x, y)
    return PlattCalibrator(
        inputs=inputs, coef=[float(c) for c in model.coef_[0]], intercept=float(model.intercept_[0]), subjects=len(y)
    )


def conformal_halfwidth(truth: np.ndarray, predicted: np.ndarray, coverage: float) -> float:
    """Split-conformal half-width in log1p space: the ceil((n+1) coverage)-th smallest absolute residual."""
    residuals = np.sort(np.abs(np.log1p(np.maximum(truth, 0)) - np.log1p(np.maximum(predicted, 0))))
    rank = min(math.ceil((len(residuals) + 1) * coverage), len(residuals))
    return float(residuals[rank - 1])


def _cross_fitted(
    a: dict[str, np.ndarray], inputs: list[str] | None, coverage: float | None, base: PlattCalibrator | None
) -> dict[str, np.ndarray]:
    """Per subject, calibrated p and PDFF interval from calibrators fitted on the other folds only."""
    out = {"p": np.full(len(a["y"]), np.nan), "lo": np.full(len(a["y"]), np.nan), "hi": np.full(len(a["y"]), np.nan)}
    for fold in np.unique(a["fold"]):
        test, train = a["fold"] == fold, a["fold"] != fold
        if inputs is not None and len(np.unique(a["y"][train])) == 2:
            platt = fit_platt(a["p_fatty"][train], a["pdff_pred"][train], a["y"][train], inputs, base)
            out["p"][test] = sigmoid(calibrated_logit(platt, a["p_fatty"][test], a["pdff_pred"][test]))
        if coverage is not None:
            width = conformal_halfwidth(a["pdff"][train], a["pdff_pred"][train], coverage)
            bounds = np.array([log1p_interval(v, width) for v in a["pdff_pred"][test]])
            out["lo"][test], out["hi"][test] = bounds[:, 0], bounds[:, 1]
    return out


def _arrays(rows: list[dict[str, Any]], fatty_pdff: float) -> dict[str, np.ndarray]:
    """The out-of-fold columns the calibration reads: the ensemble's answer and spread when the run has one (the
    bundle's heads are that ensemble), else the fold head's with no spread."""
    a = {key: np.array([r[key] for r in rows], dtype=np.float64) for key in ("pdff", "fold")}
    for key, ensemble in (("p_fatty", "p_fatty_ensemble"), ("pdff_pred", "pdff_ensemble")):
        source = ensemble if ensemble in rows[0] else key
        if source in rows[0]:
            a[key] = np.array([r[source] for r in rows], dtype=np.float64)
    spread = [r.get("log_pdff_spread", 0.0) for r in rows]
    a["log_pdff_spread"] = np.array(spread, dtype=np.float64)
    a["y"] = (a["pdff"] >= fatty_pdff).astype(np.float64)
    return a


def _discordance(call_fatty: np.ndarray, a: dict[str, np.ndarray], fatty_pdff: float, bounds=None) -> float:
    """Share of subjects whose call and PDFF estimate sit on opposite sides of the line (beyond its interval
    when bounds are given)."""
    if bounds is None:
        return float(np.mean(call_fatty != (a["pdff_pred"] >= fatty_pdff)))
    lo, hi = bounds
    return float(np.mean((call_fatty & (hi < fatty_pdff)) | (~call_fatty & (lo >= fatty_pdff))))


def _accuracy(call_fatty: np.ndarray, a: dict[str, np.ndarray]) -> float:
    return float(np.mean(call_fatty == (a["y"] > 0.5)))


def measure(
    rows: list[dict[str, Any]],
    config: TrainConfig,
    interval_coverage: float = COVERAGE,
    base: PlattCalibrator | None = None,
) -> tuple[ExamCalibration, dict[str, Any]]:
    """Fit the exam calibration on every subject, and measure it cross-fitted; returns (calibration, figures).

    Args:
        rows: the run's out-of-fold predictions, one per subject.
        config: the run's configuration (its PDFF line and class-set coverage).
        interval_coverage: the PDFF intervals' coverage (a few subjects certify less than the run's 90 %).
        base: a p_fatty calibrator to recalibrate (slope and intercept only) instead of fitting a new one.
    """
    line = config.fatty_threshold
    a = _arrays(rows, line)
    both = "p_fatty" in a and "pdff_pred" in a
    inputs = (["logit_p_fatty", "pdff"] if both else ["logit_p_fatty"]) if "p_fatty" in a else None
    has_pdff = "pdff_pred" in a
    if not has_pdff:
        a["pdff_pred"] = np.zeros_like(a["pdff"])
    crossed = _cross_fitted(a, inputs, interval_coverage if has_pdff else None, base)
    figures: dict[str, Any] = {"subjects": len(rows), "fatty_pdff": line}
    platt = interval = sets = normalised = definite = None
    vendors = [r["vendor"] for r in rows]
    if inputs is not None and len(np.unique(a["y"])) == 2:
        platt = fit_platt(a["p_fatty"], a["pdff_pred"], a["y"], inputs, base)
        platt.ece_before = expected_calibration_error(a["y"], a["p_fatty"])
        platt.ece_after = expected_calibration_error(a["y"], crossed["p"])
        figures.update(_call_figures(a, crossed, line, both))
        figures["ece_chance"] = chance_ece(crossed["p"])
        sets = _class_sets(a, platt, inputs, config.class_coverage, vendors, base)
        fatty = a["y"] > 0.5
        definite = fit_certified_calls(crossed["p"], fatty, a["fold"], config.definite_error)
        figures["risk_coverage"] = risk_coverage(crossed["p"], a["y"] > 0.5)
    if has_pdff:
        inside = (crossed["lo"] <= a["pdff"]) & (a["pdff"] <= crossed["hi"])
        interval = PdffInterval(
            coverage=interval_coverage,
            halfwidth=conformal_halfwidth(a["pdff"], a["pdff_pred"], interval_coverage),
            subjects=len(rows),
            cv_coverage=float(inside.mean()),
        )
        normalised = _normalised_interval(a, vendors, interval_coverage)
    calibration = ExamCalibration(
        p_fatty=platt,
        pdff_interval=interval,
        class_sets=sets,
        definite=definite,
        pdff_normalised=normalised,
        fatty_pdff=line,
        discordance=figures.get("discordance", {}),
    )
    return calibration, figures


def _class_sets(
    a: dict[str, np.ndarray],
    platt: PlattCalibrator,
    inputs: list[str],
    coverage: float,
    vendors: list[str],
    base: PlattCalibrator | None,
) -> ClassSets:
    """The declared threshold from every subject, and its cross-fitted coverage, definite share and accuracy."""

    def calibrated(fit: np.ndarray, apply: np.ndarray) -> np.ndarray:
        model = fit_platt(a["p_fatty"][fit], a["pdff_pred"][fit], a["y"][fit], inputs, base)
        return sigmoid(calibrated_logit(model, a["p_fatty"][apply], a["pdff_pred"][apply]))

    fatty = a["y"] > 0.5
    sets = fit_class_sets(sigmoid(calibrated_logit(platt, a["p_fatty"], a["pdff_pred"])), fatty, coverage)
    covered, single, crossed_p = cross_fit_class_sets(calibrated, a["fold"], fatty, coverage)
    right = (crossed_p >= 0.5) == fatty
    return sets.model_copy(
        update={
            "cv": coverage_by(covered, vendors, a["pdff"]),
            "cv_definite_share": float(single.mean()),
            "cv_definite_accuracy": float(right[single].mean()) if single.any() else None,
        }
    )


def _normalised_interval(a: dict[str, np.ndarray], vendors: list[str], coverage: float) -> NormalisedPdffInterval:
    """The patient-specific PDFF interval from every subject, and its cross-fitted coverage and width."""
    log_truth, log_estimate = np.log1p(np.maximum(a["pdff"], 0)), np.log1p(np.maximum(a["pdff_pred"], 0))
    spread = a["log_pdff_spread"]
    spec = fit_pdff_interval(log_truth, log_estimate, spread, coverage)
    bounds = cross_fit_pdff_interval(log_truth, log_estimate, spread, a["fold"], coverage)
    covered = (bounds[:, 0] <= a["pdff"]) & (a["pdff"] <= bounds[:, 1])
    cv = coverage_by(covered, vendors, a["pdff"])
    return spec.model_copy(update={"cv": cv, "cv_median_width": float(np.median(bounds[:, 1] - bounds[:, 0]))})


def _call_figures(a: dict[str, np.ndarray], crossed: dict[str, np.ndarray], line: float, both: bool) -> dict:
    """Accuracy and call/PDFF discordance of the raw call, the calibrated call and the PDFF-only call."""
    raw, calibrated = a["p_fatty"] >= 0.5, crossed["p"] >= 0.5
    figures: dict[str, Any] = {
        "accuracy": {"raw_p_fatty": _accuracy(raw, a), "calibrated_p_fatty": _accuracy(calibrated, a)},
        "probabilities": {"y": a["y"].tolist(), "raw": a["p_fatty"].tolist(), "calibrated": crossed["p"].tolist()},
    }
    if both:
        figures["accuracy"]["pdff_alone"] = _accuracy(a["pdff_pred"] >= line, a)
        figures["discordance"] = {
            "raw_call_vs_pdff": _discordance(raw, a, line),
            "calibrated_call_vs_pdff": _discordance(calibrated, a, line),
            "calibrated_call_vs_pdff_interval": _discordance(calibrated, a, line, (crossed["lo"], crossed["hi"])),
        }
    return figures


def write_model_error(out_dir: Path, rows: list[dict[str, Any]], config: TrainConfig) -> ExamCalibration:
    """Write model_error.json (read by export), its Markdown and the reliability diagram into the run."""
    from trainer.plots import reliability_plot, risk_coverage_plot

    calibration, figures = measure(rows, config)
    record = {"calibration": calibration.model_dump(mode="json"), "figures": figures}
    (out_dir / MODEL_ERROR_FILE).write_text(json.dumps(record, indent=2))
    (out_dir / "model_error.md").write_text(markdown(calibration, figures))
    if "probabilities" in figures:
        reliability_plot(out_dir / "reliability.png", figures["probabilities"], ECE_BINS)
    if calibration.class_sets is not None:
        sets = calibration.class_sets
        point = (sets.cv_definite_share, sets.cv_definite_accuracy or 0.0)
        risk_coverage_plot(out_dir / "risk_coverage.png", figures["risk_coverage"], point)
    return calibration


def load_model_error(run_dir: Path) -> ExamCalibration:
    """The run's exam calibration (written by trainer train); a RunError when the run has none."""
    from trainer.runs import RunError

    path = run_dir / MODEL_ERROR_FILE
    if not path.exists():
        raise RunError(f"{path} is missing: {run_dir} is not a complete training run")
    return ExamCalibration.model_validate(json.loads(path.read_text())["calibration"])


def markdown(calibration: ExamCalibration, figures: dict[str, Any]) -> str:
    lines = ["# The model's error (out-of-fold predictions, cross-fitted)", ""]
    platt = calibration.p_fatty
    if platt is not None:
        lines += [
            f"- p_fatty calibrator: Platt on {', '.join(platt.inputs)}; {platt.subjects} subjects.",
            f"- expected calibration error ({ECE_BINS} bins): raw {platt.ece_before:.3f}, "
            f"calibrated (cross-fitted) {platt.ece_after:.3f}; a perfectly calibrated predictor scores "
            f"{figures['ece_chance']:.3f} by chance at this size. Diagram: `reliability.png`.",
        ]
        acc = figures["accuracy"]
        lines.append("- accuracy: " + ", ".join(f"{k.replace('_', ' ')} {v:.1%}" for k, v in acc.items()))
    for key, share in calibration.discordance.items():
        lines.append(f"- discordance, {key.replace('_', ' ')}: {share:.1%} of subjects")
    interval = calibration.pdff_interval
    if interval is not None:
        lines.append(
            f"- PDFF {interval.coverage:.0%} interval: half-width {interval.halfwidth:.3f} in log(1+PDFF); "
            f"cross-fitted coverage {interval.cv_coverage:.1%} of {interval.subjects} subjects (one width for all)."
        )
    return "\n".join([*lines, *_model_error_lines(calibration), ""])


def _coverage_line(what: str, cv: Any) -> str:
    vendors = ", ".join(f"{k} {v:.1%}" for k, v in cv.by_vendor.items())
    bands = ", ".join(f"{k} % {v:.1%}" for k, v in cv.by_band.items())
    return f"  - {what}: {cv.overall:.1%} of {cv.subjects} subjects; by vendor {vendors}; by PDFF band {bands}"


def _model_error_lines(calibration: ExamCalibration) -> list[str]:
    """The class sets' and the patient-specific PDFF interval's figures, cross-fitted."""
    lines = []
    sets = calibration.class_sets
    if sets is not None:
        low, high = definite_bounds(sets.threshold)
        lines += [
            "",
            f"## Class sets at {sets.coverage:.0%} coverage ({sets.method})",
            "",
            f"- threshold {sets.threshold:.3f}: a definite call needs p_fatty >= {high:.3f} (fatty) or <= {low:.3f} "
            "(normal); anything between is indeterminate.",
            f"- cross-fitted: {sets.cv_definite_share:.1%} of subjects get a definite call, "
            + (f"{sets.cv_definite_accuracy:.1%} of them right." if sets.cv_definite_accuracy is not None else "none."),
            _coverage_line("coverage of the sets", sets.cv),
            "- risk-coverage (accuracy of definite calls against the share that get one): `risk_coverage.png`.",
        ]
    lines += _definite_lines(calibration.definite)
    normalised = calibration.pdff_normalised
    if normalised is not None:
        a, b = normalised.recalibration
        lines += [
            "",
            f"## PDFF interval at {normalised.coverage:.0%}: width follows the patient",
            "",
            f"- log(1+PDFF) estimate recalibrated as {a:+.3f} + {b:.3f} x estimate; half-width "
            f"{normalised.multiplier:.2f} x (ensemble spread + {normalised.spread_floor:.3f}).",
            f"- cross-fitted median width {normalised.cv_median_width:.1f} pp.",
            _coverage_line("coverage", normalised.cv),
        ]
    return lines


def _definite_lines(definite: CertifiedCalls | None) -> list[str]:
    """What the run certifies about its definite calls, and whether its own cross-fitted subjects bear it out."""
    if definite is None:
        return []
    said = lambda t, side: "not certifiable" if t is None else f"p_fatty {side} {t:.3f}"  # noqa: E731
    errors = ", ".join(f"{k} {'no call' if v is None else f'{v:.1%}'}" for k, v in definite.cv_error.items())
    return [
        "",
        f"## Definite calls: at most {definite.error:.0%} wrong, per class",
        "",
        f"- certified on {definite.subjects} cross-fitted subjects ({definite.method}).",
        f"- fatty when {said(definite.fatty_threshold, '>=')}; normal when {said(definite.normal_threshold, '<=')}.",
        f"- cross-fitted: {definite.cv_definite_share:.1%} of subjects get a definite call; wrong: {errors}.",
    ]
