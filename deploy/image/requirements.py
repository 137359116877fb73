"""Print the bedside's requirements, one per line: the project's core dependencies and its [edge] extra, read from
pyproject.toml, so the image installs its dependencies in a layer of their own (kept while only the code changes)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

project = tomllib.loads(Path(sys.argv[1]).read_text())["project"]
for requirement in [*project["dependencies"], *project["optional-dependencies"]["edge"]]:
    print(requirement)
