"""`edge-runtime outcomes`: MRI-PDFF arriving after go-live, reconciled with the exams the box answered."""

from __future__ import annotations

from pathlib import Path

import click

from edge_runtime.contracts.validation import WINDOW_DAYS

PATH = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command()
@click.option(
    "--reference",
    type=PATH,
    required=True,
    help="MRI-PDFF results: CSV (patient_id, accession, mri_date, pdff) or a FHIR Bundle of Observations.",
)
@click.option("--audit-log", type=PATH, required=True, help="The box's audit log (its rotated files are read too).")
@click.option(
    "--bundle",
    "bundle_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="The bundle whose acceptance criteria judge (the one the box serves).",
)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--identity-key",
    type=PATH,
    default=None,
    help="The box's pseudonym key ([runtime.audit] identity_key; default: identity.key beside the log).",
)
@click.option(
    "--window-days",
    type=click.IntRange(0, 3650),
    default=WINDOW_DAYS,
    show_default=True,
    help="Longest gap between the exam and the MRI.",
)
@click.option("--no-publish", is_flag=True, help="Do not write the verdict beside the audit log for the box to show.")
def outcomes(reference: Path, audit_log: Path, bundle_dir: Path, out_dir: Path, identity_key: Path | None,
             window_days: int, no_publish: bool) -> None:  # fmt: skip
    """Match each MRI-PDFF result to the exam the box answered for that patient or accession, and judge the site's
    real-world figures (per scanner and per PDFF band, with bootstrap CIs) against the bundle's acceptance criteria.
    Exits 1 on FAIL."""
    from edge_runtime.contracts import BundleMeta
    from edge_runtime.hospital.pseudonyms import identity_key as read_key
    from edge_runtime.hospital.reference import read_reference
    from edge_runtime.sinks.audit import read_final_exams
    from edge_runtime.validation.reconcile import reconcile
    from edge_runtime.validation.report import write_outcomes

    key = read_key(identity_key or audit_log.parent / "identity.key", create=False)
    meta = BundleMeta.model_validate_json((bundle_dir / "bundle.json").read_text())
    rec = reconcile(read_reference(reference), read_final_exams(audit_log), key, window_days)
    verdict, result = write_outcomes(rec, meta, out_dir, None if no_publish else audit_log.parent)
    for said in rec.unmatched + rec.refused:
        click.echo(f"not reconciled: {said}", err=True)
    for f in result["findings"]:
        value = "n/a" if f["value"] is None else f"{f['value']:.3f}"
        click.echo(f"{'pass' if f['passed'] else 'FAIL'}  {f['metric']:<18} {value:>7}  (needs {f['bound']})")
    click.echo(f"{verdict.verdict.upper()}: {verdict.exams} exams reconciled; report {out_dir / 'outcomes.md'}")
    if verdict.verdict == "fail":
        raise SystemExit(1)
