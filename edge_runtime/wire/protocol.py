"""Wire protocol v1: validating and coding ``frame`` messages. The contract itself (topics, FrameHeader,
the result/metrics/heartbeat messages, reject reasons) is declared in :mod:`edge_runtime.contracts`;
docs/ARCHITECTURE.md describes it in full.

Frames: ``[b"frame", header_json, payload]`` from the scanner-side source (PUB bind) to the runtime (SUB).
Results, metrics and heartbeats: ``[topic, json]`` from the runtime (PUB bind) to displays and loggers.

Validation happens in the order that keeps a hostile or broken sender cheap: part count, header size,
JSON, fields and types, limits (before the payload is looked at), payload length; decoding comes later in
the worker. Every rejection has a reason name so it can be counted.
"""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np

from edge_runtime.contracts import (
    AUTO_VIEW,
    ENCODINGS,
    PROTOCOL_VERSION,
    SESSION_PATTERN,
    TOPIC_FRAME,
    VIEWS,
    FrameHeader,
    Message,
    Reject,
    message_bytes,
)
from edge_runtime.errors import FattyLiverError

MAX_HEADER_BYTES = 4096
MAX_DIMENSION = 4096
MIN_DIMENSION = 16


class ProtocolError(FattyLiverError):
    """A message that breaks protocol v1; ``reason`` is what the runtime counts it under (rejected, by reason)."""

    def __init__(self, reason: Reject, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# The header's fields and their JSON types, read off the FrameHeader contract (a float field accepts ints).
_JSON_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,)}
_FIELDS: dict[str, tuple[type, ...]] = {f.name: _JSON_TYPES[str(f.type)] for f in dataclasses.fields(FrameHeader)}


def parse_header(raw: bytes, known_scanners: set[str] | None = None) -> FrameHeader:
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(Reject.HEADER_TOO_LARGE, f"{len(raw)} bytes > {MAX_HEADER_BYTES}")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(Reject.BAD_JSON, str(exc)) from None
    if not isinstance(data, dict):
        raise ProtocolError(Reject.BAD_JSON, f"header is a {type(data).__name__}, not an object")
    for name, types in _FIELDS.items():
        if name not in data:
            raise ProtocolError(Reject.MISSING_FIELD, name)
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise ProtocolError(Reject.BAD_FIELD_TYPE, f"{name}={value!r}")
    if data["v"] != PROTOCOL_VERSION:
        raise ProtocolError(Reject.BAD_VERSION, f"v={data['v']}, this runtime speaks v{PROTOCOL_VERSION}")
    if data["view"] not in VIEWS and data["view"] != AUTO_VIEW:
        raise ProtocolError(Reject.UNKNOWN_VIEW, f"{data['view']!r} (expected {', '.join(VIEWS)} or {AUTO_VIEW})")
    if data["encoding"] not in ENCODINGS:
        raise ProtocolError(Reject.BAD_ENCODING, repr(data["encoding"]))
    if not SESSION_PATTERN.match(data["session"]):
        raise ProtocolError(Reject.BAD_SESSION, "session must be 1-64 of [A-Za-z0-9_.:-] (an exam id, never a name)")
    if known_scanners is not None and data["scanner"] not in known_scanners:
        raise ProtocolError(Reject.UNKNOWN_SCANNER, repr(data["scanner"]))
    w, h, c = data["width"], data["height"], data["channels"]
    if not (MIN_DIMENSION <= w <= MAX_DIMENSION and MIN_DIMENSION <= h <= MAX_DIMENSION) or c not in (1, 3):
        raise ProtocolError(
            Reject.BAD_DIMENSIONS, f"{w}x{h}x{c} (limits {MIN_DIMENSION}..{MAX_DIMENSION}, channels 1|3)"
        )
    if data["seq"] < 0 or not np.isfinite(data["ts"]):
        raise ProtocolError(Reject.BAD_FIELD_TYPE, "seq must be >= 0 and ts finite")
    return FrameHeader(**{k: data[k] for k in _FIELDS})


def check_payload(header: FrameHeader, payload_len: int) -> None:
    """Raw payloads must be exactly w*h*c bytes; compressed ones non-empty and no larger than raw would be."""
    expected = header.width * header.height * header.channels
    if header.encoding == "raw":
        if payload_len != expected:
            raise ProtocolError(
                "payload_size",
                f"{payload_len} bytes, raw {header.width}x{header.height}x{header.channels} needs {expected}",
            )
    elif payload_len == 0 or payload_len > expected + 65536:
        raise ProtocolError(Reject.PAYLOAD_SIZE, f"{payload_len} bytes for a {header.encoding} frame")


def decode_payload(header: FrameHeader, payload: memoryview | bytes) -> np.ndarray:
    """HxWx3 RGB (or HxWx1 grey) uint8; raises ProtocolError('decode_failed' / 'decoded_size')."""
    if header.encoding == "raw":
        return np.frombuffer(payload, dtype=np.uint8).reshape(header.height, header.width, header.channels)
    buffer = np.frombuffer(payload, dtype=np.uint8)
    flag = cv2.IMREAD_GRAYSCALE if header.channels == 1 else cv2.IMREAD_COLOR
    image = cv2.imdecode(buffer, flag)
    if image is None:
        raise ProtocolError(Reject.DECODE_FAILED, f"{header.encoding} payload does not decode")
    if image.shape[:2] != (header.height, header.width):
        raise ProtocolError(
            "decoded_size", f"decoded {image.shape[1]}x{image.shape[0]}, header says {header.width}x{header.height}"
        )
    return image[:, :, None] if header.channels == 1 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def encode_frame(header: FrameHeader, image: np.ndarray) -> list[bytes | memoryview]:
    """Build the multipart frame message (the phantom stream and the grabber use this)."""
    if header.encoding == "raw":
        payload: bytes | memoryview = memoryview(np.ascontiguousarray(image)).cast("B")
    else:
        bgr = image if image.ndim == 2 or image.shape[2] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ext = ".png" if header.encoding == "png" else ".jpg"
        ok, buf = cv2.imencode(ext, bgr)
        if not ok:
            raise ValueError(f"could not encode frame as {header.encoding}")
        payload = buf.tobytes()
    return [TOPIC_FRAME, header.to_json(), payload]


def message_parts(topic: bytes, message: Message) -> list[bytes]:
    """The multipart form of a result, metrics or heartbeat message."""
    return [topic, message_bytes(message)]
