"""What a site computes on its own data: a local training round from the global head, the head's answers for its
subjects, and its own cross-validation trained on its data only (the "site alone" a federation is judged against).

The head travels as named arrays: the global MinMax (``minmax/low``, ``minmax/span``: the head's first layer, a
constant of it rather than a weight) and each Dense layer's ``kernel`` and ``bias``. Scoring is the head's forward
pass in numpy, so a deployed site, which answers each message in a new process, imports TensorFlow only to train.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainer.federated.site import SiteData

LOW, SPAN = "minmax/low", "minmax/span"


def head_from(config: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The paper's Keras head carrying the federation's named arrays."""
    from clkl.head import build_head

    low, span = arrays[LOW], arrays[SPAN]
    head = build_head(config.view_names, len(low) // len(config.view_names), config.outputs, (low, span), config.seed)
    for layer in head.layers:
        if f"{layer.name}/kernel" in arrays:
            layer.set_weights([arrays[f"{layer.name}/kernel"], arrays[f"{layer.name}/bias"]])
    return head


def arrays_of(head: Any, minmax: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """A Keras head as the federation's named arrays."""
    out = {LOW: np.asarray(minmax[0], np.float32), SPAN: np.asarray(minmax[1], np.float32)}
    for layer in head.layers:
        if layer.__class__.__name__ == "Dense":
            kernel, bias = layer.get_weights()
            out |= {f"{layer.name}/kernel": kernel, f"{layer.name}/bias": bias}
    return out


def forward(arrays: dict[str, np.ndarray], outputs: tuple[str, ...]) -> Any:
    """The head's forward pass in numpy: MinMax, then per output Dense(10) + ReLU and Dense(1) (sigmoid for
    p_fatty), as clkl.head builds it."""

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        scaled = (x - arrays[LOW]) / arrays[SPAN]
        said = {}
        for name in outputs:
            hidden = np.maximum(scaled @ arrays[f"{name}_dense10/kernel"] + arrays[f"{name}_dense10/bias"], 0.0)
            value = (hidden @ arrays[f"{name}/kernel"] + arrays[f"{name}/bias"])[:, 0]
            said[name] = 1.0 / (1.0 + np.exp(-value)) if name == "p_fatty" else value
        return said

    return run


def initial_weights(site_config: Any, feature_size: int, ranges: tuple[np.ndarray, np.ndarray]) -> dict:
    """The federation's starting head: the global MinMax (from every site's ranges) and the run's initial weights.

    Args:
        site_config: the run's settings (views, outputs, seed, MinMax floor).
        feature_size: features per view.
        ranges: per-feature minimum and maximum over every site's training rows.
    """
    from clkl.head import build_head, fit_minmax

    low, high = ranges
    lo, span = fit_minmax(np.stack([low, high]), site_config.minmax_floor)
    head = build_head(site_config.view_names, feature_size, site_config.outputs, (lo, span), site_config.seed)
    return arrays_of(head, (lo, span))


def train_locally(site: SiteData, weights: dict[str, np.ndarray], config: dict[str, Any]) -> tuple[dict, int]:
    """One local round: the global head trained on this site's training rows (fold ``config['fold']``) for
    ``config['epochs']`` epochs of the paper's SGD, with FedProx's pull when ``proximal-mu`` is given."""
    from clkl.head import compile_head
    from trainer.kernel_sgd import SgdSettings, train_head

    head = head_from(site.config, weights)
    compile_head(head, site.config.outputs, site.config.learning_rate, site.config.momentum)
    rows = site.rows(int(config["fold"]), held_out=False)
    n_variants = site.features[site.config.view_names[0]].shape[1]
    y = {o: np.repeat(t[rows], n_variants) for o, t in site.y.items()}
    c = site.config
    seed = int(config.get("seed", c.seed))
    sgd = SgdSettings(int(config["epochs"]), c.batch_size, c.learning_rate, c.momentum, seed,
                      proximal_mu=float(config.get("proximal-mu", 0.0)))  # fmt: skip
    train_head(head, site.x(rows), y, sgd, "local round", False)
    return arrays_of(head, (weights[LOW], weights[SPAN])), len(rows) * n_variants


def scores(site: SiteData, weights: dict[str, np.ndarray], fold: int, scope: str) -> dict[str, Any]:
    """The head's answers for the fold's held-out subjects (``scope='held_out'``) or for every subject.

    Args:
        site: this site's data.
        weights: the head as the federation's named arrays.
        fold: the fold whose held-out subjects are scored.
        scope: ``held_out`` or ``all``.
    """
    rows = np.arange(len(site.folds)) if scope == "all" else site.rows(fold, held_out=True)
    said = site.scores(forward(weights, site.config.outputs), rows)
    return {k: [float(x) for x in v] if k != "vendor" else list(v) for k, v in said.items()}


def personalised_scores(site: SiteData, weights: dict[str, np.ndarray], fold: int, config: dict) -> dict[str, Any]:
    """The federated head fine-tuned here on the fold's training subjects (``config['personal_epochs']`` epochs of
    the paper's SGD), scored on the fold's held-out subjects: the head this site would run after the study.

    Args:
        site: this site's data.
        weights: the federated head as named arrays.
        fold: the fold whose training subjects tune it and whose held-out subjects score it.
        config: the evaluate message's settings (``personal_epochs``, ``seed``).
    """
    local = {"fold": fold, "epochs": int(config["personal_epochs"]), "seed": int(config["seed"])}
    tuned, _ = train_locally(site, weights, local)
    return scores(site, tuned, fold, "held_out")


def alone_scores(site: SiteData, epochs: int) -> dict[str, Any]:
    """The site's own cross-validation (the same folds), each fold's head trained on its data only."""
    from trainer.crossval import fit_head_on_features, predict_rows

    out: dict[str, list] = {"p_fatty": [], "pdff_pred": [], "pdff": [], "vendor": [], "fold": []}
    config = site.config.with_changes(epochs=epochs)
    for fold in sorted(set(site.folds.tolist())):
        train, held = site.rows(fold, held_out=False), site.rows(fold, held_out=True)
        head, _ = fit_head_on_features(site.features, site.y, train, config, config.seed, "alone", False)
        predicted = predict_rows(head, site.features, held, config)
        out["p_fatty"] += [float(p) for p in predicted["p_fatty"]]
        out["pdff_pred"] += [float(p) for p in predicted["pdff"]]
        out["pdff"] += [float(p) for p in site.cohort.pdff()[held]]
        out["vendor"] += list(np.array(site.cohort.vendors())[held])
        out["fold"] += [fold] * len(held)
    return out
