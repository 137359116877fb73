"""One phantom subject: the ground truth (PDFF) and the nuisance factors a real exam varies.

The nuisance factors are the reason a single absolute brightness cannot be trusted: operator gain, time-gain
compensation, centre frequency, subcutaneous thickness and probe angle all change the picture, while the
hepatorenal contrast (liver vs kidney cortex at the same depth) stays tied to the fat.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edge_runtime.contracts import FATTY_PDFF
from phantom.vendors import VENDORS, VendorImaging


@dataclass(frozen=True)
class Subject:
    subject_id: str
    index: int
    pdff: float
    vendor: str
    freq_mhz: float
    gain_db: float  # operator gain around the preset
    tgc_compensation: float  # share of the nominal attenuation the operator's TGC undoes (the vendor's range)
    dynamic_range_db: float
    subcutaneous_cm: float
    muscle_cm: float
    probe_angle_deg: float
    liver_echo_offset_db: float  # biological variation of parenchymal backscatter unrelated to fat
    cortex_echo_offset_db: float  # biological variation of renal cortex echogenicity
    layout: str = ""  # screen layout (phantom.layouts); empty: the vendor's classic layout

    @property
    def screen_layout(self) -> str:
        return self.layout or self.imaging.profile

    @property
    def fatty(self) -> bool:
        return self.pdff >= FATTY_PDFF

    @property
    def imaging(self) -> VendorImaging:
        return VENDORS[self.vendor]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def draw_pdff(n_subjects: int, n_fatty: int, rng: np.random.Generator) -> np.ndarray:
    """PDFF like the paper's cohort: normals ~3.0 +/- 0.9 %, fatty >= 5 % with mean ~11.8 % and a long tail."""
    normal = np.clip(rng.normal(3.0, 0.9, n_subjects - n_fatty), 0.5, 4.9)
    # 5 % plus a lognormal excess with mean 6.8 (so the fatty mean is ~11.8 %) and a heavy right tail.
    sigma = 0.75
    mu = np.log(6.8) - sigma**2 / 2
    fatty = np.clip(5.0 + rng.lognormal(mu, sigma, n_fatty), 5.0, 45.0)
    pdff = np.concatenate([normal, fatty])
    return pdff[rng.permutation(n_subjects)]


SEVERE_BANDS = ((5.0, 10.0), (10.0, 15.0), (15.0, 30.0))  # mild, moderate and severe steatosis, in PDFF %


def draw_severity_rich_pdff(n_subjects: int, n_fatty: int, rng: np.random.Generator) -> np.ndarray:
    """PDFF with the fatty subjects spread evenly over the grades (5-10, 10-15, 15-30 %): the sickest livers
    are a third of the fatty ones instead of the paper cohort's long tail; normals as in draw_pdff."""
    normal = np.clip(rng.normal(3.0, 0.9, n_subjects - n_fatty), 0.5, 4.9)
    bands = [SEVERE_BANDS[k % len(SEVERE_BANDS)] for k in range(n_fatty)]
    fatty = np.array([rng.uniform(lo, hi) for lo, hi in bands])
    pdff = np.concatenate([normal, fatty])
    return pdff[rng.permutation(n_subjects)]


PDFF_DISTRIBUTIONS = {"paper": draw_pdff, "severity-rich": draw_severity_rich_pdff}


def draw_cohort(
    n_subjects: int,
    seed: int,
    prevalence: float = 39 / 90,
    id_prefix: str = "PH",
    vendors: tuple[str, ...] = ("PHILIPS", "GE"),
    pdff_distribution: str = "paper",
) -> list[Subject]:
    """Subjects with known PDFF; vendors split evenly within the normal and the fatty group.

    Args:
        n_subjects: how many subjects.
        seed: the cohort seed.
        prevalence: share of fatty subjects.
        id_prefix: subject ids are the prefix plus a 4-digit number.
        vendors: the vendors to split subjects between (the default two keep old cohorts byte-identical).
        pdff_distribution: 'paper' (the paper cohort's long tail) or 'severity-rich' (fatty subjects spread
            evenly over mild, moderate and severe).
    """
    if n_subjects < 1:
        raise ValueError("a cohort needs at least one subject")
    if not 0.0 <= prevalence <= 1.0:
        raise ValueError(f"prevalence must lie in [0, 1], got {prevalence}")
    if pdff_distribution not in PDFF_DISTRIBUTIONS:
        raise ValueError(f"unknown PDFF distribution {pdff_distribution!r}; expected one of {list(PDFF_DISTRIBUTIONS)}")
    rng = np.random.default_rng([seed, 0xC0407])
    n_fatty = round(n_subjects * prevalence)
    pdff = PDFF_DISTRIBUTIONS[pdff_distribution](n_subjects, n_fatty, rng)

    vendor_of = np.empty(n_subjects, dtype=object)
    for group in (pdff >= FATTY_PDFF, pdff < FATTY_PDFF):
        members = np.flatnonzero(group)
        names = np.array(list(vendors) * (len(members) // len(vendors) + 1))[: len(members)]
        vendor_of[members] = names[rng.permutation(len(members))]

    subjects = []
    for i in range(n_subjects):
        imaging = VENDORS[vendor_of[i]]
        subjects.append(
            Subject(
                subject_id=f"{id_prefix}{i + 1:04d}",
                index=i,
                pdff=round(float(pdff[i]), 2),
                vendor=imaging.name,
                freq_mhz=float(rng.uniform(*imaging.freq_mhz)),
                gain_db=float(rng.normal(imaging.gain_offset_db, 6.0)),
                tgc_compensation=float(rng.uniform(*imaging.tgc_range)),
                dynamic_range_db=float(rng.uniform(*imaging.dynamic_range_db)),
                # Subjects with more liver fat tend to carry more subcutaneous fat: a realistic confounder.
                subcutaneous_cm=float(rng.uniform(0.8, 2.4) + 0.03 * pdff[i]),
                muscle_cm=float(rng.uniform(0.6, 1.2)),
                probe_angle_deg=float(rng.uniform(-10.0, 10.0)),
                liver_echo_offset_db=float(rng.normal(0.0, 0.8)),
                cortex_echo_offset_db=float(rng.normal(0.0, 0.7)),
            )
        )
    return subjects
