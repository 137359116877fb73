"""`edge-runtime` command: serve the bundle at the bedside, grab scanner video, watch results, make keys."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Bedside fatty-liver inference over ZeroMQ (no TensorFlow)."""


def _not_yet(name: str) -> None:
    raise click.ClickException(f"`edge-runtime {name}` is not implemented yet")


for _name in ("serve", "grab", "watch", "keys"):
    main.command(name=_name, help=f"(not implemented yet) {_name}")(lambda _n=_name: _not_yet(_n))


if __name__ == "__main__":
    main()
