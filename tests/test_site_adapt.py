"""`trainer site-adapt`: a bundle adapted to a CANON-like scanner from 8 local subjects is a verified bundle like
any other, naming its parent, its local evidence and its nested before/after figures; what it must not adapt on
is refused by name with nothing written."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from helpers import invoke_trainer

pytestmark = pytest.mark.slow

CANON = "phantom-canon-1280x800"


@pytest.fixture(scope="module")
def canon_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight subjects (4 fatty) on a scanner the tiny bundle never saw, with their own ids."""
    from phantom.cohort import CohortForm, generate_cohort

    out = tmp_path_factory.mktemp("canon-site")
    form = CohortForm(layouts=(CANON,), other_frames=1, id_prefix="CN")
    generate_cohort(out, 8, seed=515, prevalence=0.5, with_masks=False, form=form)
    return out


@pytest.fixture(scope="module")
def canon_shifted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four subjects on the same console in a much brighter look (phantom.render.shifted)."""
    from phantom.cohort import CohortForm, generate_cohort

    out = tmp_path_factory.mktemp("canon-shifted")
    form = CohortForm(layouts=(CANON,), appearance="shifted", id_prefix="SH")
    generate_cohort(out, 4, seed=516, prevalence=0.5, with_masks=False, form=form)
    return out


def _flagged(bundle_dir: Path, site: Path) -> float:
    from edge_runtime.model.bundle import load_bundle
    from edge_runtime.scanners.profiles import load_profiles
    from trainer.dataset import read_cohort
    from trainer.guard_report import guard_report

    profiles, harmonisation = load_profiles(str(site / "profiles.json")), load_bundle(bundle_dir).harmonisation
    cohort = read_cohort(site / "manifest.csv", profiles, progress=False, harmonisation=harmonisation)
    return guard_report(bundle_dir, cohort)["flagged_share"]


def _guard_is_centred_on_the_new_console_only(parent_dir: Path, adapted_dir: Path, canon: Path, shifted: Path) -> None:
    """The parent's guard (thresholds, components), centred on the CANON console from its 8 subjects: its frames
    are in distribution, the same console in a new look is not."""
    from edge_runtime.model.bundle import load_bundle

    parent, adapted = load_bundle(parent_dir), load_bundle(adapted_dir)
    assert adapted.meta.guard.scanner_centres == {CANON: 8}
    assert adapted.meta.guard.thresholds == parent.meta.guard.thresholds
    for view in ("liver", "kidney_liver"):
        assert (adapted.gate.guards[view].components == parent.gate.guards[view].components).all()
    own, new_look = _flagged(adapted_dir, canon), _flagged(adapted_dir, shifted)
    assert own <= min(_flagged(parent_dir, canon), 0.25), own
    assert new_look >= 0.75, new_look


def _adapt(bundle_dir: Path, out: Path, *extra: str):
    return invoke_trainer("site-adapt", "--bundle", str(bundle_dir), "--out", str(out), *extra)


def test_an_adapted_bundle_is_verified_and_names_its_parent_and_evidence(
    bundle_dir: Path, run_dir: Path, canon_site: Path, canon_shifted: Path, tmp_path: Path
) -> None:
    from edge_runtime.model.bundle import load_bundle

    out = tmp_path / "adapted"
    args = ["--run", str(run_dir), "--manifest", str(canon_site / "manifest.csv"), "--retrain-heads"]
    result = _adapt(bundle_dir, out, *args, "--profiles", str(canon_site / "profiles.json"), "--site", "ward-7")
    assert result.exit_code == 0, result.output
    parent, adapted = load_bundle(bundle_dir), load_bundle(out)  # loading verifies every hash
    site = adapted.meta.site
    assert adapted.version == "0.2.0" and site.site == "ward-7" and site.labelled_subjects == 8
    parent_json = (bundle_dir / "bundle.json").read_bytes()
    import hashlib

    assert site.parent_sha256 == hashlib.sha256(parent_json).hexdigest()
    assert {"heads", "model_error", "guard", "view_gate", "scanners"} <= set(site.adapted)
    assert len(site.subject_id_sha256) == 8 and "CN0001" not in json.dumps(site.model_dump(mode="json"))
    assert set(site.before) == set(site.after) and "balanced_accuracy" in site.after
    assert CANON in adapted.meta.scanners and set(parent.meta.scanners) <= set(adapted.meta.scanners)
    for name in parent.meta.files.encoder.values():  # the encoder is the parent's, byte for byte
        assert (out / name).read_bytes() == (bundle_dir / name).read_bytes()
    heads = [parent.meta.files.head, *(h.file for h in parent.meta.ensemble.heads)]
    assert all((out / h).read_bytes() != (bundle_dir / h).read_bytes() for h in heads)  # retrained on run + site
    assert "site subjects" in adapted.meta.quantization.head and adapted.meta.quantization.bias_correction is None
    assert adapted.meta.exam != parent.meta.exam
    assert adapted.model_info.site == "ward-7" and "adapted to site ward-7" in adapted.validation
    assert "nested figures" in result.output and "before" in result.output
    assert "encoding the run's training frames" not in result.output  # export kept them (trainer.gate_features)
    _guard_is_centred_on_the_new_console_only(bundle_dir, out, canon_site, canon_shifted)


def _subset(manifest: Path, dst: Path, keep, blank_pdff: bool = False) -> Path:
    rows = [r for r in csv.DictReader(manifest.open()) if keep(r["subject_id"])]
    for row in rows:
        row["pdff"] = "" if blank_pdff else row["pdff"]
    with dst.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return dst


def test_what_site_adapt_must_not_adapt_on_is_refused_by_name(
    bundle_dir: Path, run_dir: Path, canon_site: Path, tiny_cohort: Path, tmp_path: Path
) -> None:
    manifest, profiles = canon_site / "manifest.csv", ["--profiles", str(canon_site / "profiles.json")]
    out = tmp_path / "never"
    unlabelled = _subset(manifest, canon_site / "unlabelled.csv", lambda s: True, blank_pdff=True)
    few = _subset(manifest, canon_site / "few.csv", lambda s: s <= "CN0005")
    other_run = tmp_path / "other-run"
    shutil.copytree(run_dir, other_run)
    split = json.loads((other_run / "split.json").read_text())
    split["train"] = split["train"][1:]
    (other_run / "split.json").write_text(json.dumps(split))
    cases = {
        "have no MRI-PDFF": ["--manifest", str(unlabelled), *profiles],
        "adaptation needs at least 8": ["--manifest", str(few), *profiles],
        "local subjects the run trained on": ["--run", str(run_dir), "--manifest", str(tiny_cohort / "manifest.csv")],
        "did not make": ["--run", str(other_run), "--manifest", str(manifest), *profiles],
        CANON: ["--manifest", str(manifest)],  # no profile for the site's console: it cannot be cropped
    }
    for said, args in cases.items():
        result = _adapt(bundle_dir, out, *args)
        assert result.exit_code != 0 and said in result.output, (said, result.output)
        assert "Traceback" not in result.output and not out.exists()


def test_a_known_console_name_showing_other_images_is_recentred_by_what_its_frames_measure(
    bundle_dir: Path, run_dir: Path, tmp_path: Path
) -> None:
    """The site's consoles carry the profile names the run trained on, but another B-mode generator's look: the
    parent's guard flags their frames, so the guard is centred on them, whatever their name says."""
    from edge_runtime.model.bundle import load_bundle
    from phantom.cohort import CohortForm, generate_cohort
    from phantom.layouts import CLASSIC_LAYOUTS

    site = tmp_path / "known-names"
    form = CohortForm(layouts=CLASSIC_LAYOUTS, appearance="shifted", id_prefix="KN")
    generate_cohort(site, 14, seed=517, prevalence=0.5, with_masks=False, form=form)
    rows = list(csv.DictReader((site / "manifest.csv").open()))
    per_console = {s: len({r["subject_id"] for r in rows if r["scanner"] == s}) for s in {r["scanner"] for r in rows}}
    assert set(per_console) <= set(load_bundle(bundle_dir).meta.scanners)  # names the parent knows
    before = _flagged(bundle_dir, site)
    assert before >= 0.75  # ...on images the parent measures as foreign
    out = tmp_path / "adapted"
    args = ["--run", str(run_dir), "--manifest", str(site / "manifest.csv"), "--profiles", str(site / "profiles.json")]
    result = _adapt(bundle_dir, out, *args)
    assert result.exit_code == 0, result.output
    centred = load_bundle(out).meta.guard.scanner_centres or {}
    assert set(centred) == {s for s, n in per_console.items() if n >= 6} != set(), (centred, per_console)
    assert _flagged(out, site) < before  # what stays flagged is saturation, which no centre excuses


def test_a_retrained_heads_tflite_answers_are_judged_to_float32_rounding_of_their_own_size() -> None:
    """A PDFF of tens of percent through 50 176 features carries float32 rounding of about 1e-4 in TFLite's order of
    summation: that is the same answer (an absolute 1e-4 refused it, and `site-adapt --retrain-heads` failed on an
    unseen console). A changed answer is still refused, for p_fatty and for PDFF."""
    import numpy as np

    from trainer.site.head_refit import converts_faithfully

    keras_pdff = np.array([0.8, 19.5, 38.2], np.float32)
    assert converts_faithfully(keras_pdff + np.float32(1.03e-4), keras_pdff)
    assert not converts_faithfully(keras_pdff + np.float32(0.01), keras_pdff)
    keras_p = np.array([0.01, 0.5, 0.99], np.float32)
    assert converts_faithfully(keras_p + np.float32(2e-6), keras_p)
    assert not converts_faithfully(keras_p + np.float32(3e-4), keras_p)
