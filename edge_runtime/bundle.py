"""Model bundles: the unit that moves from the trainer to the bedside, verified before anything is served.

A bundle directory holds ``bundle.json`` (schema ``fatty-liver-edge/bundle@1``), the encoder model(s), the
head model and ``fidelity.json``. Loading checks the schema id, that every listed file exists and matches its
SHA-256, and that the tensors' shapes and types are the ones ``bundle.json`` declares. Any mismatch is a
:class:`BundleError` naming the file and the problem: a tampered or half-copied bundle never serves.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.interpreter import make_interpreter

SCHEMA = "fatty-liver-edge/bundle@1"
VIEWS = ("liver", "kidney_liver")
_DTYPES = {"uint8": np.uint8, "int8": np.int8, "float32": np.float32}


class BundleError(ValueError):
    """The bundle cannot be trusted or used; the message names the file and the problem."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified_bytes(root: Path, name: str, expected: dict[str, str]) -> bytes:
    path = root / name
    if not path.is_file():
        raise BundleError(f"{path}: file missing from the bundle")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected[name]:
        raise BundleError(
            f"{path}: SHA-256 mismatch (file changed or corrupted; expected {expected[name][:12]}..., "
            f"got {actual[:12]}...)"
        )
    return data


@dataclass
class Quant:
    scale: float
    zero_point: int

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        if self.scale == 0.0:
            return q.astype(np.float32)
        return (q.astype(np.float32) - self.zero_point) * np.float32(self.scale)


@dataclass
class EncoderModel:
    """One encoder interpreter: uint8 image -> float32 feature vector (dequantized when the output is int8)."""

    name: str
    interpreter: Any
    input_index: int
    output_index: int
    input_dtype: type
    input_quant: Quant
    output_quant: Quant
    output_dtype: type

    @classmethod
    def from_interpreter(cls, name: str, interpreter: Any) -> EncoderModel:
        """Wrap a single-input, single-output encoder interpreter (shapes are checked by the caller)."""
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        in_q, out_q = inp["quantization"], out["quantization"]
        return cls(
            name,
            interpreter,
            inp["index"],
            out["index"],
            inp["dtype"],
            Quant(float(in_q[0]), int(in_q[1])),
            Quant(float(out_q[0]), int(out_q[1])),
            out["dtype"],
        )

    def encode(self, image: np.ndarray) -> np.ndarray:
        if image.shape != (224, 224, 3) or image.dtype != np.uint8:
            raise ValueError(f"encoder input must be 224x224x3 uint8, got {image.shape} {image.dtype}")
        if self.input_dtype == np.uint8 and self.input_quant.scale in (0.0, 1.0) and self.input_quant.zero_point == 0:
            x = image[None]  # pixels are already the quantized input (scale 1, zero point 0)
        elif self.input_dtype == np.float32:
            x = image[None].astype(np.float32)
        else:
            info = np.iinfo(self.input_dtype)
            q = np.round(image.astype(np.float32) / self.input_quant.scale) + self.input_quant.zero_point
            x = np.clip(q, info.min, info.max).astype(self.input_dtype)[None]
        self.interpreter.set_tensor(self.input_index, x)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output_index)[0]
        return self.output_quant.dequantize(out) if self.output_dtype != np.float32 else out.astype(np.float32)


@dataclass
class Bundle:
    root: Path
    meta: dict[str, Any]
    encoders: dict[str, EncoderModel]  # view -> encoder (the same object for both views when shared)
    head_interpreter: Any
    head_inputs: dict[str, int] = field(default_factory=dict)  # view -> tensor index
    head_outputs: dict[str, int] = field(default_factory=dict)  # output name -> tensor index

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def version(self) -> str:
        return self.meta["version"]

    @property
    def sha(self) -> str:
        """Short id of the whole bundle: hash of bundle.json (which pins every file's hash)."""
        return hashlib.sha256((self.root / "bundle.json").read_bytes()).hexdigest()[:16]

    @property
    def threshold(self) -> float:
        return float(self.meta["outputs"]["p_fatty"]["threshold"])

    def encode(self, view: str, image: np.ndarray) -> np.ndarray:
        return self.encoders[view].encode(image)

    def head(self, features: dict[str, np.ndarray]) -> tuple[float, float]:
        """(p_fatty, pdff %) from both views' features."""
        for view, index in self.head_inputs.items():
            self.head_interpreter.set_tensor(index, features[view][None].astype(np.float32))
        self.head_interpreter.invoke()
        p = float(self.head_interpreter.get_tensor(self.head_outputs["p_fatty"]).reshape(-1)[0])
        pdff = float(self.head_interpreter.get_tensor(self.head_outputs["pdff"]).reshape(-1)[0])
        return p, pdff


def _tensor_by_name(details: list[dict], wanted: str, what: str, path: Path) -> dict:
    matches = [d for d in details if wanted in d["name"]]
    if len(matches) != 1:
        names = ", ".join(d["name"] for d in details)
        raise BundleError(f"{path}: expected one {what} tensor named like {wanted!r}, found: {names}")
    return matches[0]


def head_input_indices(interpreter: Any, path: Path) -> dict[str, int]:
    """View -> tensor index of the head's inputs (TFLite keeps the Keras input names features_<view>)."""
    details = interpreter.get_input_details()
    return {v: _tensor_by_name(details, f"features_{v}", "head input", path)["index"] for v in VIEWS}


def _load_encoder(root: Path, name: str, data: bytes, spec: dict, num_threads: int | None) -> EncoderModel:
    path = root / name
    try:
        interpreter = make_interpreter(data, num_threads)
    except ValueError as exc:
        raise BundleError(f"{path}: not a loadable TFLite model ({exc})") from exc
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise BundleError(f"{path}: an encoder has one input and one output, found {len(inputs)} and {len(outputs)}")
    inp, out = inputs[0], outputs[0]
    in_shape, out_shape = [int(d) for d in inp["shape"]], [int(d) for d in out["shape"]]
    expected_shape = [1, *spec["input"]["shape"]]
    if in_shape != expected_shape:
        raise BundleError(f"{path}: input shape {in_shape}, bundle.json declares {expected_shape}")
    declared_in = _DTYPES[spec["input"]["dtype"]]
    if inp["dtype"] != declared_in:
        raise BundleError(
            f"{path}: input type {np.dtype(inp['dtype']).name}, bundle.json declares {spec['input']['dtype']}"
        )
    features = int(spec["features"]["size"])
    if out_shape != [1, features]:
        raise BundleError(f"{path}: output shape {out_shape}, bundle.json declares [1, {features}]")
    declared_out = _DTYPES[spec["features"]["dtype"]]
    if out["dtype"] != declared_out:
        raise BundleError(
            f"{path}: output type {np.dtype(out['dtype']).name}, bundle.json declares {spec['features']['dtype']}"
        )
    return EncoderModel.from_interpreter(name, interpreter)


def load_bundle(path: str | Path, num_threads: int | None = None) -> Bundle:
    """Verify and load a bundle; raises BundleError with a clear message on any mismatch."""
    root = Path(path)
    meta_path = root / "bundle.json"
    if not meta_path.is_file():
        raise BundleError(f"{root}: no bundle.json (is this a model bundle directory?)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{meta_path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        found = meta.get("schema") if isinstance(meta, dict) else type(meta).__name__
        raise BundleError(f"{meta_path}: schema {found!r} is not {SCHEMA!r}")
    try:
        files, hashes = meta["files"], meta["sha256"]
        views = tuple(meta["views"])
        spec = {"input": meta["input"], "features": meta["features"]}
        outputs = meta["outputs"]
        float(outputs["p_fatty"]["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{meta_path}: missing or malformed field {exc}") from exc
    if views != VIEWS:
        raise BundleError(f"{meta_path}: views {list(views)}, this runtime serves {list(VIEWS)}")
    if meta["input"].get("shape") != [224, 224, 3]:
        raise BundleError(f"{meta_path}: input shape {meta['input'].get('shape')}, this runtime feeds [224, 224, 3]")
    # Every file, fidelity.json included, is read and hashed once; the models are built from these bytes.
    verified = {name: _verified_bytes(root, name, hashes) for name in hashes}

    def model_bytes(name: str) -> bytes:
        if name not in verified:
            raise BundleError(f"{root}: bundle.json lists no SHA-256 for {name}")
        return verified[name]

    encoders: dict[str, EncoderModel] = {}
    loaded: dict[str, EncoderModel] = {}
    for view in VIEWS:
        name = files["encoder"][view]
        if name not in loaded:
            loaded[name] = _load_encoder(root, name, model_bytes(name), spec, num_threads)
        encoders[view] = loaded[name]

    head_path = root / files["head"]
    try:
        head = make_interpreter(model_bytes(files["head"]), num_threads)
    except ValueError as exc:
        raise BundleError(f"{head_path}: not a loadable TFLite model ({exc})") from exc
    in_details, out_details = head.get_input_details(), head.get_output_details()
    head_inputs = head_input_indices(head, head_path)
    features = int(meta["features"]["size"])
    for d in in_details:
        if list(d["shape"]) != [1, features] or d["dtype"] != np.float32:
            raise BundleError(
                f"{head_path}: input {d['name']} is {list(d['shape'])} {np.dtype(d['dtype']).name}, "
                f"expected [1, {features}] float32"
            )
    head_outputs = {}
    for name in ("p_fatty", "pdff"):
        index = meta["head_outputs"][name]
        if not any(d["index"] == index for d in out_details):
            raise BundleError(f"{head_path}: has no output tensor {index} for {name}")
        head_outputs[name] = index
    return Bundle(root, meta, encoders, head, head_inputs, head_outputs)
