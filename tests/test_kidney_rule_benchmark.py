"""`benchmarks kidney-rule` refits the kidney finder's rule from the phantom's physics and checks both rules on new
frames, so the rule in the code can be reproduced and its levels judged on every frame kind."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from benchmarks.kidney_rule import main
from phantom.other_views import OTHER_KINDS


def test_the_kidney_rule_is_refitted_and_checked_on_every_frame_kind(tmp_path: Path) -> None:
    outcome = CliRunner().invoke(main, ["--subjects", str(len(OTHER_KINDS)), "--out", str(tmp_path)])
    assert outcome.exit_code == 0, outcome.output
    result = json.loads((tmp_path / "kidney_rule.json").read_text())
    weights, _ = result["refitted_rule"]
    assert len(weights) == 4  # the template match and three contrasts
    code = result["check"]["code"]
    assert {"kidney_liver", "liver"} | set(OTHER_KINDS) == {g for g in code if " " not in g}

    def share(group: str) -> float:
        reached, frames = map(int, code[group]["measurable"].split("/"))
        return reached / frames

    assert share("kidney_liver") >= 0.5 and share("liver") <= 0.25  # the rule tells the views apart
    assert "| kidney_liver PDFF >=15 |" in (tmp_path / "kidney_rule.md").read_text()
