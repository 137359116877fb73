"""The bundle's heads retrained for a site: the run's training subjects plus the site's labelled ones, all through the
bundle's own int8 encoder, with the run's protocol (the paper's head and SGD, its epochs, both outputs, its bagged
ensemble). The head's MinMax is refitted on the same rows, so the site's feature range is part of the head.

Opt-in (`site-adapt --retrain-heads`): recalibrating the parent's heads does better by default. Measured on the
CANON-like vendor over four 12-subject draws judged on 88 others, retraining lowered balanced accuracy from 0.866 to
0.830 and AUC from 0.932 to 0.922 for a smaller PDFF bias (docs/DESIGN.md, "A new scanner at a site"). When it is
asked for, the run's subjects stay in the training set, so the parent's scanners are not forgotten; the features
are the bundle encoder's own, so the retrained head needs no bias correction: its TFLite conversion is checked
against the Keras head.

Nested scoring needs heads that never saw the subjects they score: :meth:`HeadRefit.members_without` trains one
ensemble per set of excluded local folds and caches it (four single folds and six pairs for four folds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clkl.tf_setup import keras
from edge_runtime.contracts import VIEWS
from edge_runtime.model.bundle import head_input_indices
from edge_runtime.model.interpreter import ALL_CORES, make_interpreter
from edge_runtime.model.uncertainty import Members, combine_members
from trainer.config import TrainConfig
from trainer.crossval import bagged_heads, fit_head_on_features, predict_outputs, targets
from trainer.dataset import Cohort
from trainer.export.bedside_head import BedsideHead, ExportError, output_mapping
from trainer.runs import Run

OUTPUTS = ("p_fatty", "pdff")
# The TFLite heads answer what the Keras heads answer, to float32 rounding, which grows with the answer's size (a
# PDFF of tens of percent summed over 50 176 features in another order differs by about 1e-4).
CONVERSION_ATOL, CONVERSION_RTOL = 1e-4, 2e-5


@dataclass
class HeadRefit:
    """The rows every retrained head learns from: the run's training subjects (always) and chosen local ones."""

    config: TrainConfig  # the run's protocol, both outputs
    features: dict[str, np.ndarray]  # view -> (source + local subjects, 1 variant, F): the bundle encoder's
    targets: dict[str, np.ndarray]  # output -> one target per row
    n_source: int
    _cache: dict[frozenset[int], dict[int, Members]] = field(default_factory=dict, init=False)

    @property
    def n_local(self) -> int:
        return len(self.targets["pdff"]) - self.n_source

    def ensemble(self, local_rows: np.ndarray, seed: int) -> list[keras.Model]:
        """The head and its bagged members on the run's subjects plus these local ones (indices among local)."""
        rows = np.concatenate([np.arange(self.n_source), self.n_source + np.asarray(local_rows, dtype=int)])
        head, _ = fit_head_on_features(self.features, self.targets, rows, self.config, seed, "site head", False)
        return [head, *bagged_heads(self.features, self.targets, rows, self.config, (seed, "site bag"), False)]

    def members(self, heads: list[keras.Model], local_rows: np.ndarray) -> dict[int, Members]:
        """Each local row's ensemble answer and spread (as the bedside combines the members)."""
        x = {f"features_{v}": self.features[v][self.n_source + np.asarray(local_rows), 0] for v in VIEWS}
        outputs = [predict_outputs(h, x, OUTPUTS) for h in heads]
        return {
            int(row): combine_members([o["p_fatty"][i] for o in outputs], [o["pdff"][i] for o in outputs])
            for i, row in enumerate(local_rows)
        }

    def members_without(self, folds: np.ndarray, excluded: frozenset[int]) -> dict[int, Members]:
        """The answers for the local subjects of the excluded folds, from an ensemble trained without them."""
        if excluded not in self._cache:
            held = np.isin(folds, list(excluded))
            seed = int(self.config.seed + 1000 + sum(1 << int(k) for k in excluded))
            heads = self.ensemble(np.flatnonzero(~held), seed)
            self._cache[excluded] = self.members(heads, np.flatnonzero(held))
        return self._cache[excluded]


def head_refit(
    run: Run,
    source: Cohort,
    source_features: dict[str, np.ndarray],
    local: Cohort,
    local_features: dict[str, np.ndarray],
) -> HeadRefit:
    """The retraining rows: the run's subjects (features kept by export) and the labelled local ones.

    Args:
        run: the run the bundle was exported from (its protocol).
        source: the run's subjects, in the order of ``source_features``' rows.
        source_features: view -> (subjects, F), the bundle encoder's features of the run's subjects.
        local: the site's labelled subjects.
        local_features: view -> (subjects, F), the bundle encoder's features of the local subjects.
    """
    config = run.config.with_changes(task="both")
    both = {v: np.concatenate([source_features[v], local_features[v]])[:, None, :] for v in VIEWS}
    joined = Cohort([*source.subjects, *local.subjects], {}, source.harmonisation)
    return HeadRefit(config, both, targets(joined, config.outputs, config.fatty_threshold), len(source.subjects))


def converted(heads: list[keras.Model], probe: dict[str, np.ndarray]) -> list[BedsideHead]:
    """Each retrained head as TFLite, its outputs matched by name; refuses a conversion that changes an answer.

    Args:
        heads: the final ensemble, its head on every subject first.
        probe: view -> (rows, F) features to check the conversion on (the local subjects').
    """
    from calibration.convert import convert_head

    out = []
    for head in heads:
        blob = convert_head(head)
        interpreter = make_interpreter(blob, ALL_CORES)
        inputs = head_input_indices(interpreter, Path("head.tflite"))
        member = BedsideHead(blob, interpreter, inputs, output_mapping(interpreter, inputs, head, probe))
        bedside = member.run(probe)
        keras_out = predict_outputs(head, {f"features_{v}": probe[v] for v in VIEWS}, OUTPUTS)
        if not all(converts_faithfully(bedside[k], keras_out[k]) for k in OUTPUTS):
            worst = max(float(np.max(np.abs(bedside[k] - keras_out[k]))) for k in OUTPUTS)
            raise ExportError(f"a retrained head's TFLite conversion changes its answers by up to {worst:g}")
        out.append(member)
    return out


def converts_faithfully(bedside: np.ndarray, keras_out: np.ndarray) -> bool:
    """Whether the TFLite answers equal the Keras ones to float32 rounding of their own size."""
    return bool(np.allclose(bedside, keras_out, rtol=CONVERSION_RTOL, atol=CONVERSION_ATOL))
