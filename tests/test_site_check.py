"""`trainer site-check`: a site's labelled subjects through the bundle's bedside path, every figure with a
bootstrap CI, a verdict from the criteria; bad input is refused by name with nothing written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers import invoke_trainer

from edge_runtime.contracts import PDFF_BAND_NAMES

pytestmark = pytest.mark.slow

FIGURES = {"auc", "recall", "specificity", "balanced_accuracy", "r2", "mae", "bias", "interval_coverage", "guard_share"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six new subjects of the training vendors, a seed the bundle never saw."""
    from phantom.cohort import generate_cohort

    out = tmp_path_factory.mktemp("site")
    generate_cohort(out, 6, seed=4242, prevalence=0.5, with_masks=False)
    return out / "manifest.csv"


def _criteria(path: Path, **fields) -> str:
    body = {"min_subjects": 4, "minimum": {}, "maximum": {}, "derived_from": "the test"} | fields
    path.write_text(json.dumps(body))
    return str(path)


def _check(bundle_dir: Path, manifest: Path, out: Path, *extra: str):
    args = ["--bundle", str(bundle_dir), "--manifest", str(manifest), "--out", str(out)]
    return invoke_trainer("site-check", *args, *extra)


def test_site_check_scores_the_bedside_path_and_passes_when_every_bound_holds(
    bundle_dir: Path, site: Path, tmp_path: Path
) -> None:
    lax = _criteria(tmp_path / "lax.json", minimum={"auc": 0.0}, maximum={"guard_share": 1.0})
    result = _check(bundle_dir, site, tmp_path / "check", "--criteria", lax)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "check" / "site_check.json").read_text())
    assert report["pass"] is True and report["subjects"] == 6 and set(report["metrics"]) >= FIGURES
    assert set(report["ci95"]) == set(report["metrics"]) and report["criteria"]["derived_from"] == "the test"
    assert {"PHILIPS", "GE"} == set(report["per_vendor"]) and report["per_band"]
    for name in ("site_check.md", "roc.png", "bland_altman.png"):
        assert (tmp_path / "check" / name).stat().st_size > 0
    assert "# Site acceptance test: PASS" in (tmp_path / "check" / "site_check.md").read_text()
    detail = report["subjects_detail"][0]
    assert detail["pdff_interval"][0] <= detail["pdff_estimate"] <= detail["pdff_interval"][1]
    _each_group_says_where_its_views_went_and_how_many_frames_the_guard_flagged(
        report, (tmp_path / "check" / "site_check.md").read_text()
    )


def _each_group_says_where_its_views_went_and_how_many_frames_the_guard_flagged(report: dict, page: str) -> None:
    """A site whose failures gather in one band (the sickest livers, say) sees it in that band's row."""
    for key in ("per_vendor", "per_band"):
        groups = report[key].values()
        for figure in ("view_agreement", "guard_share"):
            pooled = sum(g[figure] * g["subjects"] for g in groups) / report["subjects"]
            assert pooled == pytest.approx(report["metrics"][figure]), (key, figure)
    assert list(report["per_band"]) == [b for b in PDFF_BAND_NAMES if b in report["per_band"]]  # normal to severe
    header = "| PDFF band | subjects | definite | definite right | interval covers | MAE pp | views filed right |"
    assert header + " guard flags |" in page


def test_site_check_fails_and_exits_1_when_a_bound_is_missed(bundle_dir: Path, site: Path, tmp_path: Path) -> None:
    strict = _criteria(tmp_path / "strict.json", minimum={"r2": 0.999}, maximum={"mae": 0.001})
    result = _check(bundle_dir, site, tmp_path / "check", "--criteria", strict)
    assert result.exit_code == 1, result.output
    assert "FAIL  r2" in result.output and "FAIL  mae" in result.output
    assert json.loads((tmp_path / "check" / "site_check.json").read_text())["pass"] is False


def test_the_bundle_carries_criteria_derived_from_its_cv(bundle_dir: Path) -> None:
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    acceptance, pooled = meta["acceptance"], meta["cv_metrics"]["pooled"]
    assert acceptance["minimum"]["auc"] == pytest.approx(max(0.7, pooled["auc"] - 0.1), abs=1e-4)
    assert acceptance["maximum"]["guard_share"] == 0.05 and acceptance["min_subjects"] == 20


def _without_labels(manifest: Path, dst: Path) -> Path:
    rows = list(csv.DictReader(manifest.open()))
    for row in rows:
        row["pdff"] = ""
    with dst.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return dst


def test_bad_site_input_is_refused_by_name_and_nothing_is_written(bundle_dir: Path, site: Path, tmp_path: Path) -> None:
    out = tmp_path / "never"
    unlabelled = _without_labels(site, site.parent / "unlabelled.csv")
    said = _check(bundle_dir, unlabelled, out, "--criteria", _criteria(tmp_path / "c.json")).output
    assert "needs MRI-PDFF for every subject; 6 have none" in said
    too_few = _check(bundle_dir, site, out)  # the bundle's own criteria ask for 20 subjects
    assert too_few.exit_code != 0 and "6 labelled subjects; the acceptance criteria need at least 20" in too_few.output
    (tmp_path / "broken.json").write_text('{"minimum": ')
    broken = _check(bundle_dir, site, out, "--criteria", str(tmp_path / "broken.json"))
    assert broken.exit_code != 0 and "not acceptance criteria" in broken.output
    assert not out.exists()
    assert "Traceback" not in said + too_few.output + broken.output
