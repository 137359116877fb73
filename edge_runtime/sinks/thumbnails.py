"""Small JPEGs of what the model saw (the preprocessed view crops), for the bedside display.

Off by default (`serve --thumbnails`): about a millisecond per JPEG, paid only for the pairs that go out (at most
once per `thumbnail_period_s` per session), each under schema.MAX_THUMBNAIL_BYTES.
"""

from __future__ import annotations

import base64

import cv2
import numpy as np

from edge_runtime.contracts import MAX_THUMBNAIL_BYTES, ThumbnailMessage

QUALITIES = (85, 70, 55, 40, 25)  # tried in turn until the JPEG fits


def thumbnail_jpeg(tensor: np.ndarray, max_bytes: int = MAX_THUMBNAIL_BYTES) -> bytes:
    """The model input (RGB uint8) as the best-quality JPEG that fits in max_bytes."""
    bgr = cv2.cvtColor(tensor, cv2.COLOR_RGB2BGR)
    for quality in QUALITIES:
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and encoded.nbytes <= max_bytes:
            return encoded.tobytes()
    small = cv2.resize(bgr, (bgr.shape[1] // 2, bgr.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, QUALITIES[-1]])[1].tobytes()


def thumbnail_message(session: str, view: str, seq: int, ts: float, jpeg: bytes) -> ThumbnailMessage:
    """The thumbnail topic's message for one view of a result.

    Args:
        session: the exam.
        view: which view the crop is of.
        seq: the frame it came from.
        ts: that frame's capture time.
        jpeg: the encoded crop (thumbnail_jpeg).
    """
    return ThumbnailMessage(session=session, view=view, seq=seq, ts=ts, jpeg=base64.b64encode(jpeg).decode())
