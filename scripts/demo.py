"""The README's demo on embedded defaults: every step visible, every artefact in one output folder.

Today: a small phantom cohort (both vendors, both views, known PDFF), its manifest check and a contact
sheet. Later stages (train, export, serve) join here as they land.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

OUT = Path("out/demo")
SUBJECTS = 12
SEED = 2021


def step(title: str, *cmd: str) -> None:
    print(f"\n==> {title}\n    $ {' '.join(cmd)}", flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"    done in {time.perf_counter() - started:.1f} s", flush=True)


def main() -> int:
    bin_dir = Path(sys.executable).parent
    cohort = OUT / "cohort"
    step(
        "Phantom cohort with known PDFF",
        str(bin_dir / "phantom"),
        "cohort",
        "--subjects",
        str(SUBJECTS),
        "--seed",
        str(SEED),
        "--out",
        str(cohort),
    )
    step("Manifest check", str(bin_dir / "trainer"), "validate", str(cohort / "manifest.csv"))
    print(f"\nEverything is in {OUT}/ ; look at {cohort / 'contact_sheet.png'} first.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
