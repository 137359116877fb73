"""The project's documents say what the code does: where the MinMax lives, how each figure next to the paper's was
computed, every contract field in ARCHITECTURE.md, and a README a user can read (15 kB at most)."""

from __future__ import annotations

from pathlib import Path

from edge_runtime.contracts import (
    BundleMeta,
    ExamCalibration,
    ExamEstimate,
    ExamRecord,
    FrameHeader,
    HeartbeatMessage,
    MetricsMessage,
    ResultMessage,
    ThumbnailMessage,
)

ROOT = Path(__file__).resolve().parents[1]


def test_docs_place_the_minmax_where_the_code_applies_it() -> None:
    from clkl.minmax import SPAN_FLOOR

    readme = (ROOT / "README.md").read_text()
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    assert "MinMax scaling and VGG normalisation live inside the exported encoder" not in readme
    assert "MinMax scaling and any backbone normalisation live inside" not in readme
    assert "### Feature MinMax and its range floor" in design
    assert f"{SPAN_FLOOR:g} x the median range" in design


def test_every_figure_next_to_the_papers_says_how_it_was_computed(run_dir: Path) -> None:
    report = (run_dir / "report.md").read_text()
    assert "AUC 0.87 (mean of 5 folds)" in report and "R^2 0.633 (one fold)" in report
    assert "mean over folds" in report and "pooled over all" in report
    readme = (ROOT / "README.md").read_text()
    assert "mean of 5 folds" in readme and "pooled" in readme


def test_architecture_document_names_every_contract_field() -> None:
    """docs/ARCHITECTURE.md is the living description: a field added to a contract must be documented there."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    fields = {
        "bundle.json": [f.alias or n for n, f in BundleMeta.model_fields.items()],
        "frame": list(FrameHeader.__dataclass_fields__),
        "result": list(ResultMessage.model_fields),
        "metrics": list(MetricsMessage.model_fields),
        "heartbeat": list(HeartbeatMessage.model_fields),
        "exam": list(ExamEstimate.model_fields),
        "exam record": list(ExamRecord.model_fields),
        "exam calibration": list(ExamCalibration.model_fields),
        "thumbnail": list(ThumbnailMessage.model_fields),
    }
    missing = {
        where: [f for f in names if f"`{f}" not in text and f" {f}" not in text] for where, names in fields.items()
    }
    assert not any(missing.values()), missing


def test_the_readme_is_a_users_guide_of_at_most_15_kb() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 15_000, f"README.md is {len(readme.encode())} bytes"
    for command in ("make demo", "make test", "trainer train", "trainer export", "edge-runtime serve"):
        assert command in readme, command


def test_the_docs_stay_readable_in_an_hour() -> None:
    """ARCHITECTURE is the system as it is (25 kB), DESIGN the decisions that hold (40 kB): history stays in git."""
    for name, limit in (("ARCHITECTURE.md", 25_600), ("DESIGN.md", 40_960)):
        size = len((ROOT / "docs" / name).read_text().encode())
        assert size <= limit, f"docs/{name} is {size} bytes (at most {limit})"
