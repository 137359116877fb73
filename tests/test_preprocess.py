"""One preprocessing function: deterministic, strict about frame size, identical across input formats."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.pipeline.preprocess import MODEL_SIZE, PreprocessError, preprocess_frame
from edge_runtime.scanners.profiles import ProfileError, ScannerProfile, default_profiles, get_profile, load_profiles
from trainer.images import ImageReadError, read_image


@pytest.fixture
def profile() -> ScannerProfile:
    return default_profiles()["phantom-ge"]


@pytest.fixture
def screen(profile: ScannerProfile) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (profile.screen_height, profile.screen_width, 3), dtype=np.uint8)


def test_output_is_224_rgb_uint8_and_deterministic(screen: np.ndarray, profile: ScannerProfile) -> None:
    a = preprocess_frame(screen, profile, harmonisation="none")
    b = preprocess_frame(screen.copy(), profile, harmonisation="none")
    assert a.shape == (MODEL_SIZE, MODEL_SIZE, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)


def test_only_the_crop_box_reaches_the_model(screen: np.ndarray, profile: ScannerProfile) -> None:
    x, y, w, h = profile.crop_box
    altered = screen.copy()
    altered[:y] = 0
    altered[:, :x] = 255  # UI changes outside the crop box must not matter
    assert np.array_equal(
        preprocess_frame(screen, profile, harmonisation="none"),
        preprocess_frame(altered, profile, harmonisation="none"),
    )
    expected = cv2.resize(screen[y : y + h, x : x + w], (224, 224), interpolation=cv2.INTER_AREA)
    assert np.array_equal(preprocess_frame(screen, profile, harmonisation="none"), expected)


def test_grey_and_rgba_frames_become_three_channels(screen: np.ndarray, profile: ScannerProfile) -> None:
    grey = screen[:, :, 0]
    out = preprocess_frame(grey, profile, harmonisation="none")
    assert out.shape == (224, 224, 3)
    assert np.array_equal(out[:, :, 0], out[:, :, 2])
    rgba = np.dstack([screen, np.full(screen.shape[:2], 255, np.uint8)])
    assert np.array_equal(
        preprocess_frame(rgba, profile, harmonisation="none"), preprocess_frame(screen, profile, harmonisation="none")
    )


def test_wrong_frame_size_names_frame_and_profile(profile: ScannerProfile) -> None:
    frame = np.zeros((1080, 1920, 3), np.uint8)
    with pytest.raises(PreprocessError, match=r"1920x1080.*'phantom-ge'.*1680x1050"):
        preprocess_frame(frame, profile, harmonisation="none")


def test_non_uint8_and_odd_shapes_are_rejected(profile: ScannerProfile) -> None:
    with pytest.raises(PreprocessError, match="uint8"):
        preprocess_frame(np.zeros((1050, 1680, 3), np.float32), profile, harmonisation="none")
    with pytest.raises(PreprocessError, match="shape"):
        preprocess_frame(np.zeros((1050, 1680, 2), np.uint8), profile, harmonisation="none")


def test_unknown_profile_and_bad_profile_data() -> None:
    with pytest.raises(ProfileError, match=r"unknown scanner profile 'acme'.*phantom-ge"):
        get_profile(default_profiles(), "acme")
    with pytest.raises(ProfileError, match="outside"):
        load_profiles(extra={"bad": {"vendor": "X", "screen": [100, 100], "crop": [50, 50, 80, 80]}})
    with pytest.raises(ProfileError, match="needs"):
        load_profiles(extra={"bad": {"vendor": "X", "screen": [100, 100]}})
    extra = load_profiles(extra={"ward3-logiq": {"vendor": "GE", "screen": [1280, 1024], "crop": [0, 0, 640, 480]}})
    assert extra["ward3-logiq"].crop_box == (0, 0, 640, 480)


def _write_dicom(path: Path, pixels: np.ndarray) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = UltrasoundImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    photometric = "MONOCHROME2" if pixels.ndim == 2 else "RGB"
    ds.set_pixel_data(pixels, photometric_interpretation=photometric, bits_stored=8)
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize("grey", [False, True])
def test_dicom_and_png_of_the_same_pixels_give_the_same_tensor(
    tmp_path: Path, screen: np.ndarray, profile: ScannerProfile, grey: bool
) -> None:
    pixels = screen[:, :, 0].copy() if grey else screen
    _write_dicom(tmp_path / "frame.dcm", pixels)
    cv2.imwrite(str(tmp_path / "frame.png"), pixels if grey else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    from_dicom = preprocess_frame(read_image(tmp_path / "frame.dcm"), profile, harmonisation="none")
    from_png = preprocess_frame(read_image(tmp_path / "frame.png"), profile, harmonisation="none")
    assert np.array_equal(from_dicom, from_png)
    assert np.array_equal(from_png, preprocess_frame(pixels, profile, harmonisation="none"))


def test_unreadable_images_are_named(tmp_path: Path) -> None:
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match=r"junk\.png"):
        read_image(tmp_path / "junk.png")
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageReadError, match="unsupported"):
        read_image(tmp_path / "notes.txt")


def test_harmonisation_ignores_a_grabbers_noisy_or_lifted_black() -> None:
    """A frame grabber seldom delivers exact black: noise of a grey level or two, or video's limited range (black
    at 16). The sector's median must come from echoes, not from the background, or one image harmonises to two
    brightnesses (and a frozen screen looks like new frames)."""
    from edge_runtime.pipeline.preprocess import SECTOR_MEDIAN_GREY, harmonise
    from phantom.render import profile_for, render_view
    from phantom.subject import draw_cohort

    subject = draw_cohort(1, 17)[0]
    screen = render_view(subject, "kidney_liver", 17).screen
    clean = preprocess_frame(screen, profile_for(subject), harmonisation="none")
    noisy = np.clip(clean.astype(np.int16) + np.random.default_rng(0).integers(0, 3, clean.shape), 0, 255)
    lifted = np.maximum(clean, 16)
    reference = harmonise(clean, "sector_median").astype(np.float32)
    for grabbed in (noisy.astype(np.uint8), lifted):
        harmonised = harmonise(grabbed, "sector_median").astype(np.float32)
        bright = clean.max(axis=2) > 40  # echoes, where the background does not reach
        assert np.median(np.abs(harmonised - reference)[bright]) <= 0.02 * SECTOR_MEDIAN_GREY
