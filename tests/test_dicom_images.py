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

from edge_runtime.sources.dicom.images import DicomImageError, read_dataset, region_frames, rgb_frames
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


LOSSY_MEAN_TOLERANCE = 1.0  # grey levels, on the 224x224 model input: JPEG q95, JPEG-LS NEAR 2, JPEG 2000 10:1


@pytest.fixture(scope="module")
def phantom_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uncompressed phantom ultrasound file: a liver view on its console's screen, its tissue region stated."""
    from phantom.render import profile_for, render_view
    from phantom.subject import draw_cohort

    subject = draw_cohort(2, 5)[0]
    box = profile_for(subject).crop_box
    out = tmp_path_factory.mktemp("forms") / "raw.dcm"
    return write_ultrasound_dicom(out, render_view(subject, "liver", 5).screen, [UltrasoundRegion.of_box(box)])


def _bedside_tensor(path: Path) -> np.ndarray:
    from edge_runtime.pipeline.preprocess import preprocess_frame
    from edge_runtime.pipeline.stages import FULL_FRAME_PROFILE

    return preprocess_frame(region_frames(read_dataset(path))[0].pixels, FULL_FRAME_PROFILE, harmonisation="none")


def _trainer_tensor(path: Path, region: int | None = None) -> np.ndarray:
    from edge_runtime.pipeline.preprocess import preprocess_frame
    from edge_runtime.scanners.profiles import ScannerProfile
    from trainer.images import read_for_profile

    profile = ScannerProfile.from_mapping("site-dicom", {"vendor": "GE", "crop": "dicom-region"})
    return preprocess_frame(read_for_profile(path, profile, 0, region), profile, harmonisation="none")


def test_every_transfer_syntax_the_node_accepts_gives_the_raw_images_tensor(phantom_image: Path, tmp_path: Path):
    """Each form written by kept encoders (pydicom's plugins, dcmtk): the bedside's tensor is the trainer's, and the
    raw image's exactly (lossless) or within a stated tolerance (lossy)."""
    from edge_runtime.sources.dicom.sop import TRANSFER_SYNTAXES
    from phantom.dicom_forms import FORMS, transcode

    raw = _bedside_tensor(phantom_image).astype(int)
    assert {form.uid for form in FORMS.values()} == set(TRANSFER_SYNTAXES)  # every accepted syntax has a twin
    for name, form in FORMS.items():
        path = transcode(phantom_image, tmp_path / f"{name}.dcm", name)
        assert str(pydicom.dcmread(path).file_meta.TransferSyntaxUID) == form.uid, name
        bedside = _bedside_tensor(path)
        assert np.array_equal(bedside, _trainer_tensor(path)), f"{name}: the trainer reads another tensor"
        error = np.abs(bedside.astype(int) - raw)
        if form.lossy:
            assert 0 < error.mean() <= LOSSY_MEAN_TOLERANCE, f"{name}: mean error {error.mean():.3f}"
        else:
            assert error.max() == 0, f"{name}: a lossless form changed the image by up to {error.max()}"


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL", "MONOCHROME2", "MONOCHROME1", "PALETTE COLOR 8",
                                         "PALETTE COLOR 16"])  # fmt: skip
def test_every_photometric_interpretation_gives_the_same_grey_image(phantom_image: Path, tmp_path: Path, photometric):
    from phantom.dicom_forms import with_photometric

    path = with_photometric(phantom_image, tmp_path / "form.dcm", photometric)
    tensor = _bedside_tensor(path)
    assert np.array_equal(tensor, _trainer_tensor(path))
    raw = _bedside_tensor(phantom_image)
    expected = raw if photometric in ("RGB", "YBR_FULL") else np.repeat(raw.max(axis=2, keepdims=True), 3, axis=2)
    assert np.abs(tensor.astype(int) - expected).max() <= (1 if photometric == "YBR_FULL" else 0)


def test_a_dual_display_row_names_its_region_and_reads_what_the_bedside_reads(tmp_path: Path) -> None:
    from phantom.layouts import DUAL_LAYOUT
    from phantom.study import write_dual
    from phantom.subject import draw_cohort
    from trainer.images import ImageReadError

    path = write_dual(tmp_path / "dual.dcm", draw_cohort(2, 6, vendors=("GE",))[0], 6, DUAL_LAYOUT)
    bedside = region_frames(read_dataset(path))
    for k, frame in enumerate(bedside):
        from edge_runtime.pipeline.preprocess import preprocess_frame
        from edge_runtime.pipeline.stages import FULL_FRAME_PROFILE

        expected = preprocess_frame(frame.pixels, FULL_FRAME_PROFILE, harmonisation="none")
        assert np.array_equal(_trainer_tensor(path, region=k), expected)
    with pytest.raises(ImageReadError, match=r"2 2-D tissue regions \(0: x 80-779.*1: x 820-1519.*region column"):
        _trainer_tensor(path)
    with pytest.raises(ImageReadError, match=r"region 2 asked for, but the file holds 2"):
        _trainer_tensor(path, region=2)


@pytest.mark.parametrize(
    ("timing", "expected"),
    [
        ({"FrameTime": "40"}, [0.0, 0.04, 0.08]),
        ({"FrameTimeVector": ["0", "40", "60"]}, [0.0, 0.04, 0.10]),
        ({"FrameTime": "not a number", "CineRate": "25"}, [0.0, 0.04, 0.08]),
        ({"FrameTimeVector": ["0", "40"], "RecommendedDisplayFrameRate": "50"}, [0.0, 0.02, 0.04]),
        ({"FrameTime": "-5"}, [0.0, 0.0, 0.0]),
        ({}, [0.0, 0.0, 0.0]),
    ],
)
def test_a_cine_loops_frames_are_spaced_as_captured_whatever_its_cine_module_holds(timing, expected) -> None:
    """Frame Time, else the Frame Time Vector (PS3.3 C.7.6.5: each frame's increment, the first 0), else a frame
    rate; a value that is unreadable, negative or of the wrong length is passed over, never an error."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset

    from edge_runtime.sources.dicom.store import frame_offsets

    ds = Dataset()
    for keyword, value in timing.items():
        raw = "\\".join(value) if isinstance(value, list) else value  # as a scanner wrote it, unvalidated
        tag = tag_for_keyword(keyword)
        ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw.encode(), 0, True, True)
    assert frame_offsets(ds, 3) == pytest.approx(expected)
