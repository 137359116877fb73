"""What the bedside's DICOM node takes, declared once: the image storage SOP classes and every transfer syntax a
scanner may store in (pydicom and its pylibjpeg, openjpeg and libjpeg plugins decode each; no codec is written
here). Association negotiation accepts exactly these, so a scanner can send in the syntax it stores."""

from __future__ import annotations

from pydicom import uid

IMAGE_STORAGE: tuple[str, ...] = (
    uid.UltrasoundImageStorage,
    uid.UltrasoundMultiFrameImageStorage,
    uid.SecondaryCaptureImageStorage,
    uid.MultiFrameTrueColorSecondaryCaptureImageStorage,
    uid.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    uid.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
)

MULTI_FRAME_STORAGE: frozenset[str] = frozenset(IMAGE_STORAGE) - {
    uid.UltrasoundImageStorage,
    uid.SecondaryCaptureImageStorage,
}  # a reference to one of their frames names the frame; to a single-frame image it must not (PS3.3 C.17.3)

TRANSFER_SYNTAXES: tuple[str, ...] = (
    uid.ImplicitVRLittleEndian,
    uid.ExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.RLELossless,
)
