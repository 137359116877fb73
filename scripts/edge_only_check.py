"""Proves the bedside install works without TensorFlow: run with the interpreter of a venv holding only [edge]."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

assert importlib.util.find_spec("tensorflow") is None, "this check must run in an [edge]-only environment"
for module in (
    "edge_runtime.server",
    "edge_runtime.cli",
    "edge_runtime.model.bundle",
    "edge_runtime.tools.grabber",
    "edge_runtime.tools.watch",
    "edge_runtime.display.service",
    "phantom.stream",
    "edge_runtime.validation.report",
    "edge_runtime.hospital.reference",
    "edge_runtime.hospital.retrieve",
):
    importlib.import_module(module)
assert "tensorflow" not in sys.modules
from edge_runtime.model.interpreter import INTERPRETER_NAME  # noqa: E402

assert INTERPRETER_NAME == "ai-edge-litert", INTERPRETER_NAME
if importlib.util.find_spec("fhir") is None:  # the bedside reads MRI-PDFF as CSV; a FHIR Bundle is refused by name
    import tempfile

    from edge_runtime.hospital.reference import ReferenceError as RefusedReference
    from edge_runtime.hospital.reference import read_reference

    with tempfile.TemporaryDirectory() as folder:
        listed = Path(folder) / "pdff.csv"
        listed.write_text("patient_id,accession,mri_date,pdff\nP1,,2026-01-02,7.5\n")
        assert len(read_reference(listed).results) == 1
        bundle = Path(folder) / "observations.json"
        bundle.write_text('{"resourceType": "Bundle", "type": "collection"}')
        try:
            read_reference(bundle)
            raise AssertionError("a FHIR Bundle was read without the FHIR models")
        except RefusedReference as refused:
            assert "fatty-liver-edge[site]" in str(refused), refused
venv = Path(sys.executable).parent.parent
size_mb = int(subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True).stdout.split()[0])
print(
    f"[edge]-only environment OK: edge_runtime imports without TensorFlow ({INTERPRETER_NAME}); "
    f"environment size {size_mb} MB"
)
