"""`edge-runtime profile`: onboard a new console (detect its B-mode box) and list the known profiles."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge_runtime.cli_support import ProductGroup


@click.group(cls=ProductGroup)
def profile() -> None:
    """Scanner profiles: where the B-mode image sits on each console's screen."""


def _existing(out: Path, name: str, replace: bool) -> dict[str, dict[str, object]]:
    """The profiles already in --out, refusing (before any work) a name clash without --replace."""
    from edge_runtime.profiles import profiles_mapping, read_profiles_file

    if out.suffix.lower() != ".json":
        raise click.BadParameter("profile detect writes JSON; name the file *.json", param_hint="--out")
    existing = profiles_mapping(read_profiles_file(out)) if out.exists() else {}
    if name in existing and not replace:
        raise click.ClickException(f"{out} already defines {name!r}; choose another --name or pass --replace")
    return existing


def _write_picture(path: Path, rgb) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise click.ClickException(f"could not write the overlay {path} (is the suffix .png?)")


@profile.command()
@click.argument("screens", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--name", default="site-scanner", show_default=True, help="Profile name (the manifest's scanner).")
@click.option("--vendor", default="unspecified", show_default=True, help="PHILIPS, GE, ...: balances CV folds.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Add the profile to this JSON file.")
@click.option("--overlay", type=click.Path(dir_okay=False), default=None, help="PNG with the box drawn.")
@click.option("--replace", is_flag=True, help="Overwrite a profile of the same name in --out.")
def detect(screens: tuple[str, ...], name: str, vendor: str, out: str | None, overlay: str | None, **kw) -> None:
    """Find the B-mode image box on one or more screen grabs of one console and print its profile.

    Check the overlay PNG before using the profile: the green box must frame the whole image and nothing else.
    """
    from edge_runtime.profile_detect import draw_overlay, iou, onboard
    from edge_runtime.profiles import ScannerProfile

    existing = _existing(Path(out), name, kw["replace"]) if out else {}
    found = onboard(list(screens), name, vendor)
    ScannerProfile.from_mapping(name, found.profile_mapping())  # the same checks every profile gets
    for path, box in found.per_grab:
        click.echo(f"{path}: box {box} (IoU with the combined box {iou(box, found.box):.3f})", err=True)
    click.echo(json.dumps({name: found.profile_mapping()}, indent=1))
    overlay_path = Path(overlay) if overlay else (Path(out).parent if out else Path(".")) / f"{name}-overlay.png"
    _write_picture(overlay_path, draw_overlay(found.first_grab, found.box, f"{name}: {found.box}"))
    click.echo(f"overlay: {overlay_path} (check the box frames the image)", err=True)
    if out:
        existing[name] = found.profile_mapping()
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(dict(sorted(existing.items())), indent=1) + "\n")
        click.echo(f"profile {name!r} written to {out}", err=True)


@profile.command("list")
@click.option("--profiles", "profiles_file", type=click.Path(dir_okay=False, exists=True), default=None)
def list_profiles(profiles_file: str | None) -> None:
    """The shipped profiles, plus a profiles file's, as JSON."""
    from edge_runtime.profiles import load_profiles, profiles_mapping

    click.echo(json.dumps(profiles_mapping(load_profiles(profiles_file)), indent=1))
