"""`edge-runtime profile`: onboard a new console (detect its B-mode box) and list the known profiles."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge_runtime.tools.cli_support import ProductGroup


@click.group(cls=ProductGroup)
def profile() -> None:
    """Scanner profiles: where the B-mode image sits on each console's screen."""


def _existing(out: Path) -> dict[str, dict[str, object]]:
    """The profiles already in --out."""
    from edge_runtime.scanners.profiles import profiles_mapping, read_profiles_file

    if out.suffix.lower() != ".json":
        raise click.BadParameter("profile detect writes JSON; name the file *.json", param_hint="--out")
    return profiles_mapping(read_profiles_file(out)) if out.exists() else {}


def _refuse_clash(out: Path, existing: dict, names: list[str], replace: bool) -> None:
    clash = [n for n in names if n in existing]
    if clash and not replace:
        named = ", ".join(map(repr, clash))
        raise click.ClickException(f"{out} already defines {named}; choose another --name or pass --replace")


def _write_picture(path: Path, rgb) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise click.ClickException(f"could not write the overlay {path} (is the suffix .png?)")


@profile.command()
@click.argument("screens", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--name", default="site-scanner", show_default=True, help="Profile name (the manifest's scanner).")
@click.option("--vendor", default="unspecified", show_default=True, help="PHILIPS, GE, ...: balances CV folds.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Add the profile(s) to this JSON file.")
@click.option("--overlay", type=click.Path(dir_okay=False), default=None, help="PNG with the box(es) drawn.")
@click.option("--replace", is_flag=True, help="Overwrite profiles of the same name in --out.")
def detect(screens: tuple[str, ...], name: str, vendor: str, out: str | None, overlay: str | None, **kw) -> None:
    """Find the B-mode image box on one or more screen grabs (or stored DICOM images) of one console and print its
    profile; a dual display gives one profile per image, NAME-1 and NAME-2, left to right. A DICOM file's own
    region sequence, when it has one, is the answer the detection is checked against.

    Check the overlay PNG before using the profile: each green box must frame one whole image and nothing else.
    """
    from edge_runtime.scanners.detect import check_stated, draw_overlay, iou, onboard
    from edge_runtime.scanners.profiles import ScannerProfile

    existing = _existing(Path(out)) if out else {}
    found = onboard(list(screens), name, vendor)
    if out:
        _refuse_clash(Path(out), existing, found.names, kw["replace"])
    for profile_name, mapping in found.profile_mappings().items():
        ScannerProfile.from_mapping(profile_name, mapping)  # the same checks every profile gets
    for path, boxes in found.per_grab:
        scores = ", ".join(f"{iou(b, c):.3f}" for b, c in zip(boxes, found.boxes, strict=True))
        click.echo(f"{path}: {len(boxes)} box(es) {boxes} (IoU with the combined: {scores})", err=True)
    if found.first.stated is not None:
        agreed = ", ".join(f"{s:.3f}" for s in check_stated(found.first, found.boxes))
        click.echo(f"the file's own region sequence agrees (IoU {agreed})", err=True)
    if len(found.boxes) > 1:
        click.echo(f"a display of {len(found.boxes)} images side by side: profiles {', '.join(found.names)}", err=True)
    if found.first.model and found.first.model != name:
        hint = f"the files name their model {found.first.model!r}: `serve --dicom-listen` matches a profile of that "
        click.echo(hint + "name to them by itself (else map it in [runtime.dicom.scanners])", err=True)
    click.echo(json.dumps(found.profile_mappings(), indent=1))
    overlay_path = Path(overlay) if overlay else (Path(out).parent if out else Path(".")) / f"{name}-overlay.png"
    picture = found.first.rgb
    for profile_name, box in zip(found.names, found.boxes, strict=True):
        picture = draw_overlay(picture, box, f"{profile_name}: {box}")
    _write_picture(overlay_path, picture)
    click.echo(f"overlay: {overlay_path} (check each box frames one image)", err=True)
    if out:
        existing |= found.profile_mappings()
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(dict(sorted(existing.items())), indent=1) + "\n")
        click.echo(f"profile(s) {', '.join(found.names)} written to {out}", err=True)


@profile.command("list")
@click.option("--profiles", "profiles_file", type=click.Path(dir_okay=False, exists=True), default=None)
def list_profiles(profiles_file: str | None) -> None:
    """The shipped profiles, plus a profiles file's, as JSON."""
    from edge_runtime.scanners.profiles import load_profiles, profiles_mapping

    click.echo(json.dumps(profiles_mapping(load_profiles(profiles_file)), indent=1))
