"""`python -m benchmarks SUITE ...` / `benchmarks SUITE ...`: each suite prints figures and writes reports."""

from __future__ import annotations

import click

from edge_runtime.tools.cli_support import ProductGroup


@click.group(cls=ProductGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Benchmark suites (each prints figures and writes JSON, Markdown and PNG reports)."""


def _register() -> None:
    from benchmarks.dicom import main as dicom
    from benchmarks.display_load import main as display_load
    from benchmarks.e2e import main as e2e
    from benchmarks.e2e_ab import main as e2e_ab
    from benchmarks.exam_honesty import main as exam_honesty
    from benchmarks.exam_stream import main as exam_stream
    from benchmarks.faults import main as faults
    from benchmarks.federated import main as federated
    from benchmarks.followup import main as followup
    from benchmarks.gate import main as gate
    from benchmarks.head_loop import main as head_loop
    from benchmarks.hri import main as hri
    from benchmarks.kidney_rule import main as kidney_rule
    from benchmarks.latency import main as latency
    from benchmarks.limit import main as limit
    from benchmarks.pacs import main as pacs
    from benchmarks.profile_detect import main as profile_detect
    from benchmarks.site_adapt import main as site_adapt
    from benchmarks.site_cohort import main as site_cohort
    from benchmarks.trainer_epoch import main as trainer_epoch
    from benchmarks.trainer_protocol import main as trainer_protocol
    from benchmarks.validation import main as validation

    main.add_command(dicom, "dicom")
    main.add_command(display_load, "display-load")
    main.add_command(e2e, "e2e")
    main.add_command(e2e_ab, "e2e-ab")
    main.add_command(exam_honesty, "exam-honesty")
    main.add_command(exam_stream, "exam-stream")
    main.add_command(faults, "faults")
    main.add_command(federated, "federated")
    main.add_command(gate, "gate")
    main.add_command(head_loop, "head-loop")
    main.add_command(followup, "followup")
    main.add_command(hri, "hri")
    main.add_command(kidney_rule, "kidney-rule")
    main.add_command(latency, "latency")
    main.add_command(limit, "limit")
    main.add_command(pacs, "pacs")
    main.add_command(profile_detect, "profile-detect")
    main.add_command(site_adapt, "site-adapt")
    main.add_command(site_cohort, "site-cohort")
    main.add_command(trainer_epoch, "trainer-epoch")
    main.add_command(trainer_protocol, "trainer-protocol")
    main.add_command(validation, "validation")


_register()

if __name__ == "__main__":
    main()
