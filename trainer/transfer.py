"""`trainer transfer`: does the model carry over to a scanner it never saw?

The paper's theme is images "scanned by different scanners". Cross-validation mixes every vendor into every
fold, so it cannot show what happens when a site brings a new one. Each transfer row trains on some vendors'
subjects and tests on another vendor's, never seen:

- every ordered pair of vendors (PHILIPS -> GE, GE -> PHILIPS, ...);
- with three or more vendors, leave-one-vendor-out (train on all the others, test on the one left out).

Next to each row stands the within-vendor figure: the same test subjects predicted by subject-level
cross-validation over all vendors, so their own vendor was in training. With ``--study`` every appearance
augmentation family (clkl.appearance) is tried alone, then all together, against none, on the same features
and rows; that is how the trainer's default families were chosen (docs/DESIGN.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np

from clkl.appearance import FAMILIES
from edge_runtime.errors import ConfigError
from trainer.config import TrainConfig
from trainer.dataset import Cohort
from trainer.transfer_report import WITHIN, transfer_markdown, transfer_plot


@dataclass(frozen=True)
class TransferRow:
    train: tuple[str, ...]  # vendors whose subjects train the head
    test: str  # the vendor it is tested on, never seen in training

    @property
    def name(self) -> str:
        return f"{' + '.join(self.train)} -> {self.test}"


def transfer_rows(vendors: list[str]) -> list[TransferRow]:
    """Every ordered vendor pair, then (three or more vendors) each vendor left out of all the others; vendors in
    alphabetical order, so the rows do not depend on the manifest's row order."""
    found = sorted(set(vendors))
    if len(found) < 2:
        raise ConfigError(f"transfer needs subjects from at least two vendors; the cohort has {found or 'none'}")
    rows = [TransferRow((a,), b) for a, b in permutations(found, 2)]
    if len(found) > 2:
        rows += [TransferRow(tuple(v for v in found if v != left_out), left_out) for left_out in found]
    return rows


def study_settings(config: TrainConfig) -> list[str]:
    """The appearance settings a study compares: none, each family alone, all, and the configuration's own."""
    settings = ["none", *FAMILIES, "all", config.appearance]
    return list(dict.fromkeys(settings))


def _fit_predict(feats, y, train_rows: np.ndarray, test_rows: np.ndarray, config: TrainConfig, seed: int, desc: str):
    from trainer.crossval import fit_head_on_features, predict_rows

    head, _ = fit_head_on_features(feats, y, train_rows, config, seed, desc, progress=False)
    return predict_rows(head, feats, test_rows, config)


def _outcome(cohort: Cohort, fold: int, rows: np.ndarray, preds: dict[str, np.ndarray]):
    from trainer.crossval import FoldOutcome

    return FoldOutcome(fold, [cohort.ids[r] for r in rows], preds, {}, 0.0)


def within_predictions(cohort: Cohort, feats, y, config: TrainConfig) -> list[dict]:
    """Out-of-fold predictions of subject-level CV over every vendor (folds balanced by vendor x class).

    Args:
        cohort: the labelled cohort.
        feats: view -> (subjects, variants, features).
        y: output name -> one target per subject.
        config: the protocol (folds, seed, epochs).
    """
    from trainer.folds import fold_rows, make_folds
    from trainer.report import collect_predictions

    fatty = list(cohort.pdff() >= config.fatty_threshold)
    folds = make_folds(cohort.ids, cohort.vendors(), fatty, config.folds, config.seed)
    outcomes = [
        _outcome(cohort, k, test_rows, _fit_predict(feats, y, rows, test_rows, config, config.seed + k, f"CV {k}"))
        for k, rows, test_rows in fold_rows(folds, cohort.ids)
    ]
    return collect_predictions(cohort, outcomes)


def score_setting(cohort: Cohort, feats, config: TrainConfig, rows: list[TransferRow]) -> dict[str, Any]:
    """One appearance setting: every transfer row, and the within-vendor CV split by test vendor.

    Args:
        cohort: the labelled cohort (several vendors).
        feats: view -> (subjects, variants, features) for this setting's variants.
        config: the protocol (this setting's appearance families).
        rows: the transfer rows.
    """
    from trainer.crossval import targets
    from trainer.hri_input import with_hri_input
    from trainer.report import collect_predictions, summarise

    feats = with_hri_input(feats, cohort, config)
    y = targets(cohort, config.outputs, config.fatty_threshold)
    vendors = np.array(cohort.vendors())
    within = within_predictions(cohort, feats, y, config)
    result: dict[str, Any] = {WITHIN: summarise(within, config), "rows": {}}
    for n, row in enumerate(rows):
        train_rows = np.flatnonzero(np.isin(vendors, row.train))
        test_rows = np.flatnonzero(vendors == row.test)
        preds = _fit_predict(feats, y, train_rows, test_rows, config, config.seed + 100 + n, row.name)
        summary = summarise(collect_predictions(cohort, [_outcome(cohort, 0, test_rows, preds)]), config)
        own = [r for r in within if r["vendor"] == row.test]
        result["rows"][row.name] = {
            "train": list(row.train),
            "test": row.test,
            "n_train": len(train_rows),
            "across": summary,
            "within": summarise(own, config),
        }
    return result


def run_transfer(
    cohort: Cohort, config: TrainConfig, out_dir: Path, study: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Score the transfer rows for the configuration (and, with study, every appearance setting); writes
    transfer.json, transfer.md and transfer.png.

    Args:
        cohort: the labelled cohort, with at least two vendors.
        config: the protocol; its appearance families are the headline setting.
        out_dir: where the features' run files and the reports go.
        study: also compare no appearance augmentation, each family alone and all families.
        progress: show progress.
    """
    from trainer.extraction import run_extraction
    from trainer.holdout import export_groups
    from trainer.train import require_harmonisation

    require_harmonisation(cohort, config)
    rows = transfer_rows(cohort.vendors())
    settings = study_settings(config) if study else [config.appearance]
    widest = config.with_changes(appearance="all" if study else config.appearance)
    out_dir.mkdir(parents=True, exist_ok=True)
    split = export_groups(cohort, config.fatty_threshold, config.seed, config.holdout_share)
    extraction = run_extraction(cohort, widest, out_dir, split, progress)
    results: dict[str, Any] = {"headline": config.appearance, "config": config.model_dump(), "settings": {}}
    for setting in settings:
        if progress:
            print(f"appearance {setting}: {len(rows)} transfer rows and the within-vendor CV", flush=True)
        chosen = config.with_changes(appearance=setting)
        results["settings"][setting] = score_setting(cohort, extraction.for_config(chosen), chosen, rows)
    (out_dir / "transfer.json").write_text(json.dumps(results, indent=2, default=str))
    (out_dir / "transfer.md").write_text(transfer_markdown(results))
    transfer_plot(out_dir / "transfer.png", results)
    return results
