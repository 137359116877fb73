"""Run reports: predictions per subject, pooled and per-fold metrics with CIs, plots, JSON and Markdown."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.contracts import P_FATTY_THRESHOLD, PDFF_BANDS
from edge_runtime.model.uncertainty import combine_members
from trainer.config import TrainConfig
from trainer.crossval import FoldOutcome
from trainer.dataset import Cohort
from trainer.metrics import (
    CLASSIFICATION,
    REGRESSION,
    bootstrap_ci,
    classification_metrics,
    confusion,
    mean_sd,
    regression_metrics,
)
from trainer.paper import comparison_table, paper_line


def collect_predictions(cohort: Cohort, outcomes: list[FoldOutcome]) -> list[dict[str, Any]]:
    by_id = {s.subject_id: s for s in cohort.subjects}
    rows = []
    for outcome in outcomes:
        for i, sid in enumerate(outcome.test_ids):
            record = by_id[sid]
            row: dict[str, Any] = {
                "subject_id": sid,
                "fold": outcome.fold,
                "vendor": record.vendor,
                "pdff": record.pdff,
            }
            for name, values in outcome.predictions.items():
                row[name if name == "p_fatty" else "pdff_pred"] = float(values[i])
            row |= _ensemble_columns(outcome, i)
            rows.append(row)
    return sorted(rows, key=lambda r: r["subject_id"])


def _ensemble_columns(outcome: FoldOutcome, i: int) -> dict[str, float]:
    """The fold's ensemble on test subject i (edge_runtime.model.uncertainty.combine_members): its answer and spread."""
    if len(outcome.members) < 2:
        return {}
    p = [m["p_fatty"][i] for m in outcome.members] if "p_fatty" in outcome.members[0] else [0.5] * len(outcome.members)
    pdff = [m["pdff"][i] for m in outcome.members] if "pdff" in outcome.members[0] else [0.0] * len(outcome.members)
    summary = combine_members(p, pdff)
    columns = {}
    if "p_fatty" in outcome.members[0]:
        columns |= {"p_fatty_ensemble": summary.p_fatty, "logit_spread": summary.logit_spread}
    if "pdff" in outcome.members[0]:
        columns |= {"pdff_ensemble": summary.pdff, "log_pdff_spread": summary.log_pdff_spread}
    return columns


def write_predictions(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _arrays(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    out = {"pdff": np.array([r["pdff"] for r in rows], dtype=np.float64)}
    for key in ("p_fatty", "pdff_pred"):
        if key in rows[0]:
            out[key] = np.array([r[key] for r in rows], dtype=np.float64)
    return out


def score_rows(rows: list[dict[str, Any]], fatty_threshold: float) -> dict[str, float | None]:
    """All metrics the predictions allow. With only a PDFF output, classification uses PDFF >= threshold."""
    a = _arrays(rows)
    metrics: dict[str, float | None] = {}
    if "p_fatty" in a:
        metrics.update(classification_metrics(a["pdff"], a["p_fatty"], P_FATTY_THRESHOLD, fatty_threshold))
    elif "pdff_pred" in a:
        metrics.update(classification_metrics(a["pdff"], a["pdff_pred"], fatty_threshold, fatty_threshold))
    if "pdff_pred" in a:
        metrics.update(regression_metrics(a["pdff"], a["pdff_pred"]))
    return metrics


def summarise(rows: list[dict[str, Any]], config: TrainConfig) -> dict[str, Any]:
    pooled = score_rows(rows, config.fatty_threshold)
    folds = sorted({r["fold"] for r in rows})
    per_fold = [score_rows([r for r in rows if r["fold"] == k], config.fatty_threshold) for k in folds]

    def resampled(idx: np.ndarray) -> dict[str, float | None]:
        return score_rows([rows[i] for i in idx], config.fatty_threshold)

    ci = bootstrap_ci(resampled, len(rows), config.bootstrap, config.seed)
    a = _arrays(rows)
    score = a.get("p_fatty", a.get("pdff_pred"))
    cut = P_FATTY_THRESHOLD if "p_fatty" in a else config.fatty_threshold
    return {
        "n_subjects": len(rows),
        "pooled": pooled,
        "ci95": ci,
        "per_fold": per_fold,
        "fold_mean_sd": mean_sd(per_fold),
        "confusion": confusion(a["pdff"], score, cut, config.fatty_threshold),
        "by_vendor": {
            v: score_rows([r for r in rows if r["vendor"] == v], config.fatty_threshold)
            for v in sorted({r["vendor"] for r in rows})
        },
        "by_band": by_band(rows, config.fatty_threshold),
    }


def by_band(rows: list[dict[str, Any]], fatty_threshold: float) -> dict[str, dict[str, float | None]]:
    """The metrics of each true PDFF band's subjects (contracts.PDFF_BANDS), with their count: within a band the
    AUC is defined only when the band straddles the threshold, so accuracy and MAE are what every band states."""
    out = {}
    for name, low, high in PDFF_BANDS:
        members = [r for r in rows if low <= r["pdff"] < high]
        if members:
            out[name] = {"n": float(len(members)), **score_rows(members, fatty_threshold)}
    return out


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f} %" if pct else f"{value:.3f}"


PERCENT = {"accuracy", "precision", "recall", "specificity", "f1"}


def metric_cell(summary: dict[str, Any], key: str) -> str:
    """One table cell: the pooled value and its 95 % CI (percentages for the PERCENT metrics), 'n/a' if absent."""
    value, ci = summary["pooled"].get(key), summary["ci95"].get(key)
    if value is None:
        return "n/a"
    pct = key in PERCENT
    scale, digits = (100, 1) if pct else (1, 2)
    text = f"{value * scale:.1f} %" if pct else f"{value:.3f}"
    if ci:
        text += f" [{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"
    return text


def markdown(summary: dict[str, Any], config: TrainConfig, title: str) -> str:
    lines = [
        f"# {title}",
        "",
        f"views **{config.views}**, task **{config.task}**, weights `{config.weights}`, augment `{config.augment}`, "
        f"appearance `{config.appearance}` ({len(config.variant_set)} variants per image, each one backbone "
        f"pass), harmonisation `{config.harmonisation}`, epochs {config.n_epochs}, "
        f"{'fine-tuned ' + str(config.finetune) if config.finetune else 'frozen backbone'}, "
        f"pooling {config.pooling}, {config.folds}-fold subject-level CV, seed {config.seed}; "
        f"{summary['n_subjects']} subjects.",
        "",
        "| metric | pooled over all subjects | 95 % CI (bootstrap over subjects) | mean over folds +/- SD |",
        "| --- | --- | --- | --- |",
    ]
    for key in (*CLASSIFICATION, *REGRESSION):
        if key not in summary["pooled"]:
            continue
        pct = key in PERCENT
        ci = summary["ci95"].get(key)
        ms = summary["fold_mean_sd"].get(key)
        ci_text = f"{_fmt(ci[0], pct)} - {_fmt(ci[1], pct)}" if ci else "n/a"
        ms_text = f"{_fmt(ms[0], pct)} +/- {_fmt(ms[1], pct)}" if ms else "n/a"
        lines.append(f"| {key} | {_fmt(summary['pooled'][key], pct)} | {ci_text} | {ms_text} |")
    (tn, fp), (fn, tp) = summary["confusion"]
    lines += [
        "",
        f"Confusion matrix (rows: truth, {config.threshold_text} = fatty):",
        "",
        "| | predicted normal | predicted fatty |",
        "| --- | --- | --- |",
        f"| normal | {tn} | {fp} |",
        f"| fatty | {fn} | {tp} |",
        "",
        "By vendor: "
        + "; ".join(
            f"{v}: " + ", ".join(f"{k} {_fmt(m.get(k))}" for k in ("auc", "r2") if m.get(k) is not None)
            for v, m in summary["by_vendor"].items()
        ),
        "",
        "## Comparison with the paper",
        "",
        "Pooled: every subject predicted once, by the fold that held it out, scored together. Mean over folds: "
        "each fold scored on its own test subjects, then averaged (how the paper reports its AUC).",
        "",
        *comparison_table(summary),
        "",
        paper_line(),
        "",
    ]
    return "\n".join(lines)


def write_report(out_dir: Path, rows: list[dict[str, Any]], config: TrainConfig, extra: dict[str, Any]) -> dict:
    """predictions.csv, report.json/.md and the plots; returns report.json's content.

    Args:
        out_dir: the run directory.
        rows: one prediction row per subject.
        config: the run's configuration.
        extra: added to report.json (timings).
    """
    from trainer import plots

    write_predictions(out_dir / "predictions.csv", rows)
    summary = summarise(rows, config)
    report = {"config": config.model_dump(), **summary, **extra}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "report.md").write_text(markdown(summary, config, f"Cross-validation report: {out_dir.name}"))
    plots.run_plots(out_dir, _arrays(rows), config)
    return report
