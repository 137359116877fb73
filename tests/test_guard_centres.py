"""A guard centred on an adapted console: that console's frames are measured from their own mean, on the parent's
spread and thresholds, so its look is in distribution while anything else (on it or on any other console) is not;
the centres travel in gate.npz and bundle.json, and a damaged one is refused by name."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edge_runtime.contracts import GUARD_LIMIT, VIEWS, GuardSpec, SpeckleGuardSpec
from edge_runtime.errors import FattyLiverError
from edge_runtime.model.gate import (
    CENTRE_MAX_WIDENING,
    CLIPPED,
    FEATURES,
    SPECKLE,
    Gate,
    GatePolicy,
    ScannerCentre,
    SpeckleGuard,
    ViewGuard,
    speckle_texture,
)

SIZE = 8
NEW_CONSOLE, KNOWN_CONSOLE = "site-console", "trained-console"


def _speckle_frame(seed: int) -> np.ndarray:
    """A model input of fine random speckle (no clipping: its brightest level is rare)."""
    grey = np.random.default_rng(seed).integers(40, 160, (224, 224), dtype=np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _gate(centres: dict[str, ScannerCentre] | None, texture: np.ndarray) -> Gate:
    """A guard fitted around features 0 (unit spread, threshold 4) and speckle ``texture`` (spread 0.02, limit 3)."""
    guard = ViewGuard(np.zeros(SIZE, np.float32), np.ones(SIZE, np.float32), np.eye(2, SIZE, dtype=np.float32),
                      np.ones(2, np.float32), 1.0, 4.0)  # fmt: skip
    speckle = SpeckleGuard(texture, np.full(2, 0.02, np.float32), np.eye(2, dtype=np.float32), 3.0)
    return Gate(None, dict.fromkeys(VIEWS, guard), dict.fromkeys(VIEWS, speckle), centres)


def _centre(features: np.ndarray, texture: np.ndarray, frames: int = 12, widening: float = 1.0) -> ScannerCentre:
    return ScannerCentre(dict.fromkeys(VIEWS, features), dict.fromkeys(VIEWS, texture), frames, widening)


def test_a_centred_console_is_in_distribution_and_a_new_look_on_it_is_not() -> None:
    tensor = _speckle_frame(1)
    texture = speckle_texture(tensor)
    offset = np.full(SIZE, 3.0, np.float32)  # the new console moves every frame's features by the same amount
    site_frame = offset + np.random.default_rng(2).normal(0, 0.3, SIZE).astype(np.float32)
    gate = _gate({NEW_CONSOLE: _centre(offset, texture + 0.2)}, texture + 0.2)  # training speckle is coarser
    policy = GatePolicy(gate, None, "model")
    assert policy.guard("liver", tensor, site_frame, KNOWN_CONSOLE)[:2] == (True, FEATURES)  # the parent's guard
    assert policy.guard("liver", tensor, site_frame, None)[:2] == (True, FEATURES)
    centred = _gate({NEW_CONSOLE: _centre(offset, texture)}, texture + 0.2)
    assert GatePolicy(centred, None, "model").guard("liver", tensor, site_frame, NEW_CONSOLE)[:2] == (False, None)
    new_look = site_frame + np.eye(1, SIZE, 0, dtype=np.float32)[0] * 6.0  # far from the site's own mean
    assert GatePolicy(centred, None, "model").guard("liver", tensor, new_look, NEW_CONSOLE)[:2] == (True, FEATURES)
    other_speckle = _gate({NEW_CONSOLE: _centre(offset, texture - 0.2)}, texture + 0.2)  # the site's speckle moved
    assert GatePolicy(other_speckle, None, "model").guard("liver", tensor, site_frame, NEW_CONSOLE)[:2] == (
        True,
        SPECKLE,
    )


def test_a_centre_from_few_frames_widens_its_scores_by_one_over_n() -> None:
    """A mean from n frames is itself uncertain: a frame's score from it is divided by 1 + 1/n."""
    tensor = _speckle_frame(3)
    texture = speckle_texture(tensor)
    frame = np.zeros(SIZE, np.float32)
    frame[0] = 3.5  # 6.1 inside the subspace: beyond the threshold of 4, unless halved
    scores = {}
    for frames in (1, 1_000_000):
        gate = _gate({NEW_CONSOLE: _centre(np.zeros(SIZE, np.float32), texture, frames)}, texture)
        scores[frames] = gate.guard_score("liver", tensor, frame, NEW_CONSOLE)[0]
    assert scores[1_000_000] == pytest.approx(2.0 * scores[1], rel=1e-4)
    assert scores[1] < GUARD_LIMIT < scores[1_000_000]


def test_a_console_that_spreads_wider_is_judged_on_its_own_spread_but_never_excuses_saturation() -> None:
    """Widening divides every part of the score, clipping too; capped, so a saturated frame is still flagged."""
    tensor = _speckle_frame(4)
    texture = speckle_texture(tensor)
    mild, saturated = tensor.copy(), tensor.copy()
    mild.reshape(-1, 3)[: int(224 * 224 * 0.08)] = 200  # 8 % of the sector at its top: 1.6 x the clipping limit
    saturated.reshape(-1, 3)[: int(224 * 224 * 0.6)] = 200
    features = np.zeros(SIZE, np.float32)
    narrow = _gate({NEW_CONSOLE: _centre(features, texture)}, texture)
    wide = _gate({NEW_CONSOLE: _centre(features, texture, widening=1.8)}, texture)
    widest = _gate({NEW_CONSOLE: _centre(features, texture, widening=CENTRE_MAX_WIDENING)}, texture)
    assert GatePolicy(narrow, None, "model").guard("liver", mild, features, NEW_CONSOLE)[:2] == (True, CLIPPED)
    assert GatePolicy(wide, None, "model").guard("liver", mild, features, NEW_CONSOLE)[:2] == (False, None)
    assert GatePolicy(wide, None, "model").guard("liver", mild, features, KNOWN_CONSOLE)[:2] == (True, CLIPPED)
    assert GatePolicy(widest, None, "model").guard("liver", saturated, features, NEW_CONSOLE)[:2] == (True, CLIPPED)


def _spec(centres: dict[str, int]) -> GuardSpec:
    return GuardSpec(
        method="test", components=2, false_alarm_target=0.02, thresholds=dict.fromkeys(VIEWS, 4.0),
        speckle=SpeckleGuardSpec(method="test", thresholds=dict.fromkeys(VIEWS, 3.0)), scanner_centres=centres,
    )  # fmt: skip


def test_centres_travel_in_gate_npz_and_a_damaged_one_is_refused_by_name() -> None:
    texture = np.array([0.6, 0.3], np.float32)
    centres = {"b-console": _centre(np.full(SIZE, 2.0, np.float32), texture, 9, widening=1.5),
               "a-console": _centre(np.full(SIZE, -1.0, np.float32), texture, 7)}  # fmt: skip
    data = _gate(centres, texture).to_bytes()
    back = Gate.from_bytes(data, "gate.npz", SIZE, None, _spec({"a-console": 7, "b-console": 9}))
    assert set(back.centres) == {"a-console", "b-console"} and back.centres["b-console"].frames == 9
    assert back.centres["b-console"].widening == 1.5 and back.centres["a-console"].widening == 1.0
    np.testing.assert_array_equal(back.centres["a-console"].features["kidney_liver"], np.full(SIZE, -1.0))
    assert Gate.from_bytes(data, "gate.npz", SIZE, None, _spec({})).centres is None  # bundle.json names none
    with pytest.raises(FattyLiverError, match=r"gate\.npz: array 'centre2_liver_features' missing"):
        Gate.from_bytes(data, "gate.npz", SIZE, None, _spec({"a": 1, "b": 1, "c": 1}))
    short = {"a-console": _centre(np.zeros(SIZE - 1, np.float32), texture, 7)}
    with pytest.raises(FattyLiverError, match=r"gate\.npz: a-console's guard centre has features of shape"):
        Gate.from_bytes(_gate(short, texture).to_bytes(), "gate.npz", SIZE, None, _spec({"a-console": 7}))


def test_a_dozen_subjects_widen_their_centre_only_as_far_as_their_own_held_out_frames_need() -> None:
    """Twelve subjects (24 frames) cannot state the guard's 2 % target, so the widening is the normal prediction
    bound of their held-out scores: the site's own new frames stay in distribution, a console that spreads wider is
    widened further, and a new look on the site's console that the most allowed widening (2x) would excuse is still
    flagged."""
    from trainer.site.gate_refit import widening_for

    tensor = _speckle_frame(5)
    texture = speckle_texture(tensor)
    offset = np.full(SIZE, 3.0, np.float32)

    def score(gate: Gate, frame: np.ndarray) -> float:
        return gate.guard_score("liver", tensor, frame, NEW_CONSOLE)[0]

    def console(spread: float) -> tuple[float, Callable[[float], Gate], np.ndarray, np.ndarray]:
        rng = np.random.default_rng(6)
        local, new = ((offset + rng.normal(0, spread, (n, SIZE))).astype(np.float32) for n in (24, 2000))
        held_out = []
        for k in range(len(local)):
            others = np.delete(local, k, axis=0)
            held_out.append(score(_gate({NEW_CONSOLE: _centre(others.mean(axis=0), texture, 23)}, texture), local[k]))
        centre = local.mean(axis=0)

        def widened(by: float) -> Gate:
            return _gate({NEW_CONSOLE: _centre(centre, texture, 24, widening=by)}, texture)

        return widening_for(held_out, 0.02, subjects=12), widened, new, centre

    narrow, widened, new_frames, centre = console(0.45)
    wide = console(0.6)[0]
    assert 1.0 <= narrow < wide < CENTRE_MAX_WIDENING
    assert np.mean([score(widened(narrow), f) > GUARD_LIMIT for f in new_frames]) <= 0.05
    new_look = centre + np.eye(1, SIZE, 0, dtype=np.float32)[0] * 3.4
    assert score(widened(narrow), new_look) > GUARD_LIMIT
    assert score(widened(CENTRE_MAX_WIDENING), new_look) <= GUARD_LIMIT
    assert widening_for([0.2] * 30, 0.02, 15) == 1.0 and widening_for([5.0] * 30, 0.02, 15) == CENTRE_MAX_WIDENING
    many = list(np.linspace(0.5, 1.5, 99))
    assert widening_for(many, 0.02, 50) == pytest.approx(1.5 - 1.0 / 98)  # the 98 % conformal quantile: 98th of 99
