"""The hepatorenal index (HRI): mean echo of liver over mean echo of renal cortex at the same depth, on one
kidney-liver frame and over an exam's frames.

The grey levels are the model input's: the scanner's displayed grey, cropped, area-averaged to the model size and
scaled by one factor (sector-median harmonisation), so the ratio of two means is the displayed image's ratio.
Its uncertainty comes from speckle: each region's standard error uses the effective number of independent
samples that its own lag-one correlations give, and the two combine on the log scale (delta method).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_runtime.contracts import HRI_ABSENT_SAID, ExamHri, HriAbsent, HriReading
from edge_runtime.contracts.constants import MODEL_SIZE
from edge_runtime.measure.regions import KidneyLook, Region, find_regions
from edge_runtime.pipeline.preprocess import SECTOR_FLOOR, channel_max

Z_95 = 1.959964
SATURATED_GREY = 250  # a region pixel at or above this level is clipped
MAX_SATURATED_SHARE = 0.05  # more clipped pixels than this in a region: the ratio is bent, not measured
NOISE_FLOOR_GREY = 2 * SECTOR_FLOOR  # a region whose mean echo is below this holds noise, not tissue
MIN_REGION_PIXELS = 30  # in model-input pixels: a region smaller than this is too small to measure


@dataclass(frozen=True)
class RegionEcho:
    """One region's mean echo, its standard error from speckle, and its size."""

    mean: float
    standard_error: float
    pixels: int
    saturated: float


@dataclass(frozen=True)
class FrameHri:
    """One frame's HRI with its 95 % interval, or the reason it is not measurable; the regions in model-input pixels."""

    value: float | None
    interval: tuple[float, float] | None
    absent: HriAbsent | None
    liver: Region | None = None
    cortex: Region | None = None
    liver_echo: RegionEcho | None = None
    cortex_echo: RegionEcho | None = None

    @property
    def log_standard_error(self) -> float | None:
        """The standard error of log(HRI) its interval states."""
        if self.interval is None:
            return None
        return math.log(self.interval[1] / self.interval[0]) / (2 * Z_95)

    def reading(self, seq: int, box: tuple[int, int, int, int]) -> HriReading:
        """The message form, with the regions in the frame's own pixels (``box``: where the model input was cut
        from the frame, x, y, width, height)."""

        def outline(region: Region | None) -> list[tuple[float, float]] | None:
            if region is None:
                return None
            x, y, w, h = box
            return [(round(x + u * w / MODEL_SIZE, 1), round(y + v * h / MODEL_SIZE, 1)) for u, v in region.outline]

        return HriReading(
            seq=seq,
            value=None if self.value is None else round(self.value, 4),
            interval=None if self.interval is None else (round(self.interval[0], 4), round(self.interval[1], 4)),
            why=self.absent,
            reason=None if self.absent is None else HRI_ABSENT_SAID[self.absent],
            liver_region=outline(self.liver),
            cortex_region=outline(self.cortex),
            liver_echo=None if self.liver_echo is None else round(self.liver_echo.mean, 2),
            cortex_echo=None if self.cortex_echo is None else round(self.cortex_echo.mean, 2),
            box=tuple(int(v) for v in box),
        )

    @classmethod
    def of(cls, reading: HriReading) -> FrameHri:
        """A reading's figures back (the exam combines them)."""
        return cls(reading.value, reading.interval, reading.why)


def _lag_one(grey: np.ndarray, mask: np.ndarray, axis: int) -> float:
    """The correlation of neighbouring pixels inside the region along one axis (speckle's grain)."""
    a = np.take(grey, range(grey.shape[axis] - 1), axis=axis)
    b = np.take(grey, range(1, grey.shape[axis]), axis=axis)
    both = np.take(mask, range(grey.shape[axis] - 1), axis=axis) & np.take(mask, range(1, grey.shape[axis]), axis=axis)
    if both.sum() < 3 or a[both].std() == 0 or b[both].std() == 0:
        return 0.0
    return float(np.clip(np.corrcoef(a[both], b[both])[0, 1], 0.0, 0.95))


def region_echo(grey: np.ndarray, mask: np.ndarray) -> RegionEcho:
    """Mean echo of a region and its standard error over the region's effective independent samples."""
    values = grey[mask]
    rx, ry = _lag_one(grey, mask, 1), _lag_one(grey, mask, 0)
    effective = max(values.size * (1 - rx) * (1 - ry) / ((1 + rx) * (1 + ry)), 1.0)
    error = float(values.std(ddof=1) / math.sqrt(effective)) if values.size > 1 else float("inf")
    saturated = float(np.mean(values >= SATURATED_GREY))
    return RegionEcho(float(values.mean()), error, int(values.size), saturated)


def ratio_interval(liver: RegionEcho, cortex: RegionEcho) -> tuple[float, tuple[float, float]]:
    """The HRI and its 95 % interval (log scale, delta method)."""
    value = liver.mean / cortex.mean
    spread = Z_95 * math.hypot(liver.standard_error / liver.mean, cortex.standard_error / cortex.mean)
    return value, (value * math.exp(-spread), value * math.exp(spread))


def absent_reason(liver: RegionEcho, cortex: RegionEcho) -> HriAbsent | None:
    """Why two found regions still give no number: clipped echoes, or echoes under the noise floor."""
    if max(liver.saturated, cortex.saturated) > MAX_SATURATED_SHARE:
        return HriAbsent.SATURATED
    if min(liver.mean, cortex.mean) < NOISE_FLOOR_GREY:
        return HriAbsent.NOISE_FLOOR
    return None


def measure_frame(tensor: np.ndarray, look: KidneyLook | None = None) -> FrameHri:
    """The HRI of one kidney-liver frame (the model input), or why it is not measurable; ``look`` is the view
    gate's kidney search on this frame, when it made one."""
    grey = channel_max(tensor).astype(np.float32)
    found = find_regions(grey, SECTOR_FLOOR, look)
    if found.kidney is None:
        return FrameHri(None, None, HriAbsent.NO_KIDNEY)
    shape = grey.shape
    cortex_mask = found.cortex.mask(shape) if found.cortex is not None else None
    if cortex_mask is None or cortex_mask.sum() < MIN_REGION_PIXELS:
        return FrameHri(None, None, HriAbsent.CORTEX_TOO_SMALL)
    if found.liver is None or found.liver.mask(shape).sum() < MIN_REGION_PIXELS:
        return FrameHri(None, None, HriAbsent.NO_LIVER_AT_DEPTH, cortex=found.cortex)
    liver, cortex = region_echo(grey, found.liver.mask(shape)), region_echo(grey, cortex_mask)
    reason = absent_reason(liver, cortex)
    if reason is not None:
        return FrameHri(None, None, reason, found.liver, found.cortex, liver, cortex)
    value, interval = ratio_interval(liver, cortex)
    return FrameHri(value, interval, None, found.liver, found.cortex, liver, cortex)


def exam_hri(frames: list[FrameHri]) -> ExamHri:
    """Frames' HRIs combined on the log scale. With three or more frames the interval is the spread between frames
    (which holds speckle, probe position and breathing); with fewer it is speckle's alone."""
    measured = [f for f in frames if f.value is not None]
    if not measured:
        reasons = [f.absent for f in frames if f.absent is not None]
        common = max(set(reasons), key=reasons.count) if reasons else None
        return ExamHri(tried=len(frames), why=common)
    logs = np.log([f.value for f in measured])
    centre = float(logs.mean())
    if len(measured) >= 3:
        error = float(logs.std(ddof=1) / math.sqrt(len(logs)))
    else:
        error = math.sqrt(sum(f.log_standard_error**2 for f in measured)) / len(measured)
    low, high = math.exp(centre - Z_95 * error), math.exp(centre + Z_95 * error)
    interval = (round(low, 4), round(high, 4))
    return ExamHri(value=round(math.exp(centre), 4), interval=interval, frames=len(measured), tried=len(frames))
