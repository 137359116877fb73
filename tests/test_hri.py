"""The hepatorenal index: regions found on phantom kidney-liver frames land in the true liver and cortex, the
number tracks the truth masks', and bad frames give a reason, never a number."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from edge_runtime.contracts import FrameHeader, HriAbsent
from edge_runtime.measure.hri import FrameHri, RegionEcho, exam_hri, measure_frame, ratio_interval
from edge_runtime.pipeline.frame import FrameContext
from edge_runtime.pipeline.preprocess import channel_max
from edge_runtime.pipeline.sessions import ViewFeatures
from edge_runtime.pipeline.stages import MeasureStage
from phantom.anatomy import CORTEX, LIVER
from phantom.render import profile_for, render_view
from phantom.subject import draw_cohort
from phantom.truth import input_and_labels, truth_hri

SEED = 321


@pytest.fixture(scope="module")
def measured() -> list[tuple[float, FrameHri, np.ndarray, float]]:
    subjects = draw_cohort(24, SEED, prevalence=0.6, pdff_distribution="severity-rich")
    out = []
    for subject in subjects:
        tensor, mask = input_and_labels(subject, "kidney_liver", SEED)
        out.append((subject.pdff, measure_frame(tensor), mask, truth_hri(tensor, mask)))
    return out


def test_regions_lie_inside_the_true_liver_and_cortex(measured) -> None:
    numbers = [(hri, mask) for _, hri, mask, _ in measured if hri.value is not None]
    assert len(numbers) >= len(measured) // 2, "most kidney-liver frames of new subjects are measurable"
    placed = 0
    for hri, mask in numbers:
        cortex_in = (mask[hri.cortex.mask(mask.shape)] == CORTEX).mean()
        liver_in = (mask[hri.liver.mask(mask.shape)] == LIVER).mean()
        placed += cortex_in >= 0.95 and liver_in >= 0.95
    assert placed >= 0.9 * len(numbers), f"{placed} of {len(numbers)} frames have both regions inside the masks"


def test_the_index_follows_the_truth_masks_index_and_its_interval_holds_it(measured) -> None:
    pairs = [(hri.value, truth) for _, hri, _, truth in measured if hri.value is not None]
    auto, truth = np.array(pairs).T
    assert spearmanr(auto, truth).statistic >= 0.8
    for _, hri, _, _ in measured:
        if hri.value is not None:
            assert hri.interval[0] < hri.value < hri.interval[1]


def test_a_liver_view_sent_as_kidney_liver_gives_a_reason_not_a_number() -> None:
    subjects = draw_cohort(12, SEED + 1)
    answers = [measure_frame(input_and_labels(s, "liver", SEED + 1)[0]) for s in subjects]
    numbers = [a for a in answers if a.value is not None]
    assert len(numbers) <= 1, f"{len(numbers)} liver views were given an HRI"
    assert all(a.absent is not None for a in answers if a.value is None)


def test_a_saturated_frame_and_a_frame_without_echoes_give_their_reasons() -> None:
    subjects = draw_cohort(8, SEED + 2)
    reasons = []
    for subject in subjects:
        tensor, _ = input_and_labels(subject, "kidney_liver", SEED + 2)
        if measure_frame(tensor).value is None:
            continue
        saturated = measure_frame(np.clip(tensor.astype(np.float64) * 3, 0, 255).astype(np.uint8))
        assert saturated.value is None
        reasons.append(saturated.absent)
    assert reasons and reasons.count(HriAbsent.SATURATED) >= len(reasons) // 2
    dark = measure_frame(np.full((224, 224, 3), 12, np.uint8))
    assert dark.value is None and dark.absent is HriAbsent.NO_KIDNEY


def test_the_ratio_interval_widens_with_speckle_and_frames_combine_on_the_log_scale() -> None:
    quiet = ratio_interval(RegionEcho(120.0, 1.0, 150, 0.0), RegionEcho(100.0, 1.0, 50, 0.0))
    noisy = ratio_interval(RegionEcho(120.0, 6.0, 150, 0.0), RegionEcho(100.0, 6.0, 50, 0.0))
    assert quiet[0] == pytest.approx(1.2) and noisy[0] == pytest.approx(1.2)
    assert noisy[1][1] - noisy[1][0] > 3 * (quiet[1][1] - quiet[1][0])

    def frame(value: float) -> FrameHri:
        echo = RegionEcho(100.0 * value, 2.0, 100, 0.0), RegionEcho(100.0, 2.0, 50, 0.0)
        return FrameHri(value, ratio_interval(*echo)[1], None, liver_echo=echo[0], cortex_echo=echo[1])

    exam = exam_hri([frame(1.4), frame(1.6), frame(1.5), FrameHri(None, None, HriAbsent.NO_KIDNEY)])
    assert exam.frames == 3
    assert exam.value == pytest.approx(float(np.exp(np.log([1.4, 1.6, 1.5]).mean())), abs=1e-4)
    assert exam.interval[0] < 1.5 < exam.interval[1]
    none = exam_hri([FrameHri(None, None, HriAbsent.SATURATED), FrameHri(None, None, HriAbsent.SATURATED)])
    assert none.value is None and none.why is HriAbsent.SATURATED and none.tried == 2


@pytest.mark.slow
def test_a_live_exam_carries_each_frames_regions_in_frame_pixels_and_the_exams_hri(bundle_dir, tmp_path) -> None:
    from helpers import breathed, frame_context, offline_server

    from edge_runtime.contracts import Count, counted

    server = offline_server(bundle_dir, tmp_path)
    subject = draw_cohort(24, SEED, prevalence=0.6, pdff_distribution="severity-rich")[1]
    profile = profile_for(subject)
    screens = {v: render_view(subject, v, SEED).screen for v in ("liver", "kidney_liver")}
    results = []
    for k in range(6):
        for i, view in enumerate(("liver", "kidney_liver")):
            results.append(
                server.pipeline.run(frame_context(view, 2 * k + i, breathed(screens[view], k), profile.name))
            )
    readings = [r.hri for r in results if r is not None and r.trigger == "kidney_liver"]
    assert readings and all(r is not None for r in readings)
    x, y, w, h = profile.box_for(*screens["kidney_liver"].shape[1::-1])
    for reading in readings:
        for outline in (reading.liver_region, reading.cortex_region):
            points = np.array(outline)
            assert (points[:, 0] >= x).all() and (points[:, 0] <= x + w).all()
            assert (points[:, 1] >= y).all() and (points[:, 1] <= y + h).all()
    exam = results[-1].exam.hri
    measured = server.stats.counters[Count.HRI_MEASURED]
    absent = sum(server.stats.counters[counted(reason)] for reason in HriAbsent)
    assert measured + absent == 6 and exam.tried == 6 and exam.frames == measured >= 3
    assert exam.interval[0] < exam.value < exam.interval[1]
    server.bedside.audit.close()


def _kidney_liver_frame(tensor: np.ndarray, session: str, ts: float) -> FrameContext:
    header = FrameHeader(1, int(ts * 100), ts, session, "PHILIPS-like", "kidney_liver", 224, 224, 3, "raw")
    frame = FrameContext(header, b"", ts)
    frame.view, frame.tensor, frame.box = "kidney_liver", tensor, (0, 0, 224, 224)
    frame.kept = ViewFeatures(np.zeros(1, np.float32), header.seq, ts)
    return frame


def test_a_session_is_measured_by_its_own_capture_time_whatever_the_replay_speed() -> None:
    """Frames captured a quarter second apart, handed over at once (a replay), are measured once a second of
    capture time, as they were live; a scanner clock set back starts the count again."""
    subject = draw_cohort(24, SEED, prevalence=0.6, pdff_distribution="severity-rich")[1]
    tensor = input_and_labels(subject, "kidney_liver", SEED)[0]
    stage = MeasureStage(every_s=1.0)
    stamps = [100.0 + 0.25 * k for k in range(8)] + [50.0, 50.5]
    measured = [stage(_kidney_liver_frame(tensor, "replayed", ts)).hri is not None for ts in stamps]
    assert measured == [True, False, False, False, True, False, False, False, True, False]
    assert stage(_kidney_liver_frame(tensor, "another exam", 100.25)).hri is not None


def test_a_frame_the_gate_filed_by_its_kidney_is_searched_once(monkeypatch) -> None:
    """The gate's kidney search travels with the frame: the HRI stage measures on it, with the same answer."""
    from edge_runtime.measure import regions

    subject = draw_cohort(24, SEED, prevalence=0.6, pdff_distribution="severity-rich")[1]
    tensor = input_and_labels(subject, "kidney_liver", SEED)[0]
    alone = measure_frame(tensor)
    searches = []
    real = regions.find_kidney
    monkeypatch.setattr(regions, "find_kidney", lambda smooth: searches.append(1) or real(smooth))
    frame = _kidney_liver_frame(tensor, "rescued", 100.0)
    frame.kidney = regions.look_for_kidney(channel_max(tensor))
    reading = MeasureStage()(frame).hri
    assert len(searches) == 1
    assert reading == alone.reading(frame.header.seq, frame.box)


def test_hostile_frames_give_a_reason_and_never_raise() -> None:
    """Noise, blank, white, stripes and a bright oval: each gets a declared reason (or a number), never an error:
    the measurement must not cost the frame its answer."""
    rng = np.random.default_rng(0)
    oval = np.zeros((224, 224, 3), np.uint8)
    ys, xs = np.mgrid[:224, :224]
    oval[((xs - 112) / 60) ** 2 + ((ys - 120) / 35) ** 2 < 1] = 200
    stripes = (np.sin(np.arange(224) / 3.0)[:, None, None] * 127 + 128).astype(np.uint8).repeat(224, 1).repeat(3, 2)
    frames = [
        np.zeros((224, 224, 3), np.uint8),
        np.full((224, 224, 3), 255, np.uint8),
        rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        oval,
        stripes,
    ]
    for frame in frames:
        answer = measure_frame(frame)
        assert (answer.value is None) == (answer.absent is not None)
