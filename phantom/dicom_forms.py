"""The phantom's DICOM twins in every form a scanner stores: each transfer syntax the bedside accepts and each
photometric interpretation scanners write, from one uncompressed file, so every decoding path has a test with known
truth.

Encoding uses kept tools, never a hand-written codec: pydicom (with pylibjpeg's openjpeg and libjpeg plugins) for
RLE, JPEG-LS and JPEG 2000; dcmtk (Debian's ``dcmtk``: ``dcmcjpeg``, ``dcmconv``) for the JPEG process 1, 2/4 and 14
syntaxes, big endian and deflate, which pydicom does not write.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DicomFormError(RuntimeError):
    """A form could not be written (a missing tool is named, with its Debian package)."""


@dataclass(frozen=True)
class Form:
    """One transfer syntax: how the phantom writes it, and how far a decoded pixel may lie from the original."""

    name: str
    uid: str
    tool: str  # "pydicom" or a dcmtk command line (before the in and out files)
    lossy: bool = False


FORMS: dict[str, Form] = {
    f.name: f
    for f in (
        Form("explicit-le", "1.2.840.10008.1.2.1", "dcmconv +te"),
        Form("implicit-le", "1.2.840.10008.1.2", "dcmconv +ti"),
        Form("big-endian", "1.2.840.10008.1.2.2", "dcmconv +tb"),
        Form("deflate", "1.2.840.10008.1.2.1.99", "dcmconv +td"),
        Form("jpeg-baseline", "1.2.840.10008.1.2.4.50", "dcmcjpeg +eb +q 95", lossy=True),
        Form("jpeg-extended", "1.2.840.10008.1.2.4.51", "dcmcjpeg +ee +q 95", lossy=True),
        Form("jpeg-lossless", "1.2.840.10008.1.2.4.70", "dcmcjpeg +e1"),
        Form("jpeg-lossless-p14", "1.2.840.10008.1.2.4.57", "dcmcjpeg +el"),
        Form("jpeg-ls-lossless", "1.2.840.10008.1.2.4.80", "pydicom"),
        Form("jpeg-ls-near", "1.2.840.10008.1.2.4.81", "pydicom", lossy=True),
        Form("jpeg2000-lossless", "1.2.840.10008.1.2.4.90", "pydicom"),
        Form("jpeg2000", "1.2.840.10008.1.2.4.91", "pydicom", lossy=True),
        Form("rle", "1.2.840.10008.1.2.5", "pydicom"),
    )
}
PHOTOMETRICS = ("RGB", "YBR_FULL", "MONOCHROME2", "MONOCHROME1", "PALETTE COLOR 8", "PALETTE COLOR 16")


def _dcmtk(command: str, src: Path, dst: Path) -> None:
    program, *options = command.split()
    if shutil.which(program) is None:
        raise DicomFormError(f"{program} is not installed (Debian package dcmtk); it writes this DICOM form")
    done = subprocess.run([program, *options, str(src), str(dst)], capture_output=True, text=True)
    if done.returncode != 0:
        raise DicomFormError(f"{program} {' '.join(options)} failed on {src.name}: {done.stderr.strip()[:300]}")


def _pydicom(form: Form, src: Path, dst: Path, use_mct: bool) -> None:
    import pydicom

    ds = pydicom.dcmread(src)
    options: dict = {}
    if form.name == "jpeg-ls-near":
        options["jls_error"] = 2
    if form.name == "jpeg2000":
        options["j2k_cr"] = [10]
    if form.name.startswith("jpeg2000") and ds.SamplesPerPixel == 3 and use_mct:
        # RGB pixels labelled as the colour transform the encoder applies: reversible (RCT) or irreversible (ICT)
        ds.PhotometricInterpretation = "YBR_ICT" if form.lossy else "YBR_RCT"
    try:
        ds.compress(form.uid, **options)
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        raise DicomFormError(f"pydicom cannot write {form.name} from {src.name}: {exc}") from None
    ds.save_as(dst, enforce_file_format=True)


def transcode(src: str | Path, dst: str | Path, form: str, use_mct: bool = True) -> Path:
    """``src`` (an uncompressed file) written in another transfer syntax.

    Args:
        src: an explicit VR little endian file (phantom.dicom.write_ultrasound_dicom).
        dst: where to write.
        form: a key of FORMS.
        use_mct: JPEG 2000 of RGB with the colour transform (photometric YBR_RCT / YBR_ICT) or without (RGB).
    """
    try:
        chosen = FORMS[form]
    except KeyError:
        raise DicomFormError(f"unknown DICOM form {form!r} (known: {', '.join(FORMS)})") from None
    src, dst = Path(src), Path(dst)
    if chosen.tool == "pydicom":
        _pydicom(chosen, src, dst, use_mct)
    else:
        _dcmtk(chosen.tool, src, dst)
    return dst


def with_photometric(src: str | Path, dst: str | Path, photometric: str) -> Path:
    """An uncompressed copy of ``src`` (RGB) in another photometric interpretation: YBR_FULL (pydicom's colour
    conversion), grey (MONOCHROME2, or MONOCHROME1 inverted), or palette colour (a grey ramp lookup table with 8- or
    16-bit entries), as scanners write them. Pixels that were grey stay the same grey in every form."""
    import pydicom
    from pydicom.pixels import convert_color_space

    ds = pydicom.dcmread(src)
    rgb = ds.pixel_array
    if photometric == "RGB":
        pass
    elif photometric == "YBR_FULL":
        ds.PixelData = convert_color_space(rgb, "RGB", "YBR_FULL").tobytes()
        ds.PhotometricInterpretation = "YBR_FULL"
    elif photometric in ("MONOCHROME2", "MONOCHROME1"):
        grey = rgb.max(axis=-1).astype(np.uint8)  # B-mode is grey; colour clutter keeps its brightest channel
        _grey(ds, grey if photometric == "MONOCHROME2" else 255 - grey, photometric)
    elif photometric.startswith("PALETTE COLOR"):
        _palette(ds, rgb.max(axis=-1).astype(np.uint8), 16 if photometric.endswith("16") else 8)
    else:
        raise DicomFormError(f"unknown photometric interpretation {photometric!r} (known: {', '.join(PHOTOMETRICS)})")
    ds.save_as(dst, enforce_file_format=True)
    return Path(dst)


def _grey(ds, pixels: np.ndarray, photometric: str) -> None:
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    if "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()


def _palette(ds, index: np.ndarray, bits: int) -> None:
    """A palette-colour image whose tables map each index back to its grey level (8- or 16-bit entries)."""
    _grey(ds, index, "PALETTE COLOR")
    ramp = np.arange(256, dtype=np.uint16 if bits == 16 else np.uint8)
    entries = ramp * 257 if bits == 16 else ramp
    for k in range(3):  # red, green and blue: descriptor (entries, first index, bits), then the table
        ds.add_new((0x0028, 0x1101 + k), "US", [256, 0, bits])
        ds.add_new((0x0028, 0x1201 + k), "OW", entries.astype(f"<u{bits // 8}").tobytes())
