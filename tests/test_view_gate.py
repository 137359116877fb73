"""The bedside's view gate and out-of-distribution guard: routing of named and 'auto' frames, the counters,
the refusal of 'auto' without a gate, marked or withheld results, and the exam that says when it is outside
its training distribution."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import zmq
from helpers import frame_context, runtime_config

from edge_runtime.config import ExamPolicy
from edge_runtime.contracts import (
    AUTO_VIEW,
    FEATURE_MAP,
    VIEW_CLASSES,
    VIEWS,
    ExamEstimate,
    FrameHeader,
    GuardSpec,
    NoCall,
    SpeckleGuardSpec,
    ViewGateSpec,
)
from edge_runtime.errors import FattyLiverError
from edge_runtime.model.bundle import load_bundle
from edge_runtime.model.gate import (
    CLIPPED_SHARE_MAX,
    COLOUR_SHARE_MAX,
    Gate,
    SpeckleGuard,
    ViewGuard,
    ViewHead,
    clipped_share,
    colour_share,
    speckle_texture,
    view_features,
)
from edge_runtime.model.served import ServedModel
from edge_runtime.model.uncertainty import combine_members
from edge_runtime.pipeline.exam import ExamModel, ExamTracker
from edge_runtime.pipeline.frame import FrameContext
from edge_runtime.pipeline.preprocess import preprocess_frame
from edge_runtime.scanners.profiles import default_profiles
from edge_runtime.server import EdgeServer
from edge_runtime.wire.protocol import encode_frame
from phantom.render import profile_for, render_other, render_view
from phantom.subject import draw_cohort


def _constant_head(features: int, favourite: str) -> ViewHead:
    """A view head that always predicts one class with probability ~0.99, whatever the frame."""
    bias = np.zeros(len(VIEW_CLASSES), np.float32)
    bias[VIEW_CLASSES.index(favourite)] = 6.0
    ones = np.ones(features, np.float32)
    return ViewHead(0 * ones, ones, np.zeros((features, len(VIEW_CLASSES)), np.float32), bias)


def _spec(meets_bar: bool = True) -> ViewGateSpec:
    return ViewGateSpec(
        feature_pooling="none",
        confidence_floor=0.9,
        cv_view_swapped=0.0,
        cv_confusion=[[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        cv_recall=dict.fromkeys(VIEW_CLASSES, 1.0),
        cv_other_admitted=0.0,
        frames=dict.fromkeys(VIEW_CLASSES, 1),
        meets_bar=meets_bar,
    )


def _server(bundle_dir: Path, tmp_path: Path, favourite: str | None, meets_bar: bool = True, **tables) -> EdgeServer:
    """A server whose view gate always says ``favourite`` (None: no view gate and no guard)."""
    bundle = copy.copy(load_bundle(bundle_dir))
    if favourite is None:
        bundle.meta, bundle.gate = bundle.meta.model_copy(update={"view_gate": None, "guard": None}), None
    else:
        bundle.meta = bundle.meta.model_copy(update={"view_gate": _spec(meets_bar), "guard": None})
        bundle.gate = Gate(_constant_head(bundle.meta.features.size, favourite), None)
    config = runtime_config(tmp_path, **tables)
    return EdgeServer(config, ServedModel.prepared(bundle, default_profiles(), config), context=zmq.Context())


def _frame(view: str, seq: int, image: np.ndarray, scanner: str) -> FrameContext:
    return frame_context(view, seq, image, scanner, session="exam-1")


@pytest.fixture(scope="module")
def screens() -> dict[str, tuple[str, np.ndarray]]:
    s = draw_cohort(1, 17)[0]
    shots = {v: render_view(s, v, 17).screen for v in ("liver", "kidney_liver")}
    shots |= {k: render_other(s, k, 17).screen for k in ("doppler", "air")}
    return {k: (profile_for(s).name, v) for k, v in shots.items()}


def test_auto_frames_are_routed_by_the_gate_and_others_are_counted(bundle_dir: Path, tmp_path: Path, screens) -> None:
    liver = _server(bundle_dir, tmp_path, "kidney_liver")
    scanner, image = screens["liver"]
    assert liver.pipeline.run(_frame(AUTO_VIEW, 1, image, scanner)) is None  # filed as the head says: no pair yet
    assert liver.bedside.worker.sessions.get("exam-1").views.keys() == {"kidney_liver"}
    other = _server(bundle_dir, tmp_path, "other")
    scanner, image = screens["liver"]  # no kidney in view: the kidney finder does not overrule the head
    assert other.pipeline.run(_frame(AUTO_VIEW, 1, image, scanner)) is None
    counters = other.stats.snapshot()["counters"]
    assert counters["gate_rejected"] == 1 and counters["gate_rejected_other"] == 1
    assert other.bedside.worker.sessions.get("exam-1") is None  # never paired, no session opened


@pytest.mark.parametrize("head_says", ["other", "liver"])
def test_a_kidney_the_finder_is_sure_of_makes_a_kidney_liver_view_whatever_the_head_says(
    bundle_dir: Path, tmp_path: Path, screens, head_says: str
) -> None:
    """A head fitted on a run without severe livers calls their kidney-liver view 'other' or 'liver'; the unlearned
    kidney finder files it, counted, with its evidence as the confidence. Frames of no kidney keep the head's view."""
    server = _server(bundle_dir, tmp_path, head_says)
    scanner, image = screens["kidney_liver"]
    server.pipeline.run(_frame(AUTO_VIEW, 1, image, scanner))
    kept = server.bedside.worker.sessions.get("exam-1").views
    assert kept.keys() == {"kidney_liver"} and kept["kidney_liver"].view_confidence >= 0.9
    assert server.stats.snapshot()["counters"]["view_kidney_found"] == 1
    for seq, shot in enumerate(("doppler", "air", "liver"), start=2):
        server.pipeline.run(_frame(AUTO_VIEW, seq, screens[shot][1], screens[shot][0]))
    assert server.stats.snapshot()["counters"]["view_kidney_found"] == 1
    named_liver = _server(bundle_dir, tmp_path, head_says)  # the header's liver and the head agree or win
    named_liver.pipeline.run(_frame("liver", 1, image, scanner))
    session = named_liver.bedside.worker.sessions.get("exam-1")
    assert session is None or "kidney_liver" not in session.views


def test_a_kidney_the_head_did_not_see_as_a_liver_view_needs_only_a_measurable_case(
    bundle_dir: Path, tmp_path: Path
) -> None:
    """A severe liver's kidney is faint: the finder's case for it can stay between the measurable level (0.7) and
    the level that overrules a head seeing a liver view (0.9), and its head calls the frame 'other'. Two witnesses
    then agree that it is no liver view and that a kidney is there, so the frame is filed; against a head that sees
    a liver view the finder still needs 0.9."""
    subject = draw_cohort(12, 17)[0]
    scanner, image = profile_for(subject).name, render_view(subject, "kidney_liver", 17).screen
    kept = {}
    for head_says in ("other", "liver"):
        server = _server(bundle_dir, tmp_path, head_says)
        server.pipeline.run(_frame(AUTO_VIEW, 1, image, scanner))
        kept[head_says] = server.bedside.worker.sessions.get("exam-1").views
    assert kept["other"].keys() == {"kidney_liver"} and 0.7 <= kept["other"]["kidney_liver"].view_confidence < 0.9
    assert kept["liver"].keys() == {"liver"}


def test_a_confident_gate_overrules_a_named_view_unless_the_header_has_authority(
    bundle_dir: Path, tmp_path: Path, screens
) -> None:
    scanner, image = screens["liver"]
    model = _server(bundle_dir, tmp_path, "kidney_liver")
    model.pipeline.run(_frame("liver", 1, image, scanner))
    assert model.stats.snapshot()["counters"]["view_mismatch"] == 1
    assert model.bedside.worker.sessions.get("exam-1").views.keys() == {"kidney_liver"}
    for config in ({"gate": {"view_authority": "header"}}, {"meets_bar": False}):
        header = _server(bundle_dir, tmp_path, "kidney_liver", **config)
        header.pipeline.run(_frame("liver", 1, image, scanner))
        assert header.bedside.worker.sessions.get("exam-1").views.keys() == {"liver"}, config
        assert header.stats.snapshot()["counters"]["view_mismatch"] == 1, config  # counted whoever wins


def test_colour_in_the_box_is_not_a_view(bundle_dir: Path, tmp_path: Path, screens) -> None:
    profiles = default_profiles()
    scanner, doppler = screens["doppler"]
    assert colour_share(preprocess_frame(doppler, profiles[scanner], harmonisation="none")) > COLOUR_SHARE_MAX
    assert colour_share(preprocess_frame(screens["liver"][1], profiles[scanner], harmonisation="none")) == 0.0
    server = _server(bundle_dir, tmp_path, "liver")
    assert server.pipeline.run(_frame("liver", 1, doppler, scanner)) is None
    assert server.stats.snapshot()["counters"]["gate_rejected_colour"] == 1


def test_sparse_colour_flow_is_doppler_and_yellow_calipers_are_not(screens) -> None:
    """A Doppler box with a little flow colours under 0.3 % of the model input, and used to pass the colour
    check and look like the liver under it; red or blue flow is now enough. Calipers (yellow) stay a view."""
    import cv2

    from edge_runtime.model.gate import has_colour

    scanner, liver = screens["liver"]
    profile = default_profiles()[scanner]
    x, y, w, h = profile.crop_box
    flow, marked = liver.copy(), liver.copy()
    for k, colour in enumerate(((230, 40, 30), (30, 80, 240))):
        cv2.ellipse(flow, (x + w // 3 + 40 * k, y + h // 2), (10, 5), 0.0, 0, 360, colour, -1)
    cv2.line(marked, (x + w // 3, y + h // 2), (x + w // 2, y + h // 2), (255, 255, 0), 1)
    sparse = preprocess_frame(flow, profile, harmonisation="none")
    assert colour_share(sparse) < COLOUR_SHARE_MAX and has_colour(sparse)
    assert not has_colour(preprocess_frame(marked, profile, harmonisation="none"))


def test_has_colour_gives_the_two_count_rule_whatever_the_shortcut() -> None:
    """has_colour skips the flow count on frames with no coloured pixel; on grey frames with a few pixels of
    any colour it must still say exactly what both counts say."""
    from edge_runtime.model.gate import FLOW_SHARE_MAX, flow_share, has_colour

    rng = np.random.default_rng(7)
    for k in range(600):
        image = np.repeat(rng.integers(0, 120, (224, 224, 1), dtype=np.int32), 3, axis=2)
        where = rng.integers(0, 224, (k % 200, 2))
        tint = np.zeros((len(where), 3), np.int32)  # red, green or blue, up to 20-120 levels above the grey
        tint[np.arange(len(where)), rng.integers(0, 3, len(where))] = rng.integers(0, rng.integers(20, 121), len(where))
        image[where[:, 0], where[:, 1]] += tint
        image = image.astype(np.uint8)
        rule = colour_share(image) > COLOUR_SHARE_MAX or flow_share(image) > FLOW_SHARE_MAX
        assert has_colour(image) == rule


def test_auto_without_a_view_gate_is_refused_by_reason(bundle_dir: Path, tmp_path: Path, screens) -> None:
    server = _server(bundle_dir, tmp_path, None)
    scanner, image = screens["liver"]
    header = FrameHeader(1, 1, 1.0, "exam-1", scanner, AUTO_VIEW, image.shape[1], image.shape[0], 3, "raw")
    server.bedside.admission.admit(encode_frame(header, image), 1.0)
    assert server.stats.snapshot()["rejected"] == {"no_view_model": 1} and len(server.bedside.worker.queue) == 0


def _guarded_server(
    bundle_dir: Path, tmp_path: Path, threshold: float, action: str, speckle: SpeckleGuard | None = None
) -> EdgeServer:
    """A server whose guard's feature part flags every frame above ``threshold`` (and whose speckle part, if
    given, is ``speckle`` for both views); no view gate."""
    bundle = copy.copy(load_bundle(bundle_dir))
    size = bundle.meta.features.size
    guard = ViewGuard(np.zeros(size, np.float32), np.ones(size, np.float32), np.eye(1, size, dtype=np.float32),
                      np.ones(1, np.float32), 1.0, threshold)  # fmt: skip
    parts = dict.fromkeys(VIEWS, speckle) if speckle is not None else None
    bundle.gate = Gate(None, {"liver": guard, "kidney_liver": guard}, parts)
    bundle.meta = bundle.meta.model_copy(update={"view_gate": None, "guard": _guard_spec(threshold)})
    config = runtime_config(tmp_path, gate={"out_of_distribution": action})
    return EdgeServer(config, ServedModel.prepared(bundle, default_profiles(), config), context=zmq.Context())


def _guard_spec(threshold: float, speckle: SpeckleGuardSpec | None = None) -> GuardSpec:
    thresholds = {"liver": threshold, "kidney_liver": threshold}
    return GuardSpec(method="test", components=1, false_alarm_target=0.02, thresholds=thresholds, speckle=speckle)


@pytest.mark.parametrize("action", ["mark", "withhold"])
def test_results_beyond_the_guard_are_marked_or_withheld(bundle_dir: Path, tmp_path: Path, screens, action) -> None:
    for threshold, outside in ((1e30, False), (0.0, True)):
        server = _guarded_server(bundle_dir, tmp_path, threshold, action)
        server.pipeline.run(_frame("liver", 1, screens["liver"][1], screens["liver"][0]))
        result = server.pipeline.run(_frame("kidney_liver", 2, screens["kidney_liver"][1], screens["kidney_liver"][0]))
        counters = server.stats.snapshot()["counters"]
        assert counters.get("frames_out_of_distribution", 0) == (2 if outside else 0)
        if outside and action == "withhold":
            assert result is None and counters["results_withheld_out_of_distribution"] == 1
            continue
        assert result.out_of_distribution is outside
        assert result.frames["liver"].out_of_distribution is outside


def _saturated(screen: np.ndarray, profile_name: str) -> np.ndarray:
    """The screen with its B-mode box at four times the gain: much of the sector clips at white."""
    x, y, w, h = default_profiles()[profile_name].crop_box
    out = screen.copy()
    out[y : y + h, x : x + w] = np.clip(out[y : y + h, x : x + w].astype(np.int32) * 4, 0, 255).astype(np.uint8)
    return out


def test_clipped_share_tells_a_saturated_sector_from_speckle(screens) -> None:
    name, screen = screens["liver"]
    profile = default_profiles()[name]
    for harmonisation in ("none", "sector_median"):
        live = preprocess_frame(screen, profile, harmonisation=harmonisation)
        clipped = preprocess_frame(_saturated(screen, name), profile, harmonisation=harmonisation)
        assert clipped_share(live) < 0.01 < CLIPPED_SHARE_MAX < clipped_share(clipped)
    assert clipped_share(np.zeros((224, 224, 3), np.uint8)) == 0.0


def test_a_saturated_frame_is_flagged_clipped_when_its_features_pass(bundle_dir: Path, tmp_path: Path, screens) -> None:
    server = _guarded_server(bundle_dir, tmp_path, 1e30, "mark")  # the feature part never flags here
    name, screen = screens["liver"]
    server.pipeline.run(_frame("liver", 1, _saturated(screen, name), name))
    result = server.pipeline.run(_frame("kidney_liver", 2, screens["kidney_liver"][1], screens["kidney_liver"][0]))
    counters = server.stats.snapshot()["counters"]
    assert counters["frames_out_of_distribution"] == counters["frames_out_of_distribution_clipped"] == 1
    assert "frames_out_of_distribution_features" not in counters
    assert result.out_of_distribution is True
    assert result.frames["liver"].out_of_distribution and not result.frames["kidney_liver"].out_of_distribution


def test_a_frame_whose_speckle_is_unlike_training_is_flagged_speckle(bundle_dir: Path, tmp_path: Path, screens) -> None:
    """The speckle part scores the model input the bedside computed; its flag is counted by name."""
    name, screen = screens["liver"]
    for shift, outside in ((0.0, False), (0.2, True)):  # training speckle is this frame's, or much coarser
        harmonisation = load_bundle(bundle_dir).harmonisation
        tensor = preprocess_frame(screen, default_profiles()[name], harmonisation=harmonisation)
        centre = speckle_texture(tensor) + shift
        part = SpeckleGuard(centre, np.full(2, 0.02, np.float32), np.eye(2, dtype=np.float32), 3.0)
        server = _guarded_server(bundle_dir, tmp_path, 1e30, "mark", part)  # the feature part never flags here
        server.pipeline.run(_frame("liver", 1, screen, name))
        counters = server.stats.snapshot()["counters"]
        assert counters.get("frames_out_of_distribution_speckle", 0) == int(outside)
        assert "frames_out_of_distribution_features" not in counters


def _exam_with_guard_scores(scores: list[float]) -> ExamEstimate:
    """An exam whose pairs carry these guard scores (the larger of the pair's two frames'), in this order."""
    tracker = ExamTracker(ExamPolicy(min_pairs=3, hold_updates=1, hold_s=0.0), ExamModel(0.5))
    for i, score in enumerate(scores):
        estimate = tracker.add(float(i), combine_members([0.9], [12.0]), guard_score=score)
    return estimate


def test_the_exam_says_when_its_pairs_lie_outside_the_training_distribution() -> None:
    estimate = _exam_with_guard_scores([0.5, 0.5, 1.5, 1.5, 1.5, 1.5])
    assert estimate.call is None and estimate.why == NoCall.OUTSIDE_TRAINING and "outside" in estimate.reason
    assert "4 of 6" in estimate.reason and "limit 1" in estimate.reason


def test_one_rendering_just_over_the_guard_limit_does_not_silence_the_exam() -> None:
    """A severe liver's kidney-liver view shown at two gains, one scoring 1.01: every pair with it is flagged, and
    a count of flagged pairs called or silenced the exam by which rendering happened to pair more often."""
    for first in (1.01, 0.8):
        scores = [first if i % 2 == 0 else 1.81 - first for i in range(13)]  # 7 of 13 flagged, then 6 of 13
        estimate = _exam_with_guard_scores(scores)
        assert estimate.why != NoCall.OUTSIDE_TRAINING and estimate.pdff is not None, (first, estimate.reason)


def test_pairs_far_outside_training_silence_the_exam_though_a_minority() -> None:
    estimate = _exam_with_guard_scores([0.7, 3.0] * 5 + [0.7] * 3)  # 5 of 13 pairs far beyond the limit
    assert estimate.call is None and estimate.why == NoCall.OUTSIDE_TRAINING


def test_a_single_wild_pair_does_not_silence_the_exam() -> None:
    estimate = _exam_with_guard_scores([0.6] * 6 + [50.0] + [0.6] * 6)  # a glitch the guard rightly flags
    assert estimate.why != NoCall.OUTSIDE_TRAINING and estimate.pdff is not None


def test_gate_arrays_round_trip_and_a_wrong_shape_names_the_file() -> None:
    head = _constant_head(8, "kidney_liver")
    guard = ViewGuard(*(np.ones(8, np.float32), np.ones(8, np.float32)), np.eye(2, 8, dtype=np.float32),
                      np.ones(2, np.float32), 2.0)  # fmt: skip
    speckle = SpeckleGuard(np.array([0.6, 0.25], np.float32), np.array([0.05, 0.02], np.float32), np.eye(2))
    gate = Gate(head, {"liver": guard, "kidney_liver": guard}, {"liver": speckle, "kidney_liver": speckle})
    spec = _guard_spec(3.0, speckle=SpeckleGuardSpec(method="test", thresholds={"liver": 4.0, "kidney_liver": 4.0}))
    back = Gate.from_bytes(gate.to_bytes(), "gate.npz", 8, "none", spec)
    assert back.view_head.classify(np.zeros(8))[0] == "kidney_liver"
    assert back.guards["liver"].score(np.ones(8)) == pytest.approx(guard.score(np.ones(8)))
    assert back.guards["liver"].threshold == 3.0 and back.speckle["liver"].threshold == 4.0  # bundle.json's
    assert back.speckle["kidney_liver"].scores(np.array([0.65, 0.25]))[0] == pytest.approx(1.0)
    assert Gate.from_bytes(gate.to_bytes(), "gate.npz", 8, "none", _guard_spec(3.0)).speckle is None  # not fitted
    without = Gate(head, gate.guards).to_bytes()
    with pytest.raises(FattyLiverError, match=r"gate\.npz: array 'speckle_liver_mean' missing"):
        Gate.from_bytes(without, "gate.npz", 8, "none", spec)
    with pytest.raises(FattyLiverError, match=r"gate\.npz: view weights \(8, 3\), expected \(16, 3\)"):
        Gate.from_bytes(gate.to_bytes(), "gate.npz", 16, "none", None)
    with pytest.raises(FattyLiverError, match=r"gate\.npz: not a readable npz"):
        Gate.from_bytes(b"tampered", "gate.npz", 8, "none", None)


def test_the_view_head_reads_quadrant_means_of_the_feature_map() -> None:
    """grid2: four overlapping quadrants of the 7x7x512 map, each channel averaged, 2 048 numbers; a bundle whose
    encoder does not give that map is refused by name."""
    maps = np.zeros((2, *FEATURE_MAP), np.float32)
    maps[0, 4:, 4:, 7] = 1.0  # something in the lower right of the first frame, channel 7
    pooled = view_features(maps.reshape(2, -1), "grid2")
    assert pooled.shape == (2, 4 * FEATURE_MAP[2]) and not pooled[1].any()
    quadrant = pooled[0].reshape(4, FEATURE_MAP[2])  # upper left, upper right, lower left, lower right
    assert quadrant[3, 7] == pytest.approx(9 / 16) and quadrant[0, 7] == 0.0 and quadrant[:, :7].sum() == 0.0
    assert view_features(maps[0].ravel(), "grid2").shape == (4 * FEATURE_MAP[2],)
    size = int(np.prod(FEATURE_MAP))
    head = ViewHead(np.zeros(2048, np.float32), np.ones(2048, np.float32), np.zeros((2048, 3), np.float32),
                    np.array([0.0, 5.0, 0.0], np.float32), "grid2")  # fmt: skip
    back = Gate.from_bytes(Gate(head, None).to_bytes(), "gate.npz", size, "grid2", None)
    assert back.view_head.classify(maps[0].ravel())[0] == "kidney_liver"
    with pytest.raises(FattyLiverError, match=r"gate\.npz: view head pools a \(7, 7, 512\) map, but the encoder gives"):
        Gate.from_bytes(Gate(head, None).to_bytes(), "gate.npz", 512, "grid2", None)


def test_a_frozen_screen_is_one_image_not_a_stream_of_new_pairs(bundle_dir: Path, tmp_path: Path, screens) -> None:
    """Resent, or with a frame grabber's noise on it, the same image is counted frames_repeated and never paired
    again; the next live frame (new speckle) pairs. repeated_frame_max_diff = 0 pairs every frame."""
    (scanner, liver), (_, kidney) = screens["liver"], screens["kidney_liver"]
    noisy = np.clip(kidney.astype(np.int16) + np.random.default_rng(0).integers(-2, 3, kidney.shape), 0, 255)
    live = render_view(draw_cohort(1, 17)[0], "kidney_liver", 17, frame=1).screen
    server = _server(bundle_dir, tmp_path, None)
    frames = [("liver", liver), ("kidney_liver", kidney), ("kidney_liver", kidney), ("kidney_liver", noisy)]
    results = [
        server.pipeline.run(_frame(v, i, image.astype(np.uint8), scanner)) for i, (v, image) in enumerate(frames)
    ]
    assert results[0] is None and results[1] is not None and results[2:] == [None, None]
    assert server.stats.snapshot()["counters"]["frames_repeated"] == 2
    again = server.pipeline.run(_frame("kidney_liver", 9, live, scanner))
    assert again is not None and again.frames["kidney_liver"].seq == 9 and again.exam.n_pairs == 2

    always = _server(bundle_dir, tmp_path, None, gate={"repeated_frame_correlation": 1.01})
    assert [
        always.pipeline.run(_frame(v, i, image.astype(np.uint8), scanner)) is None
        for i, (v, image) in enumerate(frames)
    ] == [True, False, False, False]


def test_thumbnails_are_encoded_only_for_the_pairs_that_go_out(
    bundle_dir: Path, tmp_path: Path, screens, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most one pair of thumbnails per session per period is published, so only those crops become JPEGs."""
    import edge_runtime.sinks.results
    from edge_runtime.contracts import TOPIC_THUMBNAIL
    from edge_runtime.sinks.thumbnails import thumbnail_jpeg

    encoded = []
    monkeypatch.setattr(edge_runtime.sinks.results, "thumbnail_jpeg", lambda t: encoded.append(1) or thumbnail_jpeg(t))
    server = _server(bundle_dir, tmp_path, None, thumbnails={"enabled": True, "period_s": 60.0})
    (scanner, liver), (_, kidney) = screens["liver"], screens["kidney_liver"]
    frames = [("liver", liver)] + [("kidney_liver", np.roll(kidney, 3 * k, axis=0)) for k in range(3)]
    results = [server.pipeline.run(_frame(view, i, image, scanner)) for i, (view, image) in enumerate(frames)]
    assert sum(r is not None for r in results) == 3
    sent = [item for item in server.bedside.part("feed").outbox.take(0) if item.topic == TOPIC_THUMBNAIL]
    assert len(sent) == 2 and len(encoded) == 2  # one pair of thumbnails, two JPEGs (not one per frame)
    server.bedside.audit.close()
