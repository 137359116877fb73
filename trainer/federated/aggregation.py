"""How the coordinator turns the sites' trained heads into the next global head: Flower's own strategies, one
instance per head of the study (a server optimiser keeps state per model).

- ``fedavg``: the example-weighted average (McMahan et al.).
- ``fedprox``: the same average; the sites add FedProx's proximal pull while they train.
- ``fedavgm``: FedAvg with server momentum (Hsu et al., 2019). The paper's head trains with SGD at lr 1e-4, so a
  round of a few dozen local steps moves it little; server momentum carries the federation's direction across
  rounds, which is what lets a federation reach centralised training in tens of rounds rather than hundreds.
- ``fedadam``: an adaptive server optimiser (Reddi et al., 2021).

Flower's strategies expect to have configured the round themselves (``configure_train`` keeps the weights sent);
the study sends its own messages, so :func:`aggregate` hands them the weights each round before aggregating.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, FedProx
from flwr.serverapp.strategy.fedopt import FedOpt

from trainer.config import FEDERATION_STRATEGIES
from trainer.federated.records import from_record, to_record


@dataclass(frozen=True)
class ServerSettings:
    """The server optimiser's settings (ignored by the plain averages)."""

    learning_rate: float = 1.0  # FedAvgM's server learning rate; FedAdam's eta
    momentum: float = 0.9  # FedAvgM's server momentum


def new_strategy(name: str, server: ServerSettings, proximal_mu: float) -> FedAvg:
    """A Flower strategy for one head: it aggregates that head's replies, round after round."""
    quiet = {"min_train_nodes": 1, "min_evaluate_nodes": 1, "min_available_nodes": 1}
    if name == "fedavgm":
        return FedAvgM(server_learning_rate=server.learning_rate, server_momentum=server.momentum, **quiet)
    if name == "fedadam":
        return FedAdam(eta=server.learning_rate, **quiet)
    if name == "fedprox":
        return FedProx(proximal_mu=proximal_mu, **quiet)
    if name == "fedavg":
        return FedAvg(**quiet)
    raise ValueError(f"unknown aggregation strategy {name!r}; choose one of {', '.join(FEDERATION_STRATEGIES)}")


def aggregate(
    strategy: FedAvg, server_round: int, weights: dict[str, np.ndarray], parts: list[tuple[Any, int]]
) -> dict[str, np.ndarray]:
    """The head's next global weights from the sites' ``(ArrayRecord, examples)`` replies.

    Args:
        strategy: the head's own strategy (from :func:`new_strategy`).
        server_round: the round, from 1.
        weights: the global weights the sites trained from this round.
        parts: each heard site's trained weights and its number of training examples.
    """
    if isinstance(strategy, FedOpt):
        strategy.current_arrays = {name: np.asarray(value) for name, value in weights.items()}
    elif isinstance(strategy, FedAvgM):
        strategy.current_arrays = to_record(weights)
    replies = [
        Message(RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": examples})}),
                dst_node_id=0, message_type=MessageType.TRAIN)
        for arrays, examples in parts
    ]  # fmt: skip
    flower = logging.getLogger("flwr")
    level = flower.level
    flower.setLevel(logging.WARNING)  # a line per head and round would bury the study's own progress lines
    try:
        aggregated, _ = strategy.aggregate_train(server_round, replies)
    finally:
        flower.setLevel(level)
    return weights if aggregated is None else from_record(aggregated)
