"""B-mode image formation, the way a curvilinear scanner builds it.

Polar grid (depth x scan line) -> random scatterers weighted by tissue backscatter -> convolution with a
depth-dependent point-spread function -> electronic noise -> envelope detection (Rayleigh speckle) ->
two-way attenuation alpha*f*z and partial time-gain compensation -> operator gain -> log compression with
a dynamic range -> vendor grey map -> scan conversion to the curvilinear sector.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from phantom.anatomy import VIEW_BUILDERS, TissueMaps
from phantom.subject import Subject
from phantom.vendors import VendorImaging

SPEED_OF_SOUND_MM_US = 1.54
NOMINAL_ATTENUATION = 0.5  # dB/cm/MHz the TGC preset assumes
LATERAL_SIGMAS = (0.8, 1.6, 3.2, 6.4, 12.8)  # scan lines; rows interpolate between these blurs


@dataclass
class BModeImage:
    pixels: np.ndarray  # crop_h x crop_w uint8 grey, black outside the sector
    labels: np.ndarray  # crop_h x crop_w uint8 truth labels (0 outside the sector)


def _polar_grid(imaging: VendorImaging) -> tuple[np.ndarray, np.ndarray]:
    depth = np.linspace(0.0, imaging.depth_cm, imaging.n_depth, dtype=np.float32)
    half = np.deg2rad(imaging.half_angle_deg)
    theta = np.linspace(-half, half, imaging.n_lines, dtype=np.float32)
    return np.meshgrid(depth, theta, indexing="ij")


def _lateral_beam_sigma_lines(depth: np.ndarray, imaging: VendorImaging, freq_mhz: float) -> np.ndarray:
    """Beam width grows away from the focus (Gaussian beam); expressed in scan lines at each depth."""
    wavelength_cm = SPEED_OF_SOUND_MM_US / freq_mhz / 10.0
    focus_cm, aperture_cm = 0.5 * imaging.depth_cm, 3.0
    waist_cm = 1.1 * wavelength_cm * focus_cm / aperture_cm
    rayleigh_cm = 4.0
    width_cm = waist_cm * np.sqrt(1.0 + ((depth - focus_cm) / rayleigh_cm) ** 2)
    line_step_rad = 2 * np.deg2rad(imaging.half_angle_deg) / (imaging.n_lines - 1)
    return width_cm / ((imaging.probe_radius_cm + depth) * line_step_rad)


def _blur_1d(field: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Gaussian blur along one axis, rescaled so unit-variance white noise keeps unit variance."""
    ksize = int(2 * np.ceil(3 * sigma) + 1)
    kernel = cv2.getGaussianKernel(ksize, sigma).astype(np.float32)
    gain = 1.0 / np.sqrt(float(np.sum(kernel**2)))
    if axis == 0:
        out = cv2.sepFilter2D(field, -1, np.ones((1, 1), np.float32), kernel, borderType=cv2.BORDER_REFLECT)
    else:
        out = cv2.sepFilter2D(field, -1, kernel, np.ones((1, 1), np.float32), borderType=cv2.BORDER_REFLECT)
    return out * gain


def _apply_psf(scatter: np.ndarray, depth: np.ndarray, imaging: VendorImaging, freq_mhz: float) -> np.ndarray:
    """Axial pulse length ~ wavelength; lateral width from the beam profile, varying with depth."""
    wavelength_cm = SPEED_OF_SOUND_MM_US / freq_mhz / 10.0
    sample_cm = imaging.depth_cm / (imaging.n_depth - 1)
    axial_sigma = max(0.5, 0.9 * wavelength_cm / sample_cm)
    lateral = _lateral_beam_sigma_lines(depth[:, 0], imaging, freq_mhz)
    log_levels = np.log(np.asarray(LATERAL_SIGMAS))
    pos = np.interp(
        np.log(np.clip(lateral, LATERAL_SIGMAS[0], LATERAL_SIGMAS[-1])), log_levels, np.arange(len(LATERAL_SIGMAS))
    )
    lo = np.floor(pos).astype(int).clip(0, len(LATERAL_SIGMAS) - 2)
    frac = (pos - lo)[:, None].astype(np.float32)

    out = np.empty_like(scatter)
    for part in (0, 1):  # real and imaginary parts: the PSF is linear
        axial = _blur_1d(np.ascontiguousarray(scatter[..., part]), axial_sigma, axis=0)
        blurred = np.stack([_blur_1d(axial, s, axis=1) for s in LATERAL_SIGMAS])
        rows = np.arange(axial.shape[0])
        out[..., part] = blurred[lo, rows] * (1 - frac) + blurred[lo + 1, rows] * frac
    return out


def form_polar_image(
    maps: TissueMaps, depth: np.ndarray, subject: Subject, view_gain_db: float, rng: np.random.Generator
) -> np.ndarray:
    """Tissue maps -> normalised display level in [0, 1] on the polar grid.

    Args:
        maps: tissue maps on the polar grid.
        depth: depth of each polar sample, cm.
        subject: the subject (frequency, gain, TGC, dynamic range, vendor).
        view_gain_db: the operator's gain change for this view.
        rng: the image's random stream.
    """
    imaging = subject.imaging
    f = subject.freq_mhz
    amplitude = np.power(10.0, maps.echo_db / 20.0).astype(np.float32)
    scatter = rng.standard_normal((*depth.shape, 2), dtype=np.float32) * amplitude[..., None] / np.sqrt(2)
    rf = _apply_psf(scatter, depth, imaging, f)
    rf += rng.standard_normal(rf.shape, dtype=np.float32) * np.float32(10 ** (-38 / 20) / np.sqrt(2))
    envelope = np.sqrt(rf[..., 0] ** 2 + rf[..., 1] ** 2)

    sample_cm = imaging.depth_cm / (imaging.n_depth - 1)
    two_way_loss_db = 2.0 * f * np.cumsum(maps.attenuation * sample_cm, axis=0)
    # Noise is added after the attenuation so deep, strongly attenuating livers sink into it.
    signal_db = 20 * np.log10(envelope + 1e-6) - two_way_loss_db
    noise_db = 20 * np.log10(np.abs(rng.standard_normal(depth.shape)).astype(np.float32) * 10 ** (-62 / 20))
    level_db = 10 * np.log10(10 ** (signal_db / 10) + 10 ** (noise_db / 10))
    tgc_db = subject.tgc_compensation * 2.0 * NOMINAL_ATTENUATION * f * depth
    level_db = level_db + tgc_db + subject.gain_db + view_gain_db

    dr = subject.dynamic_range_db
    normalised = (level_db + 0.55 * dr) / dr  # a normal liver, fully compensated, sits at ~55 % grey
    return imaging.grey_map(normalised).astype(np.float32)


def sector_geometry(imaging: VendorImaging, width: int, height: int) -> tuple[float, float]:
    """(pixels per cm, depth in cm of the canvas' top row measured from the probe's centre of curvature)."""
    radius, depth = imaging.probe_radius_cm, imaging.depth_cm
    half = np.deg2rad(imaging.half_angle_deg)
    top = radius * np.cos(half)  # the sector's shallowest corners
    span_z = radius + depth - top
    span_x = 2 * (radius + depth) * np.sin(half)
    scale = min((height - 4) / span_z, (width - 4) / span_x)
    return scale, top - 2 / scale


def depth_to_row(imaging: VendorImaging, width: int, height: int, depth_cm: float) -> int:
    """Canvas row of a depth below the skin on the centre line (for the on-screen depth scale).

    Args:
        imaging: the vendor's imaging geometry.
        width: canvas width, pixels.
        height: canvas height, pixels.
        depth_cm: depth below the skin on the centre line.
    """
    scale, top = sector_geometry(imaging, width, height)
    return round((imaging.probe_radius_cm + depth_cm - top) * scale)


def scan_convert(polar: np.ndarray, labels: np.ndarray, imaging: VendorImaging, width: int, height: int) -> BModeImage:
    """Curvilinear sector on a width x height canvas: apex above the top edge, black outside the sector.

    Args:
        polar: display levels on the polar grid.
        labels: truth labels on the polar grid.
        imaging: the vendor's sector geometry.
        width: canvas width, pixels.
        height: canvas height, pixels.
    """
    radius, depth = imaging.probe_radius_cm, imaging.depth_cm
    half = np.deg2rad(imaging.half_angle_deg)
    scale, top = sector_geometry(imaging, width, height)
    u = (np.arange(width, dtype=np.float32) - width / 2) / scale
    v = np.arange(height, dtype=np.float32) / scale + top
    xx, zz = np.meshgrid(u, v)
    r = np.sqrt(xx**2 + zz**2) - radius
    theta = np.arctan2(xx, zz)
    map_r = (r / depth * (imaging.n_depth - 1)).astype(np.float32)
    map_t = ((theta + half) / (2 * half) * (imaging.n_lines - 1)).astype(np.float32)
    outside = (r < 0) | (r > depth) | (np.abs(theta) > half)
    map_r[outside] = -10
    map_t[outside] = -10
    # remap takes (x = column = scan line, y = row = depth sample).
    pixels = cv2.remap(polar, map_t, map_r, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    lab = cv2.remap(labels, map_t, map_r, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    grey = np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8)
    grey[outside] = 0
    lab[outside] = 0
    return BModeImage(pixels=grey, labels=lab)


def simulate_view(
    subject: Subject, view: str, width: int, height: int, rng: np.random.Generator, builder: Callable | None = None
) -> BModeImage:
    """One B-mode image of one view of one subject, with its truth labels.

    Args:
        subject: the subject.
        view: 'liver' or 'kidney_liver' (or a name for ``builder``'s picture).
        width: B-mode box width, pixels.
        height: B-mode box height, pixels.
        rng: the image's random stream.
        builder: the tissue maps to image (default: the standard view's; phantom.other_views has others).
    """
    imaging = subject.imaging
    depth, theta = _polar_grid(imaging)
    radial = imaging.probe_radius_cm + depth
    x_probe = radial * np.sin(theta)
    z_probe = radial * np.cos(theta) - imaging.probe_radius_cm
    angle = np.deg2rad(subject.probe_angle_deg + (rng.uniform(-4, 4)))
    x_anat = x_probe * np.cos(angle) - z_probe * np.sin(angle)
    z_anat = x_probe * np.sin(angle) + z_probe * np.cos(angle)
    maps = (builder or VIEW_BUILDERS[view])(depth, x_anat, z_anat, imaging.depth_cm, subject, rng)
    view_gain_db = float(rng.normal(0.0, 1.5))  # the operator touches the gain between views
    polar = form_polar_image(maps, depth, subject, view_gain_db, rng)
    return scan_convert(polar, maps.labels, imaging, width, height)
