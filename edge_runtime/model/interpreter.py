"""The TFLite interpreter the bedside uses: ai-edge-litert, with tflite-runtime only as an import fallback.

ai-edge-litert ran the int8 two-view VGG19 in 92 ms on a 2-core box where tflite-runtime 2.14 took 513 ms
(and tflite-runtime needs numpy<2). TensorFlow is never imported here.
"""

from __future__ import annotations

import os
from typing import Any

try:
    from ai_edge_litert.interpreter import Interpreter as _Interpreter

    INTERPRETER_NAME = "ai-edge-litert"
except ImportError:  # pragma: no cover - exercised only on boxes without ai-edge-litert
    try:
        from tflite_runtime.interpreter import Interpreter as _Interpreter

        INTERPRETER_NAME = "tflite-runtime"
    except ImportError:
        _Interpreter = None
        INTERPRETER_NAME = "none"


ALL_CORES = os.cpu_count() or 1  # offline tools own the machine; int8 results do not depend on threads


class InterpreterUnavailable(RuntimeError):
    """No TFLite interpreter is installed (install the [edge] extra)."""


def make_interpreter(model_content: bytes, num_threads: int | None = None) -> Any:
    if _Interpreter is None:
        raise InterpreterUnavailable("no TFLite interpreter: pip install 'fatty-liver-edge[edge]' (ai-edge-litert)")
    interpreter = _Interpreter(model_content=model_content, num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter
