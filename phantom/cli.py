"""`phantom` command: synthetic cohorts for training/tests and a live phantom scanner for the runtime."""

from __future__ import annotations

import sys

import click

from phantom.subject import FATTY_THRESHOLD_PDFF


def _parse_prevalence(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        if "/" in value:
            num, den = value.split("/", 1)
            share = float(num) / float(den)
        else:
            share = float(value)
    except (ValueError, ZeroDivisionError):
        raise click.BadParameter(f"expected a fraction like 0.43 or 39/90, got {value!r}") from None
    if not 0 <= share <= 1:
        raise click.BadParameter(f"must lie in [0, 1], got {share}")
    return share


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Phantom scanner: synthetic B-mode screens with known liver fat (PDFF)."""


@main.command()
@click.option("--subjects", "n_subjects", type=click.IntRange(1, 100_000), default=90, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option(
    "--prevalence",
    default="39/90",
    show_default=True,
    callback=_parse_prevalence,
    help="Share of fatty subjects (PDFF >= 5 %).",
)
@click.option("--masks/--no-masks", default=True, show_default=True, help="Write truth label masks.")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Processes (default: all cores).")
def cohort(n_subjects: int, seed: int, out_dir: str, prevalence: float, masks: bool, workers: int | None) -> None:
    """Write a cohort: scanner-screen PNGs of both views, manifest.csv, truth.json and a contact sheet."""
    from phantom.cohort import generate_cohort

    with click.progressbar(length=2 * n_subjects, label="rendering views", file=sys.stderr) as bar:
        summary = generate_cohort(out_dir, n_subjects, seed, prevalence, masks, workers, bar.update)
    fatty = sum(s.pdff >= FATTY_THRESHOLD_PDFF for s in summary.subjects)
    vendors = {v: sum(s.vendor == v for s in summary.subjects) for v in ("PHILIPS", "GE")}
    click.echo(
        f"{n_subjects} subjects ({fatty} fatty, {vendors['PHILIPS']} PHILIPS / {vendors['GE']} GE) "
        f"in {summary.seconds:.1f} s"
    )
    click.echo(f"manifest:      {summary.manifest}")
    click.echo(f"contact sheet: {summary.contact_sheet}")


@main.command()
def stream() -> None:
    """Replay phantom screens over ZeroMQ as a live scanner (protocol v1)."""
    raise click.ClickException("`phantom stream` is not implemented yet (see the edge runtime issue)")


if __name__ == "__main__":
    main()
