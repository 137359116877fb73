"""The architecture's rules, checked on the source (docs/ARCHITECTURE.md, "Layout and import rules").

Imports flow one way: trainer -> calibration -> clkl -> edge_runtime, and phantom -> edge_runtime. The bedside
(edge_runtime) never pulls in training, the phantom or TensorFlow. Contracts are declared once, functions fit
on a screen, and wide public functions document their arguments.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_runtime", "clkl", "calibration", "trainer", "phantom", "benchmarks")
TENSORFLOW = {"tensorflow", "tf_keras", "keras", "tensorflow_model_optimization"}
# What each package may NOT import (anything of this project not listed is allowed).
FORBIDDEN = {
    "edge_runtime": {"clkl", "calibration", "trainer", "phantom", "sklearn", "shap", *TENSORFLOW},
    "clkl": {"calibration", "trainer", "phantom"},
    "calibration": {"trainer", "phantom"},
    "trainer": {"benchmarks"},
    "phantom": {"clkl", "calibration", "trainer", "benchmarks", "sklearn", *TENSORFLOW},
}
MAX_FUNCTION_LINES = 80
LINE_LIMITED = ("trainer", "calibration", "edge_runtime", "clkl")


def _sources(*packages: str) -> list[Path]:
    return [p for package in packages for p in sorted((ROOT / package).rglob("*.py"))]


def _imported_roots(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in _sources(package):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_flow_one_way(package: str) -> None:
    offenders = {k: sorted(v) for k, v in _imported_roots(package).items() if k in FORBIDDEN[package]}
    assert not offenders, f"{package} imports {offenders} (see docs/ARCHITECTURE.md, import rules)"


def test_benchmarks_use_only_public_helpers() -> None:
    private = []
    for path in _sources("benchmarks", "scripts"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                private += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not private, private


def _functions(*packages: str):
    for path in _sources(*packages):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield path, node


def test_no_function_is_longer_than_a_screen() -> None:
    long = [
        f"{p.relative_to(ROOT)}:{n.name} ({n.end_lineno - n.lineno + 1} lines)"
        for p, n in _functions(*LINE_LIMITED)
        if n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


def test_views_and_model_size_are_defined_once() -> None:
    """Only edge_runtime/contracts/constants.py assigns VIEWS or MODEL_SIZE, and no code spells out the 224 input
    size."""
    definition = re.compile(r"^\s*(VIEWS|MODEL_SIZE|INPUT_SHAPE)\s*(:[^=]*)?=", re.M)
    size_literal = re.compile(r"\b224\b")
    schema = ROOT / "edge_runtime" / "contracts" / "constants.py"
    defined, literals = [], []
    for path in _sources(*PACKAGES) + sorted((ROOT / "scripts").glob("*.py")):
        text = path.read_text()
        if path != schema:
            defined += [f"{path.relative_to(ROOT)}: {m.group(0).strip()}" for m in definition.finditer(text)]
            code = [line.split("#")[0] for line in text.splitlines()]
            literals += [f"{path.relative_to(ROOT)}:{i + 1}" for i, c in enumerate(code) if size_literal.search(c)]
    literals = [hit for hit in literals if not hit.startswith("phantom/vendors.py")]  # 224 scan lines, not pixels
    assert not defined, defined
    assert not literals, f"the model input size spelled out instead of imported: {literals}"


def test_wide_public_functions_document_their_arguments() -> None:
    """Public functions with four or more parameters say what each is (an Args: section)."""
    missing = []
    for path, node in _functions("trainer", "calibration", "edge_runtime", "clkl", "phantom"):
        params = [a for a in node.args.args + node.args.kwonlyargs if a.arg not in ("self", "cls")]
        if node.name.startswith("_") or len(params) < 4:
            continue
        decorated_command = any("command" in ast.unparse(d) or "option" in ast.unparse(d) for d in node.decorator_list)
        if decorated_command:  # click commands document their options in --help
            continue
        if "Args:" not in (ast.get_docstring(node) or ""):
            missing.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert not missing, missing


def test_the_server_only_runs_what_compose_declares() -> None:
    """Sources, stages, sinks and services are declared in compose(); the server starts, supervises and stops them."""
    lines = (ROOT / "edge_runtime" / "server.py").read_text().count("\n")
    assert lines <= 150, f"edge_runtime/server.py has {lines} lines (at most 150)"
    tree = ast.parse((ROOT / "edge_runtime" / "server.py").read_text())
    built = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not built & {"ZmqFrames", "StorageListener", "DisplayFeed", "Heartbeat", "ReportSender", "AuditLog"}


def test_compose_and_its_stage_list_read_on_one_screen() -> None:
    """compose() fits a screen (60 lines), and its stage list, from the first stage to the last, 12."""
    tree = ast.parse((ROOT / "edge_runtime" / "compose.py").read_text())
    compose = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "compose")
    assert compose.end_lineno - compose.lineno + 1 <= 60
    text = (ROOT / "edge_runtime" / "compose.py").read_text()
    start, end = text.index("    return [\n        DecodeStage()"), text.index("    ]\n", text.index("DecodeStage()"))
    assert text[start:end].count("\n") <= 12


def test_sources_never_import_the_hospital_side() -> None:
    """Study attributes travel with the frames: no module of edge_runtime/sources imports edge_runtime.hospital or
    edge_runtime.sinks."""
    found = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "edge_runtime" / "sources").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
        for name in [node.module]
        if name.startswith(("edge_runtime.hospital", "edge_runtime.sinks"))
    ]
    assert not found, found


def test_no_class_name_is_defined_twice_in_the_bedside() -> None:
    seen: dict[str, str] = {}
    twice = []
    for path in _sources("edge_runtime"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.col_offset == 0:
                where = str(path.relative_to(ROOT))
                if node.name in seen:
                    twice.append(f"{node.name}: {seen[node.name]} and {where}")
                seen.setdefault(node.name, where)
    assert not twice, twice


def test_no_counter_name_is_built_from_a_loose_string() -> None:
    """Counters come from declared names: Count members, or counted(a declared reason); never Count(f"...")."""
    loose = re.compile(r"Count\(\s*f?[\"']|count\(\s*f[\"']|Count\.[a-z_]+\(")
    found = [
        f"{path.relative_to(ROOT)}:{i + 1}"
        for path in _sources(*PACKAGES)
        for i, line in enumerate(path.read_text().splitlines())
        if loose.search(line) and "contracts/names.py" not in str(path)
    ]
    assert not found, found


def test_the_bedside_keeps_no_compatibility_branches_for_bundles_never_deployed() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{i + 1}"
        for path in _sources("edge_runtime")
        for i, line in enumerate(path.read_text().splitlines())
        if re.search(r"predate|older bundle|bundles from before|bundles since", line, re.I)
    ]
    assert not found, found
