"""Import every module of the bedside (edge_runtime), so that Python writes bytecode for exactly what the bedside
loads: its own modules and the parts of its libraries they import. The image's root is read-only at run time, where
nothing can be compiled to disk, and bytecode for what is never imported would only take space."""

from __future__ import annotations

import importlib
import pkgutil

import edge_runtime

failed = []
for module in pkgutil.walk_packages(edge_runtime.__path__, "edge_runtime."):
    try:
        importlib.import_module(module.name)
    except Exception as exc:  # every module must import: the build fails naming each that does not
        failed.append(f"{module.name}: {exc}")
if failed:
    raise SystemExit("modules of the bedside that do not import:\n" + "\n".join(failed))
count = len(list(pkgutil.walk_packages(edge_runtime.__path__)))
print(f"bytecode written for {count} bedside modules and their imports")
