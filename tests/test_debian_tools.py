"""The set-up step of both README commands installs only the Debian packages whose command is missing: a machine
whose Node.js came with its own npm must not be asked for Debian's npm, which conflicts with it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "debian_tools.sh"


def _would_install(tmp_path: Path, present: list[str]) -> set[str]:
    """The packages the script names on a PATH holding only a shell and the given commands."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for command in ("sh", "id"):
        (bin_dir / command).symlink_to(shutil.which(command))
    for command in present:
        (bin_dir / command).write_text("#!/bin/sh\n")
        (bin_dir / command).chmod(0o755)
    done = subprocess.run(
        [str(bin_dir / "sh"), str(SCRIPT), "--dry-run"],
        env={"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/")},
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


def test_a_node_with_its_own_npm_is_left_alone(tmp_path: Path) -> None:
    wanted = _would_install(tmp_path, ["node", "npm", "storescu"])
    assert "npm" not in wanted and "nodejs" not in wanted and "dcmtk" not in wanted
    assert {"chromium", "chromium-driver", "orthanc", "dicom3tools", "podman"} <= wanted


def test_a_bare_machine_gets_every_package(tmp_path: Path) -> None:
    wanted = _would_install(tmp_path, [])
    assert {"nodejs", "npm", "dcmtk", "orthanc", "chromium", "mmdebstrap"} <= wanted
