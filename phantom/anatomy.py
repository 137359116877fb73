"""Tissue maps of the two standard views: where each tissue is, how strongly it scatters, how it attenuates.

Coordinates are centimetres. Body-wall layers follow the probe face (depth along the beam, ``r``); organs
live in anatomy coordinates (``x`` lateral, ``z`` depth) that the probe angle rotates.

How fat shows (what a sonographer reads):
- liver backscatter rises (bright liver) and liver attenuation rises (deep liver darkens);
- portal-vein walls and the diaphragm lose definition;
- the renal cortex does not change, so the hepatorenal contrast rises.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from phantom.subject import Subject

# Label values of the truth masks.
BACKGROUND, LIVER, CORTEX, VESSEL, MEDULLA, SINUS, DIAPHRAGM, SUBCUTANEOUS, MUSCLE = range(9)
LABEL_NAMES = {
    BACKGROUND: "background",
    LIVER: "liver",
    CORTEX: "kidney_cortex",
    VESSEL: "vessel",
    MEDULLA: "medulla",
    SINUS: "renal_sinus",
    DIAPHRAGM: "diaphragm",
    SUBCUTANEOUS: "subcutaneous",
    MUSCLE: "muscle",
}

ANECHOIC_DB = -45.0  # blood: almost no scatterers


def liver_backscatter_db(pdff: float) -> float:
    """Fat droplets add scatterers; the effect saturates at high PDFF, as on real scanners."""
    return 16.0 * (1.0 - np.exp(-pdff / 12.0))


def liver_attenuation(pdff: float) -> float:
    """dB/cm/MHz: ~0.5 in a normal liver, ~0.6 at 12 % PDFF, ~0.75 at 25 %."""
    return 0.45 + 0.012 * pdff


def wall_definition(pdff: float, scale: float) -> float:
    """1.0 = crisp echogenic wall; fades towards 0 as fat raises the surrounding parenchyma."""
    return float(np.exp(-pdff / scale))


@dataclass
class TissueMaps:
    echo_db: np.ndarray  # backscatter amplitude, dB relative to a normal liver
    attenuation: np.ndarray  # dB/cm/MHz
    labels: np.ndarray  # uint8 truth labels


def _ellipse(x: np.ndarray, z: np.ndarray, cx: float, cz: float, a: float, b: float, angle: float) -> np.ndarray:
    """Normalised elliptic radius: < 1 inside the ellipse."""
    c, s = np.cos(angle), np.sin(angle)
    u = (x - cx) * c + (z - cz) * s
    v = -(x - cx) * s + (z - cz) * c
    return np.sqrt((u / a) ** 2 + (v / b) ** 2)


def smooth_noise(shape: tuple[int, int], rng: np.random.Generator, cells: int = 6) -> np.ndarray:
    """Low-frequency texture (~ +/-1) so parenchyma is not a perfectly uniform scatterer field."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def body_wall(r: np.ndarray, subject: Subject, rng: np.random.Generator, maps: TissueMaps) -> np.ndarray:
    """Skin, subcutaneous fat with septa, muscle; returns the depth (along the beam) where the liver starts.

    Args:
        r: depth along each beam, cm.
        subject: the subject (layer thicknesses).
        rng: the image's random stream (septa).
        maps: tissue maps, filled in place.
    """
    skin = 0.15
    subq_end = skin + subject.subcutaneous_cm
    muscle_end = subq_end + subject.muscle_cm
    maps.echo_db[r < skin] = 8.0
    maps.attenuation[r < skin] = 0.8

    in_subq = (r >= skin) & (r < subq_end)
    maps.echo_db[in_subq] = -9.0
    maps.attenuation[in_subq] = 0.63
    maps.labels[in_subq] = SUBCUTANEOUS
    # Fibrous septa: thin bright bands roughly parallel to the skin.
    for depth in rng.uniform(skin + 0.2, subq_end - 0.1, size=max(1, int(subject.subcutaneous_cm * 1.5))):
        band = in_subq & (np.abs(r - depth) < 0.04)
        maps.echo_db[band] = 2.0

    in_muscle = (r >= subq_end) & (r < muscle_end)
    maps.echo_db[in_muscle] = -6.0 + 3.0 * (np.sin(r[in_muscle] * 40.0) > 0.7)
    maps.attenuation[in_muscle] = 1.0
    maps.labels[in_muscle] = MUSCLE
    # Liver capsule / fascia: one bright line.
    maps.echo_db[np.abs(r - muscle_end) < 0.05] = 10.0
    return np.full(r.shape, muscle_end)


def _liver_parenchyma(mask: np.ndarray, subject: Subject, texture: np.ndarray, maps: TissueMaps) -> None:
    maps.echo_db[mask] = liver_backscatter_db(subject.pdff) + subject.liver_echo_offset_db + 0.8 * texture[mask]
    maps.attenuation[mask] = liver_attenuation(subject.pdff)
    maps.labels[mask] = LIVER


def _vessels(
    x: np.ndarray,
    z: np.ndarray,
    within: np.ndarray,
    subject: Subject,
    rng: np.random.Generator,
    n_portal: int,
    n_hepatic: int,
    z_range: tuple[float, float],
    x_range: tuple[float, float],
    maps: TissueMaps,
) -> None:
    """Hepatic veins (anechoic, no wall) and portal veins (anechoic with an echogenic wall that fat hides)."""
    wall_db = 12.0 * wall_definition(subject.pdff, 12.0)
    z_range = (z_range[0], max(z_range[1], z_range[0] + 0.5))
    for kind in ["portal"] * n_portal + ["hepatic"] * n_hepatic:
        cx, cz = rng.uniform(*x_range), rng.uniform(*z_range)
        radius = rng.uniform(0.25, 0.6)
        a, b = radius * rng.uniform(1.0, 2.6), radius
        rho = _ellipse(x, z, cx, cz, a, b, rng.uniform(0, np.pi))
        lumen = within & (rho < 1.0)
        if kind == "portal":
            wall = within & (rho >= 1.0) & (rho < 1.0 + 0.18 / radius)
            maps.echo_db[wall] = maps.echo_db[wall] + wall_db
        maps.echo_db[lumen] = ANECHOIC_DB
        maps.attenuation[lumen] = 0.18
        maps.labels[lumen] = VESSEL


def liver_view(
    r: np.ndarray, x: np.ndarray, z: np.ndarray, depth_cm: float, subject: Subject, rng: np.random.Generator
) -> TissueMaps:
    """Right intercostal liver view: parenchyma with vessels, the diaphragm dome deep in the image.

    Args:
        r: depth along each beam, cm.
        x: lateral anatomy coordinate, cm.
        z: depth anatomy coordinate, cm.
        depth_cm: the preset's imaging depth.
        subject: the subject (fat, biology).
        rng: the image's random stream.
    """
    maps = empty_maps(r.shape)
    liver_top = body_wall(r, subject, rng, maps)
    texture = smooth_noise(r.shape, rng)

    dome_depth = rng.uniform(0.72, 0.86) * depth_cm
    dome = dome_depth + 0.03 * (x - rng.uniform(-2, 2)) ** 2
    liver = (r > liver_top + 0.05) & (z < dome)
    _liver_parenchyma(liver, subject, texture, maps)
    _vessels(x, z, liver, subject, rng, 3, 2, (liver_top.min() + 2.5, dome_depth - 1.5), (-5, 5), maps)

    definition = wall_definition(subject.pdff, 15.0)
    diaphragm = (z >= dome) & (z < dome + 0.25 + 0.35 * (1 - definition))
    maps.echo_db[diaphragm] = 4.0 + 12.0 * definition
    maps.attenuation[diaphragm] = 1.0
    maps.labels[diaphragm] = DIAPHRAGM
    # Beyond the diaphragm: aerated lung, a weak, smeared echo.
    lung = z >= dome + 0.25 + 0.35 * (1 - definition)
    maps.echo_db[lung] = -16.0 + 2.0 * texture[lung]
    maps.attenuation[lung] = 1.5
    return maps


def kidney_liver_view(
    r: np.ndarray, x: np.ndarray, z: np.ndarray, depth_cm: float, subject: Subject, rng: np.random.Generator
) -> TissueMaps:
    """Liver with the right kidney behind it: cortex, darker medullary pyramids, bright central sinus.

    Args:
        r: depth along each beam, cm.
        x: lateral anatomy coordinate, cm.
        z: depth anatomy coordinate, cm.
        depth_cm: the preset's imaging depth.
        subject: the subject (fat, biology).
        rng: the image's random stream.
    """
    maps = empty_maps(r.shape)
    liver_top = body_wall(r, subject, rng, maps)
    texture = smooth_noise(r.shape, rng)

    kx, kz = rng.uniform(0.0, 2.5), rng.uniform(0.5, 0.6) * depth_cm
    ka, kb = rng.uniform(4.6, 5.6), rng.uniform(2.3, 2.8)
    kangle = np.deg2rad(rng.uniform(-25.0, -8.0))
    rho = _ellipse(x, z, kx, kz, ka, kb, kangle)

    # Behind the kidney: retroperitoneal fat and muscle (the liver ends at the kidney's posterior border).
    c, s = np.cos(kangle), np.sin(kangle)
    v = -(x - kx) * s + (z - kz) * c
    posterior = (v > 0) & (rho >= 1.0) & (np.abs((x - kx) * c + (z - kz) * s) < ka * 1.1)
    deep = z > kz + kb * 1.6
    retro = (posterior | deep) & (r > liver_top)

    liver = (r > liver_top + 0.05) & (rho >= 1.12) & ~retro
    _liver_parenchyma(liver, subject, texture, maps)
    _vessels(x, z, liver, subject, rng, 1, 1, (liver_top.min() + 2.0, kz - kb), (-5, -1), maps)

    maps.echo_db[retro] = -7.0 + 1.5 * texture[retro]
    maps.attenuation[retro] = 0.8

    capsule = (rho >= 1.0) & (rho < 1.12)
    maps.echo_db[capsule] = 9.0  # perirenal fat + capsule: bright rim
    maps.attenuation[capsule] = 0.6

    inside = rho < 1.0
    cortex_db = 5.0 + subject.cortex_echo_offset_db  # does not change with liver fat
    maps.echo_db[inside] = cortex_db + 0.5 * texture[inside]
    maps.attenuation[inside] = 0.7
    maps.labels[inside] = CORTEX  # the rim and the columns of Bertin between the pyramids

    # Medullary pyramids: dark, arranged around the sinus.
    n_pyramids = 7
    for k in range(n_pyramids):
        t = np.pi * (k + 0.5) / n_pyramids * 2.0
        px = kx + 0.58 * ka * np.cos(t) * c - 0.58 * kb * np.sin(t) * s
        pz = kz + 0.58 * ka * np.cos(t) * s + 0.58 * kb * np.sin(t) * c
        pyramid = inside & (_ellipse(x, z, px, pz, 0.55, 0.35, t + kangle) < 1.0)
        maps.echo_db[pyramid] = cortex_db - 12.0
        maps.labels[pyramid] = MEDULLA

    sinus = _ellipse(x, z, kx, kz, 0.45 * ka, 0.32 * kb, kangle) < 1.0
    maps.echo_db[sinus] = 9.0 + 2.0 * texture[sinus]
    maps.labels[sinus] = SINUS
    return maps


def empty_maps(shape: tuple[int, ...]) -> TissueMaps:
    return TissueMaps(
        echo_db=np.full(shape, -10.0, dtype=np.float32),
        attenuation=np.full(shape, 0.7, dtype=np.float32),
        labels=np.zeros(shape, dtype=np.uint8),
    )


VIEW_BUILDERS = {"liver": liver_view, "kidney_liver": kidney_liver_view}
