"""Read `pip config list` on stdin; write those settings as a pip.conf (argv[1]) for the image's build steps and
print each local path they name (a CA file, a constraints file, a file:// index, a find-links folder), to be
mounted read-only at the same path. A machine without settings gets an empty file and no mounts."""

from __future__ import annotations

import sys
from pathlib import Path

settings: dict[str, str] = {}
for line in sys.stdin:
    key, _, value = line.strip().partition("=")
    if not value:
        continue
    name = key.split(".", 1)[-1]  # "global.cert", ":env:.cert" -> "cert"
    settings[name] = value.strip("'\"")
paths = set()
for value in settings.values():
    for word in value.split():
        path = Path(word.removeprefix("file://"))
        if word.startswith(("/", "file:///")) and path.exists():
            # a file:// index's pages link to ../../files: the index's parent folder goes in whole
            paths.add(str(path.parent if word.startswith("file://") and path.name == "simple" else path))
text = "[global]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(settings.items())) if settings else ""
Path(sys.argv[1]).write_text(text)
print("\n".join(sorted(paths)))
