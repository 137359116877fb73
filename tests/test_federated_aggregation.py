"""The coordinator's aggregation: each head's replies go through its own Flower strategy, and a server optimiser
keeps its state per head across rounds."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.federated.aggregation import ServerSettings, aggregate, new_strategy
from trainer.federated.records import to_record


@pytest.fixture(autouse=True)
def flower_run() -> object:
    """Flower's messages belong to a run: inside the ServerApp Flower sets it; here the test does."""
    from flwr.supercore.task_identity import TaskIdentity

    names = ("run_id", "node_id", "task_id")
    before = {name: getattr(TaskIdentity, f"_{name}") for name in names}
    for name in names:
        setattr(TaskIdentity, name, 1)
    yield
    for name, value in before.items():
        setattr(TaskIdentity, f"_{name}", value)


def _replies(*pairs: tuple[float, int]) -> list[tuple[object, int]]:
    """Sites' trained heads: one kernel filled with ``value``, and the site's example count."""
    return [(to_record({"dense/kernel": np.full((2, 2), value, np.float32)}), n) for value, n in pairs]


def test_fedavg_is_the_example_weighted_average_of_the_replies() -> None:
    strategy = new_strategy("fedavg", ServerSettings(), proximal_mu=0.0)
    start = {"dense/kernel": np.zeros((2, 2), np.float32)}
    said = aggregate(strategy, 1, start, _replies((1.0, 10), (4.0, 30)))
    np.testing.assert_allclose(said["dense/kernel"], 3.25)


def test_fedavgm_carries_the_federation_direction_across_rounds() -> None:
    """Server momentum 0.9, learning rate 1: round 1 takes the average's step; round 2 adds 0.9 of it again."""
    strategy = new_strategy("fedavgm", ServerSettings(learning_rate=1.0, momentum=0.9), proximal_mu=0.0)
    start = {"dense/kernel": np.zeros((2, 2), np.float32)}
    first = aggregate(strategy, 1, start, _replies((1.0, 1), (1.0, 1)))
    np.testing.assert_allclose(first["dense/kernel"], 1.0)
    second = aggregate(strategy, 2, first, _replies((2.0, 1), (2.0, 1)))  # the sites moved 1 again
    np.testing.assert_allclose(second["dense/kernel"], 1.0 + 1.0 + 0.9, rtol=1e-6)
    other = new_strategy("fedavgm", ServerSettings(), proximal_mu=0.0)  # another head: its own momentum
    np.testing.assert_allclose(aggregate(other, 2, first, _replies((2.0, 1)))["dense/kernel"], 2.0)


def test_no_reply_leaves_the_head_as_it_was_and_an_unknown_strategy_is_named() -> None:
    strategy = new_strategy("fedadam", ServerSettings(learning_rate=0.01), proximal_mu=0.0)
    start = {"dense/kernel": np.ones((2, 2), np.float32)}
    assert aggregate(strategy, 1, start, []) is start
    with pytest.raises(ValueError, match="unknown aggregation strategy 'fedsgd'"):
        new_strategy("fedsgd", ServerSettings(), proximal_mu=0.0)
