"""The coordinator's study, run inside Flower's ServerApp: it sees only the messages.

1. Every site says who it is; duplicate names, sites without labels and sites whose training settings differ are
   refused, by name.
2. Every site sends the feature ranges of each fold's training rows (the federated MinMax) and, to judge the
   federation by, its own cross-validation trained on its data alone.
3. The heads of the study train together, round by round: one per CV fold (every site's k-th part held out), the
   final head (every subject) and one per site left out (leave-one-site-out). A round is one train message per site
   carrying every head it takes part in; each head's replies are aggregated by its own Flower strategy
   (trainer.federated.aggregation). After each round every site scores the CV heads on its held-out
   subjects; after the last, each left-out site scores the head that never saw it and, with ``personal_epochs``,
   each site also scores the CV heads fine-tuned on its own training subjects (its personalised head).
A site that fails or drops during a round is left out of that round's aggregate, and the results say so. Heads
travel together because a deployed site answers each message in a new process: a study costs 2 + 2 x rounds
messages, not one per head and round.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from edge_runtime.errors import FattyLiverError
from trainer.federated.aggregation import ServerSettings, aggregate, new_strategy
from trainer.federated.records import from_record, to_record

HELD_OUT, EVERY_SUBJECT, PERSONALISED = "held_out", "all", "personalised"


class FederationError(FattyLiverError):
    """The federation cannot train as asked (the message names the site and why)."""


@dataclass
class Head:
    """One head the federation trains: fold ``fold`` held out (-1: none), by the sites ``nodes``."""

    name: str
    fold: int
    nodes: dict[int, str]
    judged_on: str | None = None  # a site left out: it scores this head on every subject after the last round
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    strategy: Any = None  # its own Flower strategy (a server optimiser keeps state per model)
    rounds: list[dict[str, Any]] = field(default_factory=list)


def study_heads(nodes: dict[int, str], plan: dict[str, Any]) -> list[Head]:
    """The CV folds' heads, the final head and one head per site left out, each with its own strategy."""
    heads = [Head(f"fold-{k}", k, nodes) for k in range(plan["folds"])] + [Head("final", -1, nodes)]
    for node, name in nodes.items():
        heads.append(Head(f"without-{name}", -1, {n: s for n, s in nodes.items() if n != node}, judged_on=name))
    server = ServerSettings(plan["server_learning_rate"], plan["server_momentum"])
    for head in heads:
        head.strategy = new_strategy(plan["strategy"], server, plan["proximal_mu"])
    return heads


@dataclass
class Answers:
    """What the sites said to one message each: the good replies, and why each other site gave none."""

    replies: list[Message]
    failed: dict[int, str]  # node id -> why (the site's own words, Flower's error or no answer in time)


def _ask(grid: Grid, contents: dict[int, dict[str, Any]], kind: str, timeout: float) -> Answers:
    """One message per node (each its own content); the good replies and each failed node's reason."""
    messages = [Message(RecordDict(c), message_type=kind, dst_node_id=n) for n, c in contents.items()]
    replies, failed = [], {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        node = reply.metadata.src_node_id
        if reply.has_error():
            failed[node] = f"Flower error {reply.error.code}: {reply.error.reason.strip().splitlines()[-1][:300]}"
        elif "error" in reply.content.config_records:
            failed[node] = str(reply.content["error"]["why"])
        else:
            replies.append(reply)
    answered = {r.metadata.src_node_id for r in replies} | set(failed)
    failed |= {n: f"no answer within {timeout:.0f} s" for n in contents if n not in answered}
    return Answers(replies, failed)


def _wait_for_sites(grid: Grid, count: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(nodes := list(grid.get_node_ids())) < count:
        if time.monotonic() > deadline:
            raise FederationError(f"{len(nodes)} of {count} sites connected within {timeout:.0f} s")
        time.sleep(0.2)
    return nodes


def identify(grid: Grid, plan: dict[str, Any]) -> tuple[dict[int, str], dict[int, str]]:
    """Node id -> site name, and node id -> the digest of the cohort it begins the study with, once every site has
    answered and agrees (else a FederationError naming the site)."""
    nodes = _wait_for_sites(grid, len(plan["sites"]), plan["timeout_s"])
    ask = {n: {"config": ConfigRecord({"op": "describe"})} for n in nodes}
    answers = _ask(grid, ask, MessageType.QUERY, plan["timeout_s"])
    said = {r.metadata.src_node_id: dict(r.content["answer"]) for r in answers.replies}
    problems = [s["error"] for s in said.values() if "error" in s]
    if len(said) < len(nodes):
        problems.append(f"{len(nodes) - len(said)} site(s) did not answer")
    names = [s["site"] for s in said.values()]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        problems.append(f"two sites are both named {', '.join(twice)}; each site needs its own name")
    differ = sorted(s["site"] for s in said.values() if "error" not in s and s["fingerprint"] != plan["fingerprint"])
    if differ:
        problems.append(f"site(s) {', '.join(differ)} train with other settings than the run's; align them")
    if problems:  # every problem at once, each naming its site
        raise FederationError("; ".join(problems))
    return {node: s["site"] for node, s in said.items()}, {node: s["cohort"] for node, s in said.items()}


def prepare(grid: Grid, nodes: dict[int, str], heads: list[Head], plan: dict[str, Any]) -> dict[str, Any]:
    """Each head's starting weights from the global MinMax of its sites' ranges; each site's own CV (alone).

    Args:
        grid: Flower's grid.
        nodes: node id -> site name.
        heads: the study's heads (their weights are set here).
        plan: the study's settings.
    """
    from trainer.config import TrainConfig
    from trainer.federated.local import initial_weights

    config = TrainConfig.model_validate(plan["settings"])
    folds = sorted({h.fold for h in heads})
    epochs = plan["rounds"] * plan["local_epochs"]
    ask = {n: {"config": ConfigRecord({"op": "prepare", "folds": json.dumps(folds), "epochs": epochs})} for n in nodes}
    replies = {r.metadata.src_node_id: r for r in _ask(grid, ask, MessageType.QUERY, plan["timeout_s"] * 4).replies}
    if missing := sorted(nodes[n] for n in nodes if n not in replies):
        raise FederationError(f"site(s) {', '.join(missing)} sent no feature ranges")
    ranges = {n: from_record(r.content["ranges"]) for n, r in replies.items()}
    for head in heads:
        low = np.min([ranges[n][f"{head.fold}/low"] for n in head.nodes], axis=0)
        high = np.max([ranges[n][f"{head.fold}/high"] for n in head.nodes], axis=0)
        head.weights = initial_weights(config, len(low) // len(config.view_names), (low, high))
    return {nodes[n]: dict(r.content["alone"]) for n, r in replies.items()}


def _aggregate(head: Head, replies: list[Message], server_round: int) -> list[str]:
    """The head's new weights, by its Flower strategy, from the replies that carry it; who was heard."""
    key = f"head:{head.name}"
    heard = [r for r in replies if r.metadata.src_node_id in head.nodes and key in r.content]
    if heard:
        parts = [(r.content[key], int(r.content["examples"][head.name])) for r in heard]
        head.weights = aggregate(head.strategy, server_round, head.weights, parts)
    return sorted(head.nodes[r.metadata.src_node_id] for r in heard)


def train_round(grid: Grid, heads: list[Head], plan: dict[str, Any], r: int) -> tuple[dict[int, list[str]], dict]:
    """Round ``r``: every site trains, from the global weights, each head it takes part in; the heads aggregate.
    Returns who each head heard from (by head index), and why each failed node sent nothing.

    Args:
        grid: Flower's grid.
        heads: the study's heads (their weights are replaced by the aggregate).
        plan: the study's settings.
        r: the round, from 1 (it seeds the local SGD).
    """
    config = {"epochs": plan["local_epochs"], "seed": int(plan["settings"]["seed"]) + r}
    if plan["strategy"] == "fedprox":
        config["proximal-mu"] = plan["proximal_mu"]
    contents: dict[int, dict[str, Any]] = {}
    for head in heads:
        for node in head.nodes:
            own = config | {"cohort": plan["cohorts"][node]}  # the site checks it still holds this cohort
            content = contents.setdefault(node, {"config": ConfigRecord(own), "heads": []})
            content["heads"].append([head.name, head.fold])
            content[f"head:{head.name}"] = to_record(head.weights)
    for content in contents.values():
        content["config"]["heads"] = json.dumps(content.pop("heads"))
    answers = _ask(grid, contents, MessageType.TRAIN, plan["timeout_s"] * 2)
    return {k: _aggregate(head, answers.replies, r) for k, head in enumerate(heads)}, answers.failed


def score_round(grid: Grid, nodes: dict[int, str], heads: list[Head], plan: dict[str, Any], last: bool
                ) -> tuple[dict[str, dict[str, dict[str, list]]], dict[int, str]]:  # fmt: skip
    """Head -> site -> scores: the CV heads on each site's held-out subjects and, after the last round, each
    left-out site's head on that site's every subject; and why each failed node sent none.

    Args:
        grid: Flower's grid.
        nodes: node id -> site name.
        heads: the study's heads.
        plan: the study's settings.
        last: whether this is the last round.
    """
    by_name = {name: node for node, name in nodes.items()}
    contents: dict[int, dict[str, Any]] = {}
    for head in heads:
        if head.fold >= 0:
            judges = [(node, HELD_OUT) for node in head.nodes]
            if last and plan.get("personal_epochs"):
                judges += [(node, PERSONALISED) for node in head.nodes]
        elif last and head.judged_on in by_name:
            judges = [(by_name[head.judged_on], EVERY_SUBJECT)]
        else:
            continue
        for node, scope in judges:
            content = contents.setdefault(node, {"heads": []})
            content["heads"].append([head.name, head.fold, scope])
            content[f"head:{head.name}"] = to_record(head.weights)
    for node, content in contents.items():
        config = {
            "heads": json.dumps(content.pop("heads")),
            "cohort": plan["cohorts"][node],
            "personal_epochs": int(plan.get("personal_epochs", 0)),
            "seed": int(plan["settings"]["seed"]),
        }
        content["config"] = ConfigRecord(config)
    said: dict[str, dict[str, dict[str, list]]] = {}
    answers = _ask(grid, contents, MessageType.EVALUATE, plan["timeout_s"])
    for reply in answers.replies:
        for key in reply.content.config_records:
            if key.startswith("scores:"):
                said.setdefault(key.removeprefix("scores:"), {})[nodes[reply.metadata.src_node_id]] = dict(
                    reply.content[key]
                )
    return said, answers.failed


def run_study(grid: Grid, plan: dict[str, Any]) -> dict[str, Any]:
    """The whole study (module docstring); JSON-ready results plus the final head's weights."""
    nodes, cohorts = identify(grid, plan)
    plan = plan | {"cohorts": cohorts}
    heads = study_heads(nodes, plan)
    alone = prepare(grid, nodes, heads, plan)
    progress = Progress(Path(plan["results"]).with_name("progress.jsonl"))
    progress.write(stage="prepared", sites=sorted(nodes.values()))
    for r in range(1, plan["rounds"] + 1):
        started = time.perf_counter()
        heard, failed = train_round(grid, heads, plan, r)
        scores, unscored = score_round(grid, nodes, heads, plan, last=r == plan["rounds"])
        seconds = time.perf_counter() - started
        why = {nodes[n]: reason for n, reason in (unscored | failed).items()}
        for k, head in enumerate(heads):
            dropped = sorted(set(head.nodes.values()) - set(heard[k]))
            head.rounds.append({"round": r, "sites": heard[k], "dropped": dropped, "seconds": seconds,
                                "heads": len(heads), "scores": scores.get(head.name, {}),
                                "personalised": scores.get(f"{head.name}:{PERSONALISED}", {}),
                                "why": {s: why[s] for s in head.nodes.values() if s in why}})  # fmt: skip
        progress.write(stage="round", round=r, of=plan["rounds"], seconds=round(seconds, 2), left=why)
    by_name = {h.name: h for h in heads}
    loso = {h.judged_on: h.rounds[-1]["scores"].get(h.judged_on) for h in heads if h.judged_on}
    return {"sites": sorted(nodes.values()), "folds": [{"rounds": h.rounds} for h in heads if h.fold >= 0],
            "final_rounds": by_name["final"].rounds, "loso": loso, "alone": alone,
            "final_weights": by_name["final"].weights}  # fmt: skip


class Progress:
    """The study's progress, a JSON line per stage (``progress.jsonl`` beside the results) and a log line: a long
    study shows where it is, in either runtime (in deployment the coordinator runs inside the SuperLink)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_text("")

    def write(self, **entry: Any) -> None:
        from flwr.common.logger import log

        with self.path.open("a") as fh:
            fh.write(json.dumps(entry) + "\n")
        left = "; ".join(f"{site} left: {why}" for site, why in entry.get("left", {}).items())
        log(logging.INFO, "federated study: %s %s %s", entry["stage"], entry.get("round", ""), left)
