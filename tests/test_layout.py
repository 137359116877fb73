"""The dependency direction of ARCHITECTURE.md, checked on the source: the bedside never pulls in training."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_AT_BEDSIDE = {"tensorflow", "tf_keras", "keras", "trainer", "calibration", "phantom", "sklearn", "shap"}


def _imported_roots(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def test_edge_runtime_imports_nothing_from_training() -> None:
    offenders = {k: v for k, v in _imported_roots("edge_runtime").items() if k in FORBIDDEN_AT_BEDSIDE}
    assert not offenders, f"edge_runtime imports {offenders}"


def test_phantom_uses_only_numpy_opencv_and_the_edge_protocol() -> None:
    imports = _imported_roots("phantom")
    assert not {"tensorflow", "trainer", "calibration", "sklearn"} & set(imports)
