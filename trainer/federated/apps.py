"""The Flower apps of a federated run: ``client_app`` is a site (it opens only its own files), ``server_app`` the
study's coordinator (trainer.federated.study), which sees only what the messages carry.

A site learns who it is from its SuperNode's node config in deployment (``site``, ``manifest``, ``settings``,
``profiles``, ``cache``), or, in the simulation runtime, from the run's plan by its partition id. Its data are
loaded once per process and kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from trainer.federated.records import from_record, to_record
from trainer.federated.study import PERSONALISED

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PLAN_VARIABLE = "FATTY_LIVER_FEDERATION_PLAN"  # the simulation runtime's way to the plan (it takes no run config)
client_app = ClientApp()
server_app = ServerApp()
_SITES: dict[str, Any] = {}  # site name -> SiteData, loaded once per process


def site_spec(context: Context) -> dict[str, Any]:
    """This site's name, manifest, settings and profiles: its node config (deployment) or its plan entry."""
    node = dict(context.node_config)
    if "site" in node:
        return {k: node.get(k) for k in ("site", "manifest", "settings", "profiles", "cache", "folds")}
    return _plan(context)["sites"][int(node["partition-id"])]


def _plan(context: Context) -> dict[str, Any]:
    path = context.run_config.get("plan") or os.environ[PLAN_VARIABLE]
    return json.loads(Path(str(path)).read_text())


def _site(context: Context) -> Any:
    from trainer.config import TrainConfig
    from trainer.federated.site import load_site

    spec = site_spec(context)
    if spec["site"] not in _SITES:
        settings = json.loads(Path(spec["settings"]).read_text())
        if spec.get("cache"):
            settings["cache_dir"] = spec["cache"]
        config = TrainConfig.model_validate(settings)
        _SITES[spec["site"]] = load_site(spec["site"], Path(spec["manifest"]), config, int(spec["folds"]),
                                         spec.get("profiles"))  # fmt: skip
    return _SITES[spec["site"]]


def _reply(msg: Message, **records: Any) -> Message:
    return Message(RecordDict(records), reply_to=msg)


def _member(msg: Message, context: Context) -> Any:
    """This site's data for a round's message, refusing (SiteError) when its manifest is no longer the cohort it
    began the study with."""
    from trainer.federated.site import SiteError, cohort_digest

    spec = site_spec(context)
    began = str(msg.content["config"].get("cohort", ""))
    if began and cohort_digest(Path(spec["manifest"])) != began:
        raise SiteError(f"site {spec['site']}: its manifest changed since the study began; it leaves the study "
                        "(a study's cohort is fixed once it starts)")  # fmt: skip
    return _site(context)


def _in_site_words(context: Context, exc: Exception) -> str:
    """Why this site cannot go on, naming it."""
    name = site_spec(context)["site"]
    return str(exc) if str(exc).startswith(f"site {name}") else f"site {name}: {exc}"


def _refusal(msg: Message, context: Context, exc: Exception) -> Message:
    """The site's own words on why it sends nothing this time; the coordinator leaves it out of the round."""
    return _reply(msg, error=ConfigRecord({"why": _in_site_words(context, exc)}))


@client_app.query()
def query(msg: Message, context: Context) -> Message:
    """``describe``: who this site is and what it trains with; ``prepare``: its training rows' feature ranges for
    each fold asked, and its own cross-validation trained on its data alone."""
    from edge_runtime.errors import FattyLiverError
    from trainer.federated.site import cohort_digest, settings_fingerprint

    config = msg.content["config"]
    try:
        site = _site(context)
    except FattyLiverError as exc:  # said to the coordinator, which names the site and stops
        said = {"error": _in_site_words(context, exc), "site": site_spec(context)["site"]}
        return _reply(msg, answer=ConfigRecord(said))
    if config["op"] == "describe":
        said = {"site": site.name, "fingerprint": settings_fingerprint(site.config), "labelled": len(site.folds),
                "cohort": cohort_digest(Path(site_spec(context)["manifest"]))}  # fmt: skip
        return _reply(msg, answer=ConfigRecord(said))
    from trainer.federated.local import alone_scores

    ranges = {}
    for fold in json.loads(str(config["folds"])):
        ranges[f"{fold}/low"], ranges[f"{fold}/high"] = site.ranges(int(fold))
    alone = alone_scores(site, int(config["epochs"]))
    return _reply(msg, ranges=to_record(ranges), alone=ConfigRecord(alone))


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """Each head this site takes part in, trained from the global weights on the training rows of its fold for
    the local epochs; the weights and the example count of each."""
    from edge_runtime.errors import FattyLiverError
    from trainer.federated.local import train_locally

    config = dict(msg.content["config"])
    try:
        site = _member(msg, context)
    except FattyLiverError as exc:
        return _refusal(msg, context, exc)
    replies, examples = {}, {}
    for name, fold in json.loads(str(config.pop("heads"))):
        trained, examples[name] = train_locally(site, from_record(msg.content[f"head:{name}"]), config | {"fold": fold})
        replies[f"head:{name}"] = to_record(trained)
    return _reply(msg, examples=MetricRecord(examples), **replies)


@client_app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Each head's answers for this site's held-out subjects of its fold (or all of them), with their truth; for
    scope ``personalised``, those of the head first fine-tuned on the fold's training subjects here."""
    from edge_runtime.errors import FattyLiverError
    from trainer.federated.local import personalised_scores, scores

    try:
        site = _member(msg, context)
    except FattyLiverError as exc:
        return _refusal(msg, context, exc)
    said, config = {}, dict(msg.content["config"])
    for name, fold, scope in json.loads(str(config["heads"])):
        weights = from_record(msg.content[f"head:{name}"])
        if scope == PERSONALISED:
            said[f"scores:{name}:{scope}"] = ConfigRecord(personalised_scores(site, weights, int(fold), config))
        else:
            said[f"scores:{name}"] = ConfigRecord(scores(site, weights, int(fold), str(scope)))
    return _reply(msg, **said)


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """The coordinator: the federated study the plan describes; its results go to the plan's folder."""
    from trainer.federated.study import FederationError, run_study

    plan = _plan(context)
    out = Path(plan["results"])
    try:
        results = run_study(grid, plan)
    except FederationError as exc:  # said to `trainer federated`, which names the site and stops
        out.write_text(json.dumps({"error": str(exc)}))
        return
    np.savez(out.with_suffix(".npz"), **results.pop("final_weights"))
    out.write_text(json.dumps(results))
