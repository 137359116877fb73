"""Frames that are neither standard view: what a scanner's video output also shows during a real exam.

A bedside gate must keep these out of pairing, so the phantom renders each kind with known truth:
- ``air``: the probe lifted off the skin (ring-down reverberation, then noise);
- ``spleen``, ``gallbladder``, ``bowel_gas``: other organs, the gas with its acoustic shadow;
- ``doppler``: a colour-flow box over the liver;
- ``menu``: a settings menu over a blank image box;
- ``partial_contact``: one side of the sector dark where the probe lost contact.

Each builder takes what phantom.anatomy's view builders take: depth along each beam ``r``, anatomy
coordinates ``x`` and ``z`` (cm), the preset's depth, the subject and the image's random stream.
"""

from __future__ import annotations

import cv2
import numpy as np

from phantom.anatomy import ANECHOIC_DB, LIVER, TissueMaps, body_wall, empty_maps, liver_view, smooth_noise
from phantom.subject import Subject

OTHER_KINDS = ("air", "spleen", "gallbladder", "bowel_gas", "doppler", "menu", "partial_contact")
# Not a kind: a frozen liver frame with calipers still shows the liver (the paper's stills are such frames, and
# the phantom's newer layouts burn calipers into a third of their view frames). What makes freezing matter is
# repetition (one picture weighed many times), a runtime matter, not a view.
SPLEEN = 20  # truth label of spleen parenchyma (beyond the standard views' labels)


def _air_view(r: np.ndarray, x: np.ndarray, z: np.ndarray, depth_cm: float, subject: Subject, rng) -> TissueMaps:
    """No tissue: the lens' ring-down repeats every few millimetres and fades into electronic noise."""
    maps = empty_maps(r.shape)
    maps.echo_db[:] = -70.0
    maps.attenuation[:] = 0.05
    spacing = rng.uniform(0.35, 0.6)
    for k in range(1, int(4.0 / spacing)):
        band = np.abs(r - k * spacing) < 0.05
        maps.echo_db[band] = 12.0 - 9.0 * k * spacing
    return maps


def _spleen_view(r: np.ndarray, x: np.ndarray, z: np.ndarray, depth_cm: float, subject: Subject, rng) -> TissueMaps:
    """Left intercostal: a crescent of homogeneous spleen, no portal tree, lung and kidney tip beyond it."""
    maps = empty_maps(r.shape)
    top = body_wall(r, subject, rng, maps)
    texture = smooth_noise(r.shape, rng)
    cx, cz = rng.uniform(-1.5, 1.5), rng.uniform(0.45, 0.6) * depth_cm
    inner = np.hypot((x - cx) / 7.0, (z - cz - 3.0) / 5.0) < 1.0
    outer = np.hypot((x - cx) / 6.0, (z - cz) / 4.5) < 1.0
    spleen = outer & ~inner & (r > top + 0.05)
    maps.echo_db[spleen] = 3.0 + 0.5 * texture[spleen]
    maps.attenuation[spleen] = 0.55
    maps.labels[spleen] = SPLEEN
    maps.echo_db[(r > top) & ~spleen] = -12.0 + 2.0 * texture[(r > top) & ~spleen]
    return maps


def _gallbladder_view(r, x, z, depth_cm: float, subject: Subject, rng) -> TissueMaps:
    """The liver with a large anechoic gallbladder and bright posterior acoustic enhancement below it."""
    maps = liver_view(r, x, z, depth_cm, subject, rng)
    cx, cz = rng.uniform(-2.0, 2.0), rng.uniform(0.35, 0.5) * depth_cm
    a, b, angle = rng.uniform(3.0, 4.5), rng.uniform(1.2, 1.8), rng.uniform(-0.4, 0.4)
    u = (x - cx) * np.cos(angle) + (z - cz) * np.sin(angle)
    v = -(x - cx) * np.sin(angle) + (z - cz) * np.cos(angle)
    lumen = np.hypot(u / a, v / b) < 1.0
    maps.echo_db[lumen] = ANECHOIC_DB
    maps.attenuation[lumen] = 0.02  # bile barely attenuates: the tissue behind it looks brighter
    maps.labels[lumen] = 0
    return maps


def _bowel_gas_view(r, x, z, depth_cm: float, subject: Subject, rng) -> TissueMaps:
    """Bowel loops: bright gas interfaces casting dark acoustic shadows down the beam."""
    maps = empty_maps(r.shape)
    top = body_wall(r, subject, rng, maps)
    texture = smooth_noise(r.shape, rng)
    belly = r > top
    maps.echo_db[belly] = -4.0 + 3.0 * texture[belly]
    for _ in range(int(rng.integers(2, 5))):
        line = int(rng.integers(0, r.shape[1] - 30))
        width = int(rng.integers(12, 40))
        depth = rng.uniform(3.0, 0.6 * depth_cm)
        beams = slice(line, min(r.shape[1], line + width))
        interface = np.abs(r[:, beams] - depth) < 0.12
        maps.echo_db[:, beams][interface] = 22.0
        maps.attenuation[:, beams][r[:, beams] > depth + 0.12] = 8.0  # gas reflects nearly everything
    return maps


def _partial_contact_view(r, x, z, depth_cm: float, subject: Subject, rng) -> TissueMaps:
    """A liver view where one edge of the probe lifted: those beams carry no echo at all."""
    maps = liver_view(r, x, z, depth_cm, subject, rng)
    lost = int(rng.uniform(0.3, 0.6) * r.shape[1])
    beams = slice(0, lost) if rng.random() < 0.5 else slice(r.shape[1] - lost, r.shape[1])
    maps.echo_db[:, beams] = -70.0
    maps.labels[:, beams][maps.labels[:, beams] == LIVER] = 0
    return maps


# Kinds whose picture is formed by the physics; the others are a liver view changed on the screen.
OTHER_BUILDERS = {
    "air": _air_view,
    "spleen": _spleen_view,
    "gallbladder": _gallbladder_view,
    "bowel_gas": _bowel_gas_view,
    "partial_contact": _partial_contact_view,
    "doppler": liver_view,
    "menu": _air_view,
}


def colour_flow_box(bmode_rgb: np.ndarray, rng: np.random.Generator) -> None:
    """A colour-Doppler box: its outline and red/blue flow patches over the vessels' region, in place."""
    h, w = bmode_rgb.shape[:2]
    x0, y0 = int(rng.uniform(0.25, 0.45) * w), int(rng.uniform(0.2, 0.4) * h)
    bw, bh = int(0.3 * w), int(0.35 * h)
    cv2.rectangle(bmode_rgb, (x0, y0), (x0 + bw, y0 + bh), (200, 200, 200), 1)
    for _ in range(int(rng.integers(3, 7))):
        cx, cy = int(rng.uniform(x0 + 10, x0 + bw - 10)), int(rng.uniform(y0 + 10, y0 + bh - 10))
        axes = (int(rng.uniform(6, 24)), int(rng.uniform(4, 12)))
        colour = (230, 40, 30) if rng.random() < 0.5 else (30, 80, 240)
        cv2.ellipse(bmode_rgb, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)


def menu_panel(bmode_rgb: np.ndarray) -> None:
    """A settings menu drawn over the (empty) image box, in place."""
    h, w = bmode_rgb.shape[:2]
    cv2.rectangle(bmode_rgb, (w // 6, h // 8), (5 * w // 6, 7 * h // 8), (40, 48, 64), -1)
    items = ["Preset: Abdomen", "Probe: curved", "Harmonics: on", "Persistence: 3", "Map: G", "Exit"]
    for i, item in enumerate(items):
        y = h // 8 + 50 + i * max(28, h // 10)
        cv2.putText(bmode_rgb, item, (w // 6 + 30, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (230, 230, 230), 2, cv2.LINE_AA)
