"""site_check.md: the verdict first, then every criterion against the site's figure with its CI, then the figures
per vendor and per PDFF band."""

from __future__ import annotations

from typing import Any

from edge_runtime.validation.verdict import remedy

GROUP_COLUMNS = (
    "subjects", "definite", "definite right", "interval covers", "MAE pp", "views filed right", "guard flags",
)  # fmt: skip


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _ci(interval: list[float] | None) -> str:
    return "n/a" if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def markdown(result: dict[str, Any]) -> str:
    b = result["bundle"]
    verdict = "PASS" if result["pass"] else "FAIL"
    lines = [
        f"# Site acceptance test: {verdict}",
        "",
        f"Bundle `{b['name']}` {b['version']} (sha {b['sha']}) on {result['subjects']} labelled subjects of "
        f"`{result['manifest']}`, {result['date']}. Every figure comes from the bedside path (int8 encoder, gate, "
        "guard, ensemble, exam calibration); 95 % CIs resample subjects.",
        "",
        f"Criteria: {result['criteria']['derived_from']}.",
        "",
        "| criterion | bound | site | 95 % CI | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in result["findings"]:
        ci = _ci(result["ci95"].get(f["metric"]))
        lines.append(
            f"| {f['metric']} | {f['bound']} | {_num(f['value'])} | {ci} | {'pass' if f['passed'] else 'FAIL'} |"
        )
    failed = [f for f in result["findings"] if not f["passed"]]
    if failed:
        lines += ["", "What each failure means, and what would fix it:", ""]
        lines += [f"- **{f['metric']}**: {remedy(f['metric'])}." for f in failed]
    if result["unknown_scanners"]:
        lines += ["", f"Scanners the bundle was not trained on: {', '.join(result['unknown_scanners'])}. The bedside "
                  "refuses their frames (`unseen_scanner`) until this test passes and the site sets "
                  "`[runtime.scanners] allow_unseen`."]  # fmt: skip
    lines += ["", "| figure | site | 95 % CI |", "| --- | --- | --- |"]
    lines += [f"| {k} | {_num(v)} | {_ci(result['ci95'].get(k))} |" for k, v in result["metrics"].items()]
    for title, key in (("vendor", "per_vendor"), ("PDFF band", "per_band")):
        lines += ["", f"| {title} | " + " | ".join(GROUP_COLUMNS) + " |", "| --- " * (len(GROUP_COLUMNS) + 1) + "|"]
        for name, g in result[key].items():
            right = "n/a" if g["definite_right"] is None else f"{g['definite_right']:.0%}"
            lines.append(
                f"| {name} | {g['subjects']} | {g['definite_share']:.0%} | {right} | {g['interval_coverage']:.0%} | "
                f"{g['mae']:.2f} | {g['view_agreement']:.0%} | {g['guard_share']:.0%} |"
            )
    lines += ["", "![ROC](roc.png) ![Bland-Altman](bland_altman.png)", ""]
    return "\n".join(lines)
