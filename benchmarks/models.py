"""The models the suites time: a TFLite model as a ready-to-invoke callable, and the bundle's float twin.

Shared by `latency`, `limit` and `e2e`, so every suite times the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge_runtime.contracts import BundleMeta


def tflite_runner(model: bytes, threads: int, module: str = "ai_edge_litert") -> Callable[[], None]:
    """The interpreter's invoke, with a random input already set (latency does not depend on pixel values)."""
    if module == "ai_edge_litert":
        from ai_edge_litert.interpreter import Interpreter
    else:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]
    interp = Interpreter(model_content=model, num_threads=threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    x = np.random.default_rng(0).integers(0, 256, inp["shape"]).astype(inp["dtype"])
    interp.set_tensor(inp["index"], x)
    return interp.invoke


def float_encoder(meta: BundleMeta):
    """The bundle's encoder architecture in float Keras with random weights: latency does not depend on the
    weights' values, so a suite needs neither the run nor a weights download."""
    from clkl.encoder import build_encoder, build_vgg19_base

    base = build_vgg19_base("none", 0)
    base.trainable = False
    return build_encoder(base, meta.features.pooling or "flatten")
