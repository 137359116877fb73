"""`trainer` command: validate manifests, train and ablate the CLKL protocol, explain, evaluate, export."""

from __future__ import annotations

import json

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train, evaluate and export fatty-liver models (Kim et al. 2021 CLKL protocol)."""


@main.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def validate(manifest: str, as_json: bool) -> None:
    """Check a manifest and every image it names; list all problems (exit 1) or summarise (exit 0)."""
    from trainer.manifest import ManifestError, load_manifest

    try:
        loaded = load_manifest(manifest)
    except ManifestError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(1) from None
    summary = loaded.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{manifest}: OK")
    click.echo(f"  subjects:   {summary['subjects']} ({summary['images']} images)")
    click.echo(f"  views:      {summary['views']}")
    click.echo(f"  vendors:    {summary['vendors']}")
    click.echo(f"  labelled:   {summary['labelled']}  unlabelled: {summary['unlabelled']}")
    if summary["fatty_share"] is not None:
        lo, hi = summary["pdff_range"]
        click.echo(f"  fatty:      {summary['fatty_share']:.1%} (PDFF >= 5 %)   PDFF range {lo:.1f}-{hi:.1f} %")


def _not_yet(name: str) -> None:
    raise click.ClickException(f"`trainer {name}` is not implemented yet")


for _name in ("train", "ablate", "explain", "evaluate", "export"):
    main.command(name=_name, help=f"(not implemented yet) {_name}")(lambda _n=_name: _not_yet(_n))


if __name__ == "__main__":
    main()
