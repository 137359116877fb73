"""`edge-runtime` command: serve the bundle at the bedside, grab scanner video, watch results, make keys."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Bedside fatty-liver inference over ZeroMQ (no TensorFlow)."""


@main.command()
@click.option("--bundle", "bundle_path", type=click.Path(file_okay=False), default=None, help="Model bundle folder.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="edge.toml (see deploy/edge.example.toml); flags override it.",
)
@click.option("--frames", default=None, help="Frame source endpoint (SUB connects), e.g. tcp://127.0.0.1:5555.")
@click.option("--results", default=None, help="Results endpoint (PUB binds), e.g. tcp://127.0.0.1:5556.")
@click.option("--audit-log", type=click.Path(dir_okay=False), default=None)
@click.option("--threads", type=click.IntRange(1, 64), default=None, help="Interpreter threads.")
@click.option("--pairing-window", "pairing_window_s", type=click.FloatRange(0, min_open=True), default=None)
@click.option("--metrics-period", "metrics_period_s", type=click.FloatRange(0, min_open=True), default=None)
@click.option("--prometheus-port", type=click.IntRange(0, 65535), default=None)
@click.option("-v", "--verbose", is_flag=True)
def serve(bundle_path: str | None, config_path: str | None, verbose: bool, **overrides) -> None:
    """Verify the bundle, then serve: frames in, results/metrics/heartbeats out, every result audited."""
    from edge_runtime.bundle import BundleError, load_bundle
    from edge_runtime.config import ConfigError, load_config
    from edge_runtime.profiles import ProfileError, load_profiles
    from edge_runtime.security import KeyError_
    from edge_runtime.server import EdgeServer, warm_up

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        config = load_config(config_path, {"bundle": bundle_path, **overrides})
        if config.bundle is None:
            raise click.UsageError("no bundle: pass --bundle or set bundle in the config")
        bundle = load_bundle(config.bundle, num_threads=config.threads)
        profiles = load_profiles(extra={k: v.model_dump() for k, v in config.profiles.items()})
        warm_up(bundle)
        server = EdgeServer(config, bundle, profiles)
        server.serve_forever()
    except (BundleError, ConfigError, ProfileError, KeyError_) as exc:
        raise click.ClickException(f"refusing to serve: {exc}") from None
    stats = server.metrics()["counters"]
    click.echo(
        f"stopped cleanly: {stats.get('results_published', 0)} results, "
        f"{stats.get('frames_received', 0)} frames received",
        err=True,
    )


@main.command()
@click.option("--results", "endpoint", default="tcp://127.0.0.1:5556", show_default=True)
@click.option("--count", type=click.IntRange(1), default=None, help="Exit after this many results.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=None, help="Exit after this many seconds.")
@click.option("--client-key", type=click.Path(dir_okay=False), default=None, help="CURVE: this display's *.key_secret")
@click.option("--server-key", type=click.Path(dir_okay=False), default=None, help="CURVE: the runtime's public *.key")
def watch(
    endpoint: str, count: int | None, timeout: float | None, client_key: str | None, server_key: str | None
) -> None:
    """Live results and latency percentiles in the terminal."""
    from edge_runtime.watch import watch as run_watch

    results = run_watch(
        endpoint,
        click.echo,
        count,
        timeout,
        Path(client_key) if client_key else None,
        Path(server_key) if server_key else None,
    )
    if count is not None and len(results) < count:
        raise click.ClickException(f"only {len(results)} of {count} results arrived before the timeout")


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--name", "names", multiple=True, default=("runtime", "source", "display"), show_default=True)
def keys(out_dir: str, names: tuple[str, ...]) -> None:
    """Create CURVE key pairs (NAME.key public, NAME.key_secret secret) for Ironhouse security."""
    from edge_runtime.security import create_keypair

    for name in names:
        public, secret = create_keypair(out_dir, name)
        click.echo(f"{name}: public {public}, secret {secret}")
    click.echo("Copy each *.key (public) into the allowed-clients folder of the server it may connect to.")


@main.command()
@click.option("--source", required=True, help="Capture card index (0), a video file, or a folder of screenshots.")
@click.option("--scanner", required=True, help="Scanner profile name of the screen layout.")
@click.option("--session", required=True, help="Opaque exam id (never a name or MRN).")
@click.option("--view", type=click.Choice(["liver", "kidney_liver"]), default="liver", show_default=True)
@click.option("--view-keys/--no-view-keys", default=False, help="Read 'l'/'k' + Enter from stdin to switch views.")
@click.option("--frames", "endpoint", default="tcp://127.0.0.1:5555", show_default=True, help="PUB bind endpoint.")
@click.option("--fps", type=click.FloatRange(0, min_open=True), default=None, help="Cap the frame rate.")
@click.option("--encoding", type=click.Choice(["raw", "png", "jpeg"]), default="raw", show_default=True)
@click.option("--loop", is_flag=True, help="Replay a file or folder forever.")
def grab(
    source: str,
    scanner: str,
    session: str,
    view: str,
    view_keys: bool,
    endpoint: str,
    fps: float | None,
    encoding: str,
    loop: bool,
) -> None:
    """Publish the scanner's video output as protocol-v1 frames."""
    import time

    import zmq

    from edge_runtime.grabber import SourceError, ViewSelector
    from edge_runtime.grabber import grab as run_grab
    from edge_runtime.protocol import SESSION_PATTERN

    if not SESSION_PATTERN.match(session):
        raise click.BadParameter("1-64 of [A-Za-z0-9_.:-]; an exam id, never a name", param_hint="--session")
    selector = ViewSelector(view)
    if view_keys:
        selector.listen()
        click.echo("view keys: l = liver, k = kidney_liver (then Enter)", err=True)
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    time.sleep(0.3)
    try:
        sent = run_grab(source, sock, scanner, session, selector, fps, encoding, loop=loop)
    except SourceError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        sock.close(linger=0)
    click.echo(f"sent {sent} frames", err=True)


if __name__ == "__main__":
    main()
