"""The head's named arrays in and out of Flower messages (one place, so the site and the coordinator agree)."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord


def to_record(named: dict[str, np.ndarray]) -> ArrayRecord:
    """Named arrays (trainer.federated.local: the MinMax and each layer's kernel and bias) as one ArrayRecord."""
    return ArrayRecord({name: Array(np.ascontiguousarray(value)) for name, value in named.items()})


def from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    """The named arrays a message carries, in the order they were sent."""
    return {name: array.numpy() for name, array in record.items()}
