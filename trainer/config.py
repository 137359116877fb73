"""Run configuration: the paper's protocol as defaults, every knob overridable, saved with every run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

VIEW_SETS = {"clkl": ("liver", "kidney_liver"), "liver": ("liver",), "kidney_liver": ("kidney_liver",)}
TASKS = ("classify", "regress", "both")
PAPER_EPOCHS = {"classify": 1000, "regress": 500, "both": 1000}


@dataclass
class TrainConfig:
    views: str = "clkl"
    task: str = "classify"
    weights: str = "imagenet"
    augment: str = "paper"
    epochs: int | None = None  # None: the paper's 1000 (classify, both) or 500 (regress)
    finetune: str | None = None  # None = frozen backbone; "all" or "blockN"
    pooling: str = "flatten"
    folds: int = 5
    seed: int = 0
    batch_size: int = 64
    learning_rate: float = 1e-4
    momentum: float = 0.9
    strategy: str = "auto"
    cache_dir: str = ".cache/features"
    fatty_threshold: float = 5.0
    bootstrap: int = 1000
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.views not in VIEW_SETS:
            raise ValueError(f"views must be one of {', '.join(VIEW_SETS)}, got {self.views!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.folds < 2:
            raise ValueError("cross-validation needs at least 2 folds")

    @property
    def view_names(self) -> tuple[str, ...]:
        return VIEW_SETS[self.views]

    @property
    def n_epochs(self) -> int:
        return self.epochs if self.epochs is not None else PAPER_EPOCHS[self.task]

    @property
    def outputs(self) -> tuple[str, ...]:
        return {"classify": ("p_fatty",), "regress": ("pdff",), "both": ("p_fatty", "pdff")}[self.task]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        return cls(**json.loads(path.read_text()))
