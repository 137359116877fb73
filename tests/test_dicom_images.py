"""Frames from the DICOM forms scanners store. The reference objects are the test files pydicom's own wheel ships
(pydicom/data/test_files, from the pydicom project): one image stored in many transfer syntaxes and photometric
interpretations must decode to the same RGB frames (lossless syntaxes exactly, lossy ones within a few grey
levels). Dual displays are phantom ultrasound files with two tissue regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import uid

from edge_runtime.dicom.images import DicomImageError, read_dataset, region_frames, rgb_frames
from phantom.dicom import UltrasoundRegion, write_ultrasound_dicom

SHIPPED = Path(pydicom.__file__).parent / "data" / "test_files"
LOSSLESS_SYNTAXES = {
    uid.ImplicitVRLittleEndian,
    uid.ExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.RLELossless,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLSLossless,
    uid.JPEG2000Lossless,
}
FAMILIES = {  # one image each, in every form pydicom ships it: reference first
    "SC_rgb_rle.dcm": [
        "SC_rgb_dcmtk_+eb+cr.dcm",
        "SC_rgb_dcmtk_+eb+cy+n1.dcm",
        "SC_rgb_dcmtk_+eb+cy+np.dcm",
        "SC_rgb_dcmtk_+eb+cy+s2.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
        "SC_rgb_jls_lossy_line.dcm",
        "SC_rgb_gdcm_KY.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
        "SC_rgb_rle_16bit.dcm",
    ],
    "MR_small.dcm": [
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
    ],
}


def _read(name: str):
    path = SHIPPED / name
    assert path.is_file(), f"{name} is not among the test files pydicom ships"
    return read_dataset(path)


@pytest.mark.parametrize("reference", sorted(FAMILIES))
def test_every_transfer_syntax_and_colour_space_decodes_to_the_same_frames(reference: str) -> None:
    expected = rgb_frames(_read(reference))
    assert expected.dtype == np.uint8 and expected.ndim == 4 and expected.shape[-1] == 3
    for name in FAMILIES[reference]:
        ds = _read(name)
        got = rgb_frames(ds)
        assert got.shape == expected.shape, name
        difference = np.abs(got.astype(int) - expected.astype(int))
        lossless = ds.file_meta.TransferSyntaxUID in LOSSLESS_SYNTAXES and "422" not in ds.PhotometricInterpretation
        if lossless:
            assert difference.max() <= 1, f"{name}: a lossless form differs by up to {difference.max()}"
        else:
            assert difference.mean() < 4, f"{name}: mean difference {difference.mean():.1f} grey levels"


def test_palette_colour_deflate_cine_and_monochrome_forms_read_as_rgb() -> None:
    palette = rgb_frames(_read("examples_palette.dcm"))
    assert palette.shape[-1] == 3 and len(np.unique(palette.reshape(-1, 3), axis=0)) > 8  # colours, not greys
    deflated = rgb_frames(_read("image_dfl.dcm"))
    assert deflated.ndim == 4 and deflated.max() > deflated.min()
    assert rgb_frames(_read("examples_ybr_color.dcm")).shape[:2] == (30, 240)  # a YBR_FULL_422 JPEG cine loop
    reversible = rgb_frames(_read("GDCMJ2K_TextGBR.dcm"))  # JPEG 2000, YBR_RCT
    assert reversible.shape == (1, 400, 400, 3) and (reversible[..., 0] != reversible[..., 2]).any()
    cine = _read("SC_rgb_rle_2frame.dcm")
    assert rgb_frames(cine).shape[0] == 2 and len(region_frames(cine)) == 2
    mono2 = _read("MR_small.dcm")
    mono1 = _read("MR_small.dcm")
    mono1.PhotometricInterpretation = "MONOCHROME1"
    np.testing.assert_array_equal(rgb_frames(mono1), 255 - rgb_frames(mono2))


def test_a_dual_display_gives_one_frame_per_tissue_region_left_to_right(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    screen = rng.integers(0, 256, (2, 300, 500, 3), dtype=np.uint8)  # a two-frame cine loop of a dual display
    right, left = UltrasoundRegion(260, 40, 479, 259), UltrasoundRegion(20, 40, 239, 259)
    colour_bar = UltrasoundRegion(485, 40, 495, 259, spatial_format=0, data_type=0)
    path = write_ultrasound_dicom(tmp_path / "dual.dcm", screen, [right, colour_bar, left], "ALOKA", "dual")
    frames = region_frames(read_dataset(path))
    assert [(f.frame, f.region) for f in frames] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    np.testing.assert_array_equal(frames[0].pixels, screen[0, 40:260, 20:240])
    np.testing.assert_array_equal(frames[3].pixels, screen[1, 40:260, 260:480])
    single = write_ultrasound_dicom(tmp_path / "screen.dcm", screen[0], [], "GE", "LOGIQ E10")
    whole = region_frames(read_dataset(single))
    assert len(whole) == 1 and whole[0].region is None and whole[0].pixels.shape == (300, 500, 3)


def test_what_is_not_a_readable_image_is_named(tmp_path: Path) -> None:
    with pytest.raises(DicomImageError, match="received bytes: not a readable DICOM object"):
        read_dataset(b"\x00" * 200)
    outside = write_ultrasound_dicom(
        tmp_path / "outside.dcm", np.zeros((100, 100, 3), np.uint8), [UltrasoundRegion(10, 10, 150, 90)]
    )
    with pytest.raises(DicomImageError, match=r"tissue region \(10, 10, 150, 90\) lies outside the 100x100 image"):
        region_frames(read_dataset(outside))
    no_pixels = read_dataset(outside)
    del no_pixels.PixelData
    with pytest.raises(DicomImageError, match="pixel data cannot be decoded"):
        rgb_frames(no_pixels)
