"""A federated study written as a run like any other, plus ``federated.json`` and ``federated.png``.

- ``federated``: the pooled out-of-fold metrics across sites (each subject scored by the federated head of the fold
  that held it out); ``report.json``, ``predictions.csv`` and the exam calibration come from the same scores, so
  export, `site-check` and `site-adapt` read it as any run.
- ``centralised``: the same folds trained on the union of the sites' data (only where the data may be pooled).
- ``sites.NAME.alone`` / ``sites.NAME.federated``: each site's own cross-validation against the federated head, on
  that site's subjects, and ``sites.NAME.personalised`` (with ``--personal-epochs``): the federated head fine-tuned
  on the site's own training subjects; ``leave_one_site_out``: the other sites' head on the site it never saw.
- per round: the pooled held-out AUC, the seconds it took (every head of the study trains in each round: the CV
  folds', the final and the leave-one-site-out heads) and which sites each round heard.

Export needs images to calibrate the int8 encoder and to judge it: the first site's (the coordinating hospital's)
manifest is the run's, its groups the run's groups; the final federated head is the one the bundle ships.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from trainer.config import TrainConfig
from trainer.metrics import classification_metrics, regression_metrics

FINAL_HEAD = Path("final") / "head.h5"


def metrics(scores: dict[str, list]) -> dict[str, float | None]:
    """Classification and regression figures of one set of scores (p_fatty, pdff_pred against pdff)."""
    pdff = np.asarray(scores["pdff"], np.float64)
    if len(pdff) == 0:
        return {}
    return classification_metrics(pdff, np.asarray(scores["p_fatty"])) | regression_metrics(
        pdff, np.asarray(scores["pdff_pred"])
    )


def _pooled(parts: list[dict[str, list]]) -> dict[str, list]:
    keys = ("p_fatty", "pdff_pred", "pdff", "vendor")
    return {k: [x for part in parts for x in part.get(k, [])] for k in keys}


def oof_scores(results: dict[str, Any], which: str = "scores") -> dict[str, dict[str, list]]:
    """Site -> its subjects' out-of-fold scores: each fold's last round, held-out part (``which``: the federated
    head's ``scores`` or the site's ``personalised`` head's)."""
    by_site: dict[str, list] = {}
    for k, fold in enumerate(results["folds"]):
        for site, scores in fold["rounds"][-1].get(which, {}).items():
            by_site.setdefault(site, []).append(scores | {"fold": [k] * len(scores["pdff"])})
    return {site: _pooled(parts) | {"fold": [f for p in parts for f in p["fold"]]} for site, parts in by_site.items()}


def per_round(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each round: the pooled held-out AUC over folds and sites, its seconds, the sites heard."""
    rounds = []
    for r in range(len(results["folds"][0]["rounds"])):
        parts = [s for fold in results["folds"] for s in fold["rounds"][r]["scores"].values()]
        said = metrics(_pooled(parts))
        sites = [fold["rounds"][r] for fold in results["folds"]]
        why = {site: reason for s in sites for site, reason in s.get("why", {}).items()}
        rounds.append({"round": r + 1, "auc": said.get("auc"), "r2": said.get("r2"),
                       "seconds": float(np.mean([s["seconds"] for s in sites])),
                       "dropped": sorted({d for s in sites for d in s["dropped"]} | set(why)), "why": why})  # fmt: skip
    return rounds


def summary(results: dict[str, Any], centralised: dict[str, Any] | None) -> dict[str, Any]:
    """federated.json: pooled federated vs centralised, each site alone vs federated, leave-one-site-out, rounds."""
    oof, personal = oof_scores(results), oof_scores(results, "personalised")
    rounds = per_round(results)
    left = _left(rounds)
    sites = {}
    for name in results["sites"]:
        scores = oof.get(name, {"pdff": []})
        alone = metrics(results["alone"].get(name, {"pdff": []}))
        sites[name] = {"subjects": len(scores["pdff"]), "federated": metrics(scores), "alone": alone,
                       "centralised": (centralised or {}).get("sites", {}).get(name)}  # fmt: skip
        if name in personal:
            sites[name]["personalised"] = metrics(personal[name])
        if name in left:  # its subjects are not in the pooled figures unless it scored the last round
            sites[name]["left"] = left[name]
    loso = {name: metrics(scores) if scores else None for name, scores in results["loso"].items()}
    return {
        "federated": metrics(_pooled(list(oof.values()))),
        "centralised": {k: v for k, v in centralised.items() if k != "sites"} if centralised else None,
        "sites": sites,
        "leave_one_site_out": loso,
        "rounds": rounds,
        "seconds_per_round": float(np.mean([r["seconds"] for r in rounds])) if rounds else None,
        "heads_per_round": results["final_rounds"][0]["heads"] if results["final_rounds"] else 0,
        "dropped": sorted({d for r in [*rounds, *results["final_rounds"]] for d in r["dropped"]}),
        "why_dropped": {site: f"round {said['round']}: {said['why']}" for site, said in left.items()},
    }


def _left(rounds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each site that failed a round: the first round it failed and why."""
    left: dict[str, dict[str, Any]] = {}
    for r in rounds:
        for site, why in r["why"].items():
            left.setdefault(site, {"round": r["round"], "why": why})
    return left


def rows(oof: dict[str, dict[str, list]]) -> list[dict[str, Any]]:
    """predictions.csv's rows: one per subject of every site, named by site and position (no subject id leaves)."""
    out = []
    for site, scores in sorted(oof.items()):
        columns = (scores["p_fatty"], scores["pdff_pred"], scores["pdff"], scores["vendor"], scores["fold"])
        for i, (p, pred, pdff, vendor, fold) in enumerate(zip(*columns, strict=True)):
            row = {"subject_id": f"{site}:{i:04d}", "fold": fold, "vendor": vendor, "pdff": pdff}
            out.append(row | {"p_fatty": p, "pdff_pred": pred})
    return out


def federation_record(federation: Any, config: TrainConfig, results: dict[str, Any]) -> dict[str, Any]:
    """What a bundle records of the federation: sites by hashed name, their subjects, the rounds and strategy."""
    from trainer.federated.site import site_hash

    counts = {name: len(s.get("pdff", [])) for name, s in results["alone"].items()}  # each site's labelled subjects
    return {
        "sites": [site_hash(name) for name, _ in federation.sites],
        "subjects": {site_hash(name): counts.get(name, 0) for name, _ in federation.sites},
        "rounds": federation.rounds,
        "local_epochs": config.n_epochs,
        "strategy": federation.strategy,
        "server_optimiser": server_optimiser(federation),
    }


def server_optimiser(federation: Any) -> dict[str, float]:
    """The server optimiser's settings that shaped the federated head (none for the plain averages)."""
    if federation.strategy == "fedavgm":
        return {"learning_rate": federation.server_learning_rate, "momentum": federation.server_momentum}
    if federation.strategy == "fedadam":
        return {"learning_rate": federation.server_learning_rate}
    return {}


def _first_site_records(out: Path, federation: Any, config: TrainConfig) -> None:
    """The coordinating hospital's own subjects as the run's: its manifest, folds, groups, images and profiles
    (export calibrates and judges the int8 encoder on them, as it does for any run)."""
    from trainer.federated.site import site_folds
    from trainer.folds import save_folds
    from trainer.holdout import export_groups, save_split
    from trainer.runs import save_cohort_digests, save_profiles
    from trainer.train import load_labelled_cohort

    cohort = load_labelled_cohort(
        federation.sites[0][1], False, federation.profiles, harmonisation=config.harmonisation
    )
    folds = site_folds(cohort, federation.folds, config.seed, config.fatty_threshold)
    save_folds(out / "folds.json", [[s for s, k in zip(cohort.ids, folds, strict=True) if k == f]
                                    for f in range(federation.folds)])  # fmt: skip
    save_split(out, export_groups(cohort, config.fatty_threshold, config.seed, config.holdout_share))
    save_cohort_digests(out, cohort.digests, cohort.kind)
    save_profiles(out, cohort.profiles)


def _save_final_head(out: Path, config: TrainConfig, weights: dict[str, np.ndarray]) -> None:
    """The final federated head (its MinMax and weights) as every run's heads are kept: HDF5."""
    from trainer.crossval import save_head
    from trainer.federated.local import head_from

    (out / FINAL_HEAD).parent.mkdir(exist_ok=True)
    save_head(head_from(config, weights), out / FINAL_HEAD)


def write_run(out: Path, federation: Any, config: TrainConfig, results: dict[str, Any], seconds: float) -> dict:
    """The run directory (the files every run has, the final federated head) and federated.json/.png.

    Args:
        out: the run directory.
        federation: the sites and how they trained.
        config: the run's settings.
        results: what the coordinator wrote.
        seconds: the study's wall time.
    """
    from trainer.extraction import frozen_encoder
    from trainer.federated.compare import centralised_metrics
    from trainer.model_error import write_model_error
    from trainer.report import write_report

    record = federation_record(federation, config, results)
    extra = {"manifest": str(Path(federation.sites[0][1]).resolve()), "federation": record}
    run_config = config.with_changes(ensemble=0, extra=config.extra | extra)
    run_config.save(out / "config.json")
    _first_site_records(out, federation, run_config)
    with np.load(Path(results_path(out)).with_suffix(".npz")) as saved:  # the head's named arrays
        weights = {name: saved[name] for name in saved.files}
    _save_final_head(out, run_config, weights)
    centralised = centralised_metrics(federation, run_config) if federation.centralised else None
    said = summary(results, centralised) | {"seconds": seconds, "federation": record,
                                             "mode": federation.mode}  # fmt: skip
    predictions = rows(oof_scores(results))
    timings = {"total_s": seconds, "features": "float", "weights_id": frozen_encoder(run_config).weights_id}
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    write_report(out, predictions, run_config, {"timings": timings, "federation": record})
    write_model_error(out, predictions, run_config)
    (out / "federated.json").write_text(json.dumps(said, indent=2, default=float))
    plot(out / "federated.png", said)
    return said


def results_path(out: Path) -> Path:
    return out / "federation" / "coordinator" / "results.json"


def plot(path: Path, said: dict[str, Any]) -> None:
    """The held-out AUC per round, and each site's AUC alone and federated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    rounds = said["rounds"]
    left.plot([r["round"] for r in rounds], [r["auc"] for r in rounds], marker="o", label="federated (held out)")
    if said.get("centralised"):
        left.axhline(said["centralised"]["auc"], color="grey", linestyle="--", label="centralised")
    left.set(xlabel="round", ylabel="AUC (pooled, held-out subjects)", ylim=(0.4, 1.0), title="AUC per round")
    left.legend()
    names = sorted(said["sites"])
    x = np.arange(len(names))
    keys = [k for k in ("alone", "federated", "personalised") if all(k in said["sites"][n] for n in names)]
    width = 0.8 / len(keys)
    for k, key in enumerate(keys):
        offset = (k - (len(keys) - 1) / 2) * width
        right.bar(x + offset, [said["sites"][n][key].get("auc") or 0 for n in names], width, label=key)
    right.set(xticks=x, xticklabels=names, ylabel="AUC on the site's own held-out subjects", ylim=(0.4, 1.0),
              title="Each site: alone vs federated")  # fmt: skip
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
