"""Render one subject's view as a full scanner screen (and its truth mask), deterministically from a seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.profiles import ScannerProfile
from edge_runtime.schema import VIEWS
from phantom.bmode import simulate_view
from phantom.layouts import get_layout
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


def render_view(subject: Subject, view: str, seed: int, frame: int = 0) -> RenderedView:
    """Args:
    subject: the subject.
    view: 'liver' or 'kidney_liver'.
    seed: the cohort seed.
    frame: the speckle realisation (0 for cohorts).
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")
    layout = get_layout(subject.screen_layout)
    profile = layout.profile
    rng = view_rng(seed, subject, view, frame)
    bmode = simulate_view(subject, view, profile.crop_width, profile.crop_height, rng)
    stamp = f"2026/01/{1 + subject.index % 28:02d} {8 + subject.index % 9:02d}:{(7 * subject.index) % 60:02d}"
    clutter_rng = np.random.default_rng([seed, subject.index, VIEWS.index(view), frame, 0xC1A7])
    screen = compose_screen(layout, bmode.pixels, subject, view, stamp, clutter_rng)
    return RenderedView(screen=screen, mask=paste_mask(profile, bmode.labels))
