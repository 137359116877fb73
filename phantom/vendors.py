"""Vendor imaging profiles of the phantom scanners (PHILIPS-like and GE-like).

They differ where real scanners differ and where a model could latch onto the vendor instead of the fat:
centre frequency (speckle size), sector geometry and depth, dynamic range, grey map, and screen layout.
The screen layout names match the default scanner profiles in ``edge_runtime/profiles``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VendorImaging:
    name: str  # vendor label written to the manifest ("PHILIPS" / "GE")
    profile: str  # scanner profile name (screen layout + crop box)
    probe: str
    freq_mhz: tuple[float, float]  # per-subject centre frequency range (preset / harmonics vary)
    depth_cm: float
    probe_radius_cm: float
    half_angle_deg: float
    dynamic_range_db: tuple[float, float]
    gamma: float  # grey map: display = level ** gamma
    s_curve: float  # 0 = linear grey map, >0 adds contrast around mid-grey
    n_depth: int = 480  # polar samples along a scan line
    n_lines: int = 224  # scan lines across the sector

    def grey_map(self, level: np.ndarray) -> np.ndarray:
        """Post-processing curve from normalised log-compressed level [0, 1] to display [0, 1]."""
        out = np.clip(level, 0.0, 1.0) ** self.gamma
        if self.s_curve:
            out = out + self.s_curve * np.sin(2 * np.pi * out) / (2 * np.pi)
        return np.clip(out, 0.0, 1.0)


PHILIPS = VendorImaging(
    name="PHILIPS",
    profile="phantom-philips",
    probe="C5-1",
    freq_mhz=(3.2, 4.5),
    depth_cm=16.0,
    probe_radius_cm=4.5,
    half_angle_deg=35.0,
    dynamic_range_db=(55.0, 65.0),
    gamma=0.85,
    s_curve=0.0,
)

GE = VendorImaging(
    name="GE",
    profile="phantom-ge",
    probe="C1-6",
    freq_mhz=(2.5, 3.6),
    depth_cm=18.0,
    probe_radius_cm=5.5,
    half_angle_deg=31.0,
    dynamic_range_db=(63.0, 75.0),
    gamma=1.1,
    s_curve=0.35,
)

VENDORS: dict[str, VendorImaging] = {v.name: v for v in (PHILIPS, GE)}
