"""Render one subject's view as a full scanner screen (and its truth mask), deterministically from a seed."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edge_runtime.contracts import VIEWS
from edge_runtime.scanners.profiles import ScannerProfile
from phantom.bmode import simulate_view
from phantom.layouts import get_layout
from phantom.other_views import OTHER_BUILDERS, OTHER_KINDS, colour_flow_box, menu_panel
from phantom.screen import compose_screen, paste_mask
from phantom.subject import Subject


@dataclass
class RenderedView:
    screen: np.ndarray  # H x W x 3 RGB uint8, the whole scanner screen
    mask: np.ndarray  # H x W uint8 truth labels (see phantom.anatomy)


def view_rng(seed: int, subject: Subject, view: str, frame: int = 0) -> np.random.Generator:
    """Independent stream per (cohort seed, subject, view, frame): same inputs, byte-identical output.

    Args:
        seed: the cohort seed.
        subject: the subject (its index).
        view: the view.
        frame: the frame number (speckle realisation) of a live stream.
    """
    return np.random.default_rng([seed, subject.index, VIEWS.index(view), frame])


def profile_for(subject: Subject) -> ScannerProfile:
    """The scanner profile of the subject's screen layout."""
    return get_layout(subject.screen_layout).profile


def shifted(subject: Subject) -> Subject:
    """The same subject imaged unlike anything in training: a much higher centre frequency (finer speckle), a
    narrow dynamic range and gain far above the operators' range (the grey map changes in render_view)."""
    return replace(subject, freq_mhz=subject.freq_mhz * 1.9, dynamic_range_db=38.0, gain_db=subject.gain_db + 16.0)


APPEARANCES = ("standard", "shifted")
SHIFTED_GAMMA = 0.55  # the shifted appearance's grey map: display = level ** gamma (a much brighter map)


def render_view(subject: Subject, view: str, seed: int, frame: int = 0, appearance: str = "standard") -> RenderedView:
    """Args:
    subject: the subject.
    view: 'liver' or 'kidney_liver'.
    seed: the cohort seed.
    frame: the speckle realisation (0 for cohorts).
    appearance: 'standard', or 'shifted' for a rendering the model never saw (out-of-distribution tests).
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")
    layout = get_layout(subject.screen_layout)
    profile = layout.profile
    rng = view_rng(seed, subject, view, frame)
    imaged = shifted(subject) if appearance == "shifted" else subject
    bmode = simulate_view(imaged, view, profile.crop_width, profile.crop_height, rng)
    if appearance == "shifted":
        bmode.pixels[:] = np.clip(255.0 * (bmode.pixels / 255.0) ** SHIFTED_GAMMA, 0, 255).astype(np.uint8)
    stamp = f"2026/01/{1 + subject.index % 28:02d} {8 + subject.index % 9:02d}:{(7 * subject.index) % 60:02d}"
    clutter_rng = np.random.default_rng([seed, subject.index, VIEWS.index(view), frame, 0xC1A7])
    screen = compose_screen(layout, bmode.pixels, subject, view, stamp, clutter_rng)
    return RenderedView(screen=screen, mask=paste_mask(profile, bmode.labels))


@dataclass
class RenderedDual:
    """A dual display: both views of one subject side by side on one screen, each in its own box."""

    screen: np.ndarray
    boxes: list[tuple[int, int, int, int]]  # x, y, width, height of each image, left to right
    views: tuple[str, ...]  # the view each box shows


def render_dual(subject: Subject, seed: int, layout_name: str, frame: int = 0) -> RenderedDual:
    """The subject's liver view in the dual layout's left box and its kidney-liver view in the right one.

    Args:
        subject: the subject (its vendor's physics).
        seed: the cohort seed.
        layout_name: a dual layout (phantom.layouts.DUAL_LAYOUT).
        frame: the speckle realisation.
    """
    layout = get_layout(layout_name)
    if layout.second_box is None:
        raise ValueError(f"{layout_name} is not a dual display")
    images = []
    for view, (_, _, w, h) in zip(VIEWS, layout.boxes, strict=True):
        images.append(simulate_view(subject, view, w, h, view_rng(seed, subject, view, frame)).pixels)
    stamp = f"2026/01/{1 + subject.index % 28:02d} 10:00"
    screen = compose_screen(layout, images[0], subject, VIEWS[0], stamp, None)
    x, y, w, h = layout.second_box
    screen[y : y + h, x : x + w] = images[1][:, :, None]
    return RenderedDual(screen, layout.boxes, VIEWS)


def render_other(subject: Subject, kind: str, seed: int, frame: int = 0) -> RenderedView:
    """A frame that is neither standard view (phantom.other_views), on the subject's own screen layout.

    Args:
        subject: the subject.
        kind: one of OTHER_KINDS.
        seed: the cohort seed.
        frame: the realisation (several other frames of one kind differ).
    """
    if kind not in OTHER_KINDS:
        raise ValueError(f"unknown other-frame kind {kind!r}; expected one of {', '.join(OTHER_KINDS)}")
    layout = get_layout(subject.screen_layout)
    x, y, w, h = layout.profile.crop_box
    rng = np.random.default_rng([seed, subject.index, 100 + OTHER_KINDS.index(kind), frame])
    bmode = simulate_view(subject, kind, w, h, rng, builder=OTHER_BUILDERS[kind])
    if kind == "menu":
        bmode.pixels[:] = 0
    screen = compose_screen(layout, bmode.pixels, subject, kind, "2026/01/01 09:00", None)
    box = screen[y : y + h, x : x + w]
    if kind == "doppler":
        colour_flow_box(box, rng)
    elif kind == "menu":
        menu_panel(box)
    return RenderedView(screen=screen, mask=paste_mask(layout.profile, bmode.labels))
