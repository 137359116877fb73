"""`edge-runtime outcomes`: the reconciliation's verdict and report. The figures (edge_runtime.validation.figures) are
judged against the bundle's acceptance criteria and its certified definite-call error, then written as JSON (for
machines), Markdown (for the committee) and a plot; the verdict is also written beside the audit log, where the
box reads it into its heartbeat, its page and Prometheus."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.contracts import FATTY_PDFF, AcceptanceCriteria, BundleMeta, OutcomesVerdict
from edge_runtime.validation.figures import DEFINITE, Columns, all_figures
from edge_runtime.validation.reconcile import Reconciliation
from edge_runtime.validation.verdict import Finding, definite_finding, judge

UNMEASURABLE = ("view_agreement",)  # needs each frame's true view, which the field does not give
VERDICT_FILE = "outcomes.json"  # beside the audit log: what the box shows


def findings(figures: dict[str, Any], columns: Columns, meta: BundleMeta) -> list[Finding]:
    """The overall figures against the bundle's criteria, and the definite calls against their certified error."""
    criteria = meta.acceptance
    said: list[Finding] = []
    if criteria is not None:
        kept = AcceptanceCriteria(
            min_subjects=criteria.min_subjects,
            minimum={k: v for k, v in criteria.minimum.items() if k not in UNMEASURABLE},
            maximum={k: v for k, v in criteria.maximum.items() if k not in UNMEASURABLE},
            derived_from=criteria.derived_from,
        )
        said += judge(figures["overall"]["value"], kept)
    certified = meta.exam.definite if meta.exam else None
    if certified is not None:
        definite = np.isin(columns.call, DEFINITE)
        wrong = ((columns.call == "fatty") != (columns.pdff >= FATTY_PDFF))[definite]
        said.append(definite_finding(int(wrong.sum()), int(definite.sum()), certified.error))
    return said


def verdict_of(found: list[Finding], exams: int, minimum: int, report: Path) -> OutcomesVerdict:
    """PASS, FAIL or too few reconciled exams to say.

    Args:
        found: every criterion judged on the reconciled exams.
        exams: how many exams were reconciled.
        minimum: the fewest the bundle's criteria need for a verdict.
        report: the Markdown report the page links to.
    """
    failing = [f.metric for f in found if not f.passed]
    verdict = "insufficient" if exams < minimum else ("fail" if failing else "pass")
    return OutcomesVerdict(verdict=verdict, exams=exams, minimum=minimum, failing=failing, created=time.time(),
                           report=str(report))  # fmt: skip


def write_outcomes(
    rec: Reconciliation, meta: BundleMeta, out: Path, audit_dir: Path | None
) -> tuple[OutcomesVerdict, dict[str, Any]]:
    """Figures, findings and verdict, written to ``out`` (outcomes.json, outcomes.md, outcomes.png) and the verdict
    beside the audit log.

    Args:
        rec: the reconciliation.
        meta: the bundle whose criteria judge.
        out: the report folder.
        audit_dir: the audit log's folder (None: the box is not told).
    """
    out.mkdir(parents=True, exist_ok=True)
    columns = Columns.of(rec.matched)
    figures = all_figures(columns)
    found = findings(figures, columns, meta)
    minimum = meta.acceptance.min_subjects if meta.acceptance else 20
    verdict = verdict_of(found, len(columns), minimum, out / "outcomes.md")
    result = {
        "verdict": verdict.model_dump(mode="json"),
        "bundle": f"{meta.name} {meta.version}",
        "figures": figures,
        "findings": [f.__dict__ for f in found],
        "exams_in_audit_log": rec.exams,
        "exams_naming_nobody": rec.unnamed_exams,
        "matched": [{"reference": m.result.where, "gap": m.gap_days, "session": m.exam.session} for m in rec.matched],
        "unmatched": rec.unmatched,
        "refused": rec.refused,
    }
    drawn = len(columns) > 0 and importlib.util.find_spec("matplotlib") is not None
    if len(columns) and not drawn:  # the bedside image holds no plotting library
        result["plot"] = "not drawn: matplotlib is not installed here (pip install 'fatty-liver-edge[site]')"
    (out / "outcomes.json").write_text(json.dumps(result, indent=1))
    (out / "outcomes.md").write_text(markdown(result))
    if drawn:
        plot(columns, out / "outcomes.png")
    if audit_dir is not None:
        (audit_dir / VERDICT_FILE).write_text(verdict.model_dump_json())
    return verdict, result


def _cell(figures: dict[str, Any], key: str) -> str:
    value, ci = figures["value"].get(key), figures["ci95"].get(key)
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else "")


COLUMNS = ("definite_share", "definite_error", "auc", "balanced_accuracy", "bias", "mae", "interval_coverage",
           "guard_share")  # fmt: skip


def _table(groups: dict[str, dict[str, Any]], first: str) -> list[str]:
    lines = [f"| {first} | exams | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for name, figures in groups.items():
        exams = int(figures["value"]["exams"])
        lines.append(f"| {name} | {exams} | " + " | ".join(_cell(figures, k) for k in COLUMNS) + " |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The committee's page: the verdict, each criterion, the figures per scanner and per PDFF band, and every
    result that was not reconciled, by name."""
    v = result["verdict"]
    lines = [f"# Real-world outcomes: {v['verdict'].upper()}", ""]
    lines += [f"Bundle {result['bundle']}; {v['exams']} exams reconciled with MRI-PDFF (a verdict needs "
              f"{v['minimum']}). 95 % CIs resample exams.", ""]  # fmt: skip
    lines += ["| criterion | bound | value | |", "|---|---|---|---|"]
    for f in result["findings"]:
        value = "-" if f["value"] is None else f"{f['value']:.3f}"
        lines.append(f"| {f['metric']} | {f['bound']} | {value} | {'pass' if f['passed'] else 'FAIL'} |")
    shown = f"Plot {result['plot']}." if "plot" in result else "![MRI-PDFF against the estimate](outcomes.png)"
    lines += ["", shown]
    lines += ["", "## Overall", "", *_table({"all": result["figures"]["overall"]}, "")]
    lines += ["", "## Per scanner", "", *_table(result["figures"]["per_scanner"], "scanner")]
    lines += ["", "## Per PDFF band (MRI)", "", *_table(result["figures"]["per_band"], "band")]
    lines += ["", f"## Not reconciled ({len(result['unmatched']) + len(result['refused'])})", ""]
    lines += [f"- {said}" for said in result["unmatched"] + result["refused"]] or ["- none"]
    lines += ["", f"Exams in the audit log: {result['exams_in_audit_log']} "
              f"({result['exams_naming_nobody']} name nobody and cannot be reconciled)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(c: Columns, path: Path) -> Path:
    """The estimate against MRI-PDFF with each interval, coloured by the call."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"fatty": "#d9480f", "normal": "#1c7ed6", "indeterminate": "#868e96", "": "#868e96"}
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    for call, colour in colours.items():
        chosen = c.call == call
        if chosen.any():
            low, high = c.estimate[chosen] - c.low[chosen], c.high[chosen] - c.estimate[chosen]
            ax.errorbar(c.pdff[chosen], c.estimate[chosen], yerr=np.vstack([low, high]), fmt="o", color=colour,
                        alpha=0.8, capsize=2, label=call or "no call")  # fmt: skip
    top = float(np.nanmax(np.r_[c.pdff, c.high, 10.0])) * 1.05
    ax.plot([0, top], [0, top], color="black", lw=0.8)
    ax.axvline(5.0, color="grey", lw=0.6, ls="--")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="MRI-PDFF (%)", ylabel="box estimate (%), with its interval",
           title=f"{len(c)} exams reconciled with MRI-PDFF")  # fmt: skip
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
