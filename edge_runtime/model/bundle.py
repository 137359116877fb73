"""Model bundles: the unit that moves from the trainer to the bedside, verified before anything is served.

A bundle directory holds ``bundle.json`` (:class:`edge_runtime.contracts.BundleMeta`), the encoder model(s), the
head model and ``fidelity.json``. Loading validates bundle.json against the contract, checks that every
listed file exists and matches its SHA-256, and that the tensors' shapes and types are the ones bundle.json
declares. Any mismatch is a :class:`BundleError` naming the file and the problem: a tampered or half-copied
bundle never serves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.contracts import INPUT_SHAPE, VIEWS, BundleError, BundleMeta, FeatureSpec, InputSpec, ModelInfo
from edge_runtime.model.gate import Gate
from edge_runtime.model.interpreter import make_interpreter
from edge_runtime.model.signing import TrustPolicy
from edge_runtime.model.uncertainty import Members, combine_members

__all__ = ["Bundle", "BundleError", "EncoderModel", "HeadModel", "head_input_indices", "load_bundle", "sha256_file"]
_DTYPES = {"uint8": np.uint8, "int8": np.int8, "float32": np.float32}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified_bytes(root: Path, name: str, expected: str) -> bytes:
    path = root / name
    if not path.is_file():
        raise BundleError(f"{path}: file missing from the bundle")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise BundleError(
            f"{path}: SHA-256 mismatch (file changed or corrupted; expected {expected[:12]}..., got {actual[:12]}...)"
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

    def _input_tensor(self, image: np.ndarray) -> np.ndarray:
        if self.input_dtype == np.uint8 and self.input_quant.scale in (0.0, 1.0) and self.input_quant.zero_point == 0:
            return image[None]  # pixels are already the quantized input (scale 1, zero point 0)
        if self.input_dtype == np.float32:
            return image[None].astype(np.float32)
        info = np.iinfo(self.input_dtype)
        q = np.round(image.astype(np.float32) / self.input_quant.scale) + self.input_quant.zero_point
        return np.clip(q, info.min, info.max).astype(self.input_dtype)[None]

    def codes(self, image: np.ndarray) -> np.ndarray:
        """The encoder's raw output for one image (int8 codes for an int8 encoder; a copy, safe to keep)."""
        if image.shape != INPUT_SHAPE or image.dtype != np.uint8:
            raise ValueError(f"encoder input must be {INPUT_SHAPE} uint8, got {image.shape} {image.dtype}")
        self.interpreter.set_tensor(self.input_index, self._input_tensor(image))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index)[0].copy()

    def features(self, codes: np.ndarray) -> np.ndarray:
        """float32 features from raw outputs: the one dequantization the bedside and the trainer share."""
        return self.output_quant.dequantize(codes) if self.output_dtype != np.float32 else codes.astype(np.float32)

    def encode(self, image: np.ndarray) -> np.ndarray:
        return self.features(self.codes(image))


@dataclass
class HeadModel:
    """One head interpreter: both views' features -> (p_fatty, PDFF %)."""

    interpreter: Any
    inputs: dict[str, int]  # view -> tensor index
    outputs: dict[str, int]  # output name -> tensor index

    def run(self, features: dict[str, np.ndarray]) -> tuple[float, float]:
        for view, index in self.inputs.items():
            self.interpreter.set_tensor(index, features[view][None].astype(np.float32))
        self.interpreter.invoke()
        p = float(self.interpreter.get_tensor(self.outputs["p_fatty"]).reshape(-1)[0])
        pdff = float(self.interpreter.get_tensor(self.outputs["pdff"]).reshape(-1)[0])
        return p, pdff


@dataclass
class Bundle:
    root: Path
    meta: BundleMeta
    encoders: dict[str, EncoderModel]  # view -> encoder (the same object for both views when shared)
    heads: list[HeadModel]  # files.head first, then the ensemble's bagged heads
    sha: str  # first 16 hex digits of bundle.json's SHA-256, which pins every file's hash
    gate: Gate | None = None  # view head and guard (bundle.json's view_gate / guard say which it holds)
    signed_by: str | None = None  # the trusted key file whose signature was verified (None: not checked/unsigned)

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def version(self) -> str:
        return self.meta.version

    @property
    def threshold(self) -> float:
        return self.meta.outputs.p_fatty.threshold

    @property
    def harmonisation(self) -> str:
        """The last step of preprocess_frame this model was trained with."""
        return self.meta.input.harmonisation

    @property
    def model_info(self) -> ModelInfo:
        """How results and heartbeats name the model that made them."""
        site = self.meta.site.site if self.meta.site is not None else None
        return ModelInfo(name=self.name, version=self.version, sha=self.sha, site=site, signed_by=self.signed_by)

    @property
    def validation(self) -> str:
        """One line on what the model was validated on, for the display's banner."""
        training, pooled = self.meta.training, self.meta.cv_metrics.pooled or {}
        figures = [f"{k.upper()} {pooled[k]:.2f}" for k in ("auc", "r2") if pooled.get(k) is not None]
        where = f"{training.cohort} cohort of {training.subjects} subjects"
        said = f"{where}, cross-validated" + (f": {', '.join(figures)}" if figures else "")
        site = self.meta.site
        if site is not None:
            said += f"; adapted to site {site.site} on {site.labelled_subjects} labelled local subjects"
        return said

    def encode(self, view: str, image: np.ndarray) -> np.ndarray:
        return self.encoders[view].encode(image)

    def answer(self, features: dict[str, np.ndarray]) -> Members:
        """Every head on both views' features: the ensemble's answer and spread (one head: its own, no spread)."""
        outputs = [head.run(features) for head in self.heads]
        return combine_members([p for p, _ in outputs], [pdff for _, pdff in outputs])


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


def _interpreter(path: Path, data: bytes, num_threads: int | None) -> Any:
    try:
        return make_interpreter(data, num_threads)
    except ValueError as exc:
        raise BundleError(f"{path}: not a loadable TFLite model ({exc})") from exc


def _check_tensor(path: Path, what: str, detail: dict, shape: list[int], dtype: str) -> None:
    actual = [int(d) for d in detail["shape"]]
    if actual != shape:
        raise BundleError(f"{path}: {what} shape {actual}, bundle.json declares {shape}")
    if detail["dtype"] != _DTYPES[dtype]:
        raise BundleError(f"{path}: {what} type {np.dtype(detail['dtype']).name}, bundle.json declares {dtype}")


def _load_encoder(path: Path, data: bytes, spec: InputSpec, features: FeatureSpec, threads: int | None) -> EncoderModel:
    interpreter = _interpreter(path, data, threads)
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise BundleError(f"{path}: an encoder has one input and one output, found {len(inputs)} and {len(outputs)}")
    _check_tensor(path, "input", inputs[0], [1, *spec.shape], spec.dtype)
    _check_tensor(path, "output", outputs[0], [1, features.size], features.dtype)
    return EncoderModel.from_interpreter(path.name, interpreter)


def _load_head(path: Path, data: bytes, meta: BundleMeta, outputs: dict[str, int], threads: int | None) -> HeadModel:
    head = _interpreter(path, data, threads)
    for detail in head.get_input_details():
        _check_tensor(path, f"input {detail['name']}", detail, [1, meta.features.size], "float32")
    inputs = head_input_indices(head, path)
    present = {d["index"] for d in head.get_output_details()}
    for name, index in outputs.items():
        if index not in present:
            raise BundleError(f"{path}: has no output tensor {index} for {name}")
    return HeadModel(head, inputs, outputs)


def _heads(root: Path, meta: BundleMeta, verified: dict[str, bytes], threads: int | None) -> list[HeadModel]:
    """files.head, then every bagged head the ensemble declares."""
    first = {"p_fatty": meta.head_outputs.p_fatty, "pdff": meta.head_outputs.pdff}
    declared = [(meta.files.head, first)]
    declared += [
        (h.file, {"p_fatty": h.p_fatty, "pdff": h.pdff}) for h in (meta.ensemble.heads if meta.ensemble else [])
    ]
    return [_load_head(root / name, verified[name], meta, outputs, threads) for name, outputs in declared]


def load_bundle(path: str | Path, num_threads: int | None = None, trust: TrustPolicy | None = None) -> Bundle:
    """Verify and load a bundle; raises BundleError with a clear message on any mismatch. With ``trust`` the
    signature over bundle.json is checked first (edge_runtime.model.signing), on the very bytes then validated."""
    root = Path(path)
    meta_path = root / "bundle.json"
    if not meta_path.is_file():
        raise BundleError(f"{root}: no bundle.json (is this a model bundle directory?)")
    raw = meta_path.read_bytes()  # read once: what is validated is what the bundle's sha names
    signed_by = trust.check(root, raw) if trust is not None else None
    meta = BundleMeta.from_json(raw, meta_path)
    listed = {*meta.files.encoder.values(), meta.files.head, meta.files.fidelity}
    listed |= {meta.files.gate} if meta.files.gate else set()
    listed |= {h.file for h in meta.ensemble.heads} if meta.ensemble else set()
    unhashed = sorted(listed - set(meta.sha256))
    if unhashed:
        raise BundleError(f"{meta_path}: lists no SHA-256 for {', '.join(unhashed)}")
    # Every file, fidelity.json included, is read and hashed once; the models are built from these bytes.
    verified = {name: _verified_bytes(root, name, digest) for name, digest in meta.sha256.items()}
    loaded: dict[str, EncoderModel] = {}
    for name in dict.fromkeys(meta.files.encoder.values()):
        loaded[name] = _load_encoder(root / name, verified[name], meta.input, meta.features, num_threads)
    encoders = {view: loaded[meta.files.encoder[view]] for view in VIEWS}
    heads = _heads(root, meta, verified, num_threads)
    sha = hashlib.sha256(raw).hexdigest()[:16]
    gate = _load_gate(meta, verified, meta_path)
    return Bundle(root, meta, encoders, heads, sha, gate, signed_by)


def _load_gate(meta: BundleMeta, verified: dict[str, bytes], meta_path: Path) -> Gate | None:
    """The view gate and guard bundle.json declares, from gate.npz; None when it declares neither."""
    declared = meta.view_gate is not None or meta.guard is not None
    if not declared:
        return None
    if meta.files.gate is None:
        raise BundleError(f"{meta_path}: declares a view gate or guard but lists no gate file")
    if meta.view_gate is not None and len(set(meta.files.encoder.values())) != 1:
        raise BundleError(f"{meta_path}: a view gate needs one encoder shared by both views")
    name = meta.files.gate
    pooling = meta.view_gate.feature_pooling if meta.view_gate is not None else None
    return Gate.from_bytes(verified[name], name, meta.features.size, pooling, meta.guard)
