"""`trainer evaluate`: another cohort scored honestly (a subject the run trained on only by the fold that held it
out), and the share of it the bundle's guard flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import invoke_trainer, read_csv

pytestmark = pytest.mark.slow


def test_evaluate_scores_a_training_subject_only_with_the_fold_that_held_it_out(
    run_dir: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    manifest = str(tiny_cohort / "manifest.csv")
    result = invoke_trainer("evaluate", "--run", str(run_dir), "--manifest", manifest, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    out_of_fold = {r["subject_id"]: float(r["p_fatty"]) for r in read_csv(run_dir / "predictions.csv")}
    evaluated = read_csv(tmp_path / "predictions.csv")
    assert len(evaluated) == len(out_of_fold)
    for row in evaluated:
        assert float(row["p_fatty"]) == pytest.approx(out_of_fold[row["subject_id"]], abs=1e-5)
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert evaluation["scored_by"]["held_out_fold"] == len(out_of_fold)
    assert evaluation["scored_by"]["fold_ensemble"] == 0
    assert "held_out_by_id_only" not in evaluation["scored_by"] and "NOTE" not in result.output  # same images


def test_evaluate_names_subjects_that_share_only_an_id_with_the_run(run_dir: Path, tmp_path: Path) -> None:
    """Another phantom seed reuses ids PH0001...: other patients. They stay scored by the fold that held the id
    out (a re-exported training subject must never leak), and the report names them instead of hiding it."""
    from phantom.cohort import generate_cohort

    generate_cohort(tmp_path / "other_seed", 3, seed=909, with_masks=False)
    args = ["evaluate", "--run", str(run_dir), "--manifest", str(tmp_path / "other_seed" / "manifest.csv")]
    result = invoke_trainer(*args, "--out", str(tmp_path / "eval"))
    assert result.exit_code == 0, result.output
    scored = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["scored_by"]
    trained = {s for fold in json.loads((run_dir / "folds.json").read_text())["folds"] for s in fold}
    reused = sorted({"PH0001", "PH0002", "PH0003"} & trained)
    assert reused and scored["held_out_by_id_only"] == reused and scored["held_out_fold"] == len(reused)
    assert f"NOTE: {len(reused)} subject(s) share an id" in result.output


def test_evaluate_reports_how_much_of_a_cohort_the_guard_flags(
    run_dir: Path, bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report and its warning. How much the guard flags is measured on a 90-subject run by `benchmarks gate`
    (a guard fitted on this tiny run's eight subjects is too loose to flag anything): here the real guard reports
    a same-generator twin without a warning, and a guard report above three times its design rate is warned about."""

    import trainer.evaluate
    from phantom.cohort import generate_cohort
    from trainer.guard_report import guard_report

    generate_cohort(tmp_path / "twin", 6, seed=808, with_masks=False)
    args = ["evaluate", "--run", str(run_dir), "--manifest", str(tmp_path / "twin" / "manifest.csv")]
    args += ["--bundle", str(bundle_dir)]
    outputs, shares = {}, {}
    for case, report in (("real", guard_report), ("shifted", lambda b, c: {**guard_report(b, c), "shifted": True})):
        monkeypatch.setattr(trainer.evaluate, "guard_report", report)
        result = invoke_trainer(*args, "--out", str(tmp_path / case))
        assert result.exit_code == 0, result.output
        outputs[case] = result.output
        guard = json.loads((tmp_path / case / "evaluation.json").read_text())["guard"]
        assert guard["frames"] == 12 and set(guard["per_view"]) == {"liver", "kidney_liver"}
        shares[case] = guard["flagged_share"]
    assert shares["real"] <= 3 * 0.02 and "WARNING: the bundle's guard flags" not in outputs["real"]
    assert (
        "WARNING: the bundle's guard flags" in outputs["shifted"] and "do not trust the metrics" in outputs["shifted"]
    )
