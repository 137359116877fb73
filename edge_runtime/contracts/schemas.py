"""The JSON Schemas of the contracts, as the files in ``docs/schemas/`` hold them.

``python -m edge_runtime.contracts.schemas docs/schemas`` writes them; ``tests/test_contracts.py`` checks the files
equal what the models say, so the published schemas never drift from the code. The bedside page and
``edge-runtime watch`` validate what they read against them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from edge_runtime.contracts.bundle import BundleMeta
from edge_runtime.contracts.messages import (
    ExamFollowUp,
    ExamRecord,
    HeartbeatMessage,
    MetricsMessage,
    ModelUpdate,
    ResultMessage,
    ThumbnailMessage,
)

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
CONTRACTS = {
    "bundle@1": BundleMeta,
    "result": ResultMessage,
    "metrics": MetricsMessage,
    "heartbeat": HeartbeatMessage,
    "thumbnail": ThumbnailMessage,
    "exam_final": ExamRecord,
    "model_update": ModelUpdate,
    "exam_followup": ExamFollowUp,
}


def json_schema(name: str) -> dict[str, Any]:
    """One contract's JSON Schema (bundle.json by its alias names, as it is written)."""
    schema = CONTRACTS[name].model_json_schema(by_alias=True)
    return {"$schema": SCHEMA_DIALECT, "$id": f"fatty-liver-edge/{name}.schema.json", **schema}


def schema_text(name: str) -> str:
    return json.dumps(json_schema(name), indent=1, sort_keys=True) + "\n"


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CONTRACTS:
        path = folder / f"{name}.schema.json"
        path.write_text(schema_text(name))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas")):
        print(path)
