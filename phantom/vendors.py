"""Vendor imaging profiles of the phantom scanners (PHILIPS-like, GE-like and a third, CANON-like).

They differ where real scanners differ and where a model could latch onto the vendor instead of the fat:
centre frequency (speckle size), sector geometry and depth, dynamic range, grey map, the operators' gain and
TGC habits, and screen layout. The classic screen layout names match the default scanner profiles in
``edge_runtime/profiles``.

The third vendor's parameters lie outside the range of the first two on every axis (higher frequency, so
finer speckle; narrower dynamic range; a brighter grey map with flattened mid-tones; less gain and a steadier
TGC habit),
so "train on two vendors, test on the third" is a real transfer test (``trainer transfer``).
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
    gain_offset_db: float = 0.0  # where this site's operators centre the gain (per-subject sd stays 6 dB)
    tgc_range: tuple[float, float] = (0.6, 1.1)  # share of the nominal attenuation their TGC undoes
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

CANON = VendorImaging(
    name="CANON",
    profile="phantom-canon-1280x800",
    probe="PVI-475BX",
    freq_mhz=(4.8, 6.0),
    depth_cm=15.0,
    probe_radius_cm=4.0,
    half_angle_deg=37.0,
    dynamic_range_db=(44.0, 52.0),
    gamma=0.8,
    s_curve=-0.2,
    gain_offset_db=-3.0,  # the narrow dynamic range makes everything bright, so these operators run less gain
    tgc_range=(0.8, 1.1),
)

VENDORS: dict[str, VendorImaging] = {v.name: v for v in (PHILIPS, GE, CANON)}
