"""What a federation is judged against: the same folds trained centrally on the union of the sites' data (only
where the data may be pooled: `--no-centralised` skips it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from trainer.config import TrainConfig


def centralised_metrics(federation: Any, config: TrainConfig) -> dict[str, Any]:
    """Pooled out-of-fold metrics of heads trained on every site's training rows of each fold together (for as many
    epochs as the federation's rounds times local epochs), and under ``sites`` each site's share of them (whether
    pooling itself helps a site, federated or not).

    Args:
        federation: the sites (their manifests are read here: the data are pooled for this comparison).
        config: the run's settings.
    """
    from trainer.crossval import fit_head_on_features, predict_rows
    from trainer.federated.run import metrics
    from trainer.federated.site import load_site

    sites = [load_site(name, manifest, config, federation.folds, federation.profiles_of(name))
             for name, manifest in federation.sites]  # fmt: skip
    views = config.view_names
    features = {v: np.concatenate([s.features[v] for s in sites]) for v in views}
    y = {o: np.concatenate([s.y[o] for s in sites]) for o in config.outputs}
    folds = np.concatenate([s.folds for s in sites])
    pdff = np.concatenate([s.cohort.pdff() for s in sites])
    names = np.concatenate([[s.name] * len(s.folds) for s in sites])
    epochs = config.with_changes(epochs=federation.rounds * config.n_epochs)
    scores: dict[str, list] = {"p_fatty": [], "pdff_pred": [], "pdff": [], "site": []}
    for k in range(federation.folds):
        train, held = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        head, _ = fit_head_on_features(features, y, train, epochs, config.seed, "centralised", False)
        said = predict_rows(head, features, held, epochs)
        scores["p_fatty"] += list(said["p_fatty"])
        scores["pdff_pred"] += list(said["pdff"])
        scores["pdff"] += list(pdff[held])
        scores["site"] += list(names[held])
    by_site = np.array(scores.pop("site"))
    per_site = {name: metrics({k: list(np.asarray(v)[by_site == name]) for k, v in scores.items()})
                for name in sorted(set(by_site))}  # fmt: skip
    return metrics(scores) | {"sites": per_site}
