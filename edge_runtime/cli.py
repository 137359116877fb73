"""`edge-runtime` command: serve the bundle at the bedside, grab scanner video, watch results, show the bedside
page, make keys."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from edge_runtime.profile_cli import profile
from edge_runtime.schema import AUTO_VIEW, VIEWS


def profiles_option(help_text: str):
    """--profiles FILE, as serve and grab take it."""
    return click.option(
        "--profiles", "profiles_file", type=click.Path(dir_okay=False, exists=True), default=None, help=help_text
    )


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
@click.option(
    "--thumbnails/--no-thumbnails", default=None, help="Publish the view crops behind results (for the display)."
)
@profiles_option("Scanner profiles file (JSON or TOML), added to the shipped ones and the bundle's.")
@click.option(
    "--allow-unseen-scanners",
    is_flag=True,
    default=None,
    help="Serve frames from scanner profiles the bundle was not trained on (refused by default).",
)
@click.option("-v", "--verbose", is_flag=True)
def serve(bundle_path: str | None, config_path: str | None, verbose: bool, **overrides) -> None:
    """Verify the bundle, then serve: frames in, results/metrics/heartbeats out, every result audited."""
    from edge_runtime.bundle import load_bundle
    from edge_runtime.config import load_config
    from edge_runtime.errors import FattyLiverError
    from edge_runtime.profiles import load_profiles
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
        _log_unvalidated_outputs(bundle)
        trained = {k: v.model_dump() for k, v in (bundle.meta.scanners or {}).items()}
        inline = {k: v.model_dump() for k, v in config.profiles.items()}
        profiles = load_profiles(config.profiles_file, extra={**trained, **inline})
        warm_up(bundle)
        server = EdgeServer(config, bundle, profiles)
        server.serve_forever()
    except FattyLiverError as exc:
        raise click.ClickException(f"refusing to serve: {exc}") from None
    stats = server.metrics().counters
    click.echo(
        f"stopped cleanly: {stats.get('results_published', 0)} results, "
        f"{stats.get('frames_received', 0)} frames received",
        err=True,
    )


def _log_unvalidated_outputs(bundle) -> None:
    """A bundle output the run never cross-validated is served, but nobody should read it unaware."""
    for name in bundle.meta.outputs.unvalidated():
        logging.getLogger("edge_runtime").warning(
            "bundle %s: output %s was NOT cross-validated by its training run (task %s); treat it as unvalidated",
            bundle.name,
            name,
            bundle.meta.training.task,
        )
    exam = bundle.meta.exam
    if exam is None or exam.p_fatty is None:
        logging.getLogger("edge_runtime").warning(
            "bundle %s has no p_fatty calibrator (it predates exam calibration): exam answers use the raw p_fatty "
            "and say calibrated=false",
            bundle.name,
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

    results = run_watch(endpoint, click.echo, count, timeout, _client_keys(client_key, server_key))
    if count is not None and len(results) < count:
        raise click.ClickException(f"only {len(results)} of {count} results arrived before the timeout")


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None, help="edge.toml")
@click.option("--results", default=None, help="The runtime's results endpoint (default: the config's).")
@click.option("--listen", default=None, help="HOST:PORT for the page [default: 127.0.0.1:8080].")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True), default=None, help="Access token.")
@click.option("--client-key", type=click.Path(dir_okay=False), default=None, help="CURVE: this display's *.key_secret")
@click.option("--server-key", type=click.Path(dir_okay=False), default=None, help="CURVE: the runtime's public *.key")
def display(config_path: str | None, results: str | None, listen: str | None, token_file: str | None, **keys) -> None:
    """Serve the bedside page: live exams, thumbnails, PDFF trend and box health, in a browser."""
    from edge_runtime.config import load_config
    from edge_runtime.display.service import run_display
    from edge_runtime.errors import FattyLiverError

    try:
        config = load_config(config_path)
        settings = config.display.model_copy(
            update={k: v for k, v in {"listen": listen, "token_file": token_file}.items() if v is not None}
        )
        endpoint = results or settings.results or config.results
        run_display(endpoint, settings, _client_keys(keys["client_key"], keys["server_key"]), click.echo)
    except FattyLiverError as exc:
        raise click.ClickException(str(exc)) from None


def _client_keys(client_key: str | None, server_key: str | None):
    from edge_runtime.transport import CurveClientKeys

    if bool(client_key) != bool(server_key):
        raise click.UsageError("CURVE needs both --client-key and --server-key")
    return CurveClientKeys(Path(client_key), Path(server_key)) if client_key and server_key else None


def _server_keys(server_key: str | None, allowed_clients: str | None):
    from edge_runtime.transport import CurveServerKeys

    if bool(server_key) != bool(allowed_clients):
        raise click.UsageError("CURVE needs both --server-key and --allowed-clients")
    return CurveServerKeys(Path(server_key), Path(allowed_clients)) if server_key and allowed_clients else None


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
@profiles_option("Scanner profiles file (JSON or TOML) that defines --scanner, if it is not a shipped one.")
@click.option("--session", required=True, help="Opaque exam id (never a name or MRN).")
@click.option(
    "--view",
    type=click.Choice([AUTO_VIEW, *VIEWS]),
    default=AUTO_VIEW,
    show_default=True,
    help="auto: the bundle's view gate decides what each frame shows (no operator key).",
)
@click.option("--view-keys/--no-view-keys", default=False, help="Override from stdin: 'l', 'k' or 'a' (auto) + Enter.")
@click.option("--frames", "endpoint", default="tcp://127.0.0.1:5555", show_default=True, help="PUB bind endpoint.")
@click.option("--fps", type=click.FloatRange(0, min_open=True), default=None, help="Cap the frame rate.")
@click.option("--encoding", type=click.Choice(["raw", "png", "jpeg"]), default="raw", show_default=True)
@click.option("--loop", is_flag=True, help="Replay a file or folder forever.")
@click.option(
    "--server-key",
    type=click.Path(dir_okay=False),
    default=None,
    help="CURVE: this grabber's *.key_secret (enables Ironhouse with --allowed-clients).",
)
@click.option("--allowed-clients", type=click.Path(file_okay=False), default=None, help="CURVE: runtime public keys.")
def grab(source: str, view: str, view_keys: bool, endpoint: str, loop: bool, **kw) -> None:
    """Publish the scanner's video output as protocol-v1 frames."""
    import time

    from edge_runtime.errors import FattyLiverError
    from edge_runtime.grabber import GrabTarget, ViewSelector
    from edge_runtime.grabber import grab as run_grab
    from edge_runtime.profiles import get_profile, load_profiles
    from edge_runtime.schema import SESSION_PATTERN
    from edge_runtime.transport import FrameSender, publisher

    try:
        get_profile(load_profiles(kw.pop("profiles_file")), kw["scanner"])
    except FattyLiverError as exc:
        raise click.BadParameter(str(exc), param_hint="--scanner") from None
    if not SESSION_PATTERN.match(kw["session"]):
        raise click.BadParameter("1-64 of [A-Za-z0-9_.:-]; an exam id, never a name", param_hint="--session")
    curve = _server_keys(kw.pop("server_key"), kw.pop("allowed_clients"))
    selector = ViewSelector(view)
    if view_keys:
        selector.listen()
        click.echo("view keys: l = liver, k = kidney_liver, a = auto (then Enter)", err=True)
    try:
        with publisher(endpoint, hwm=64, curve=curve) as sock:
            time.sleep(0.3)  # let subscribers connect before the first frame
            sent = run_grab(source, FrameSender(sock), GrabTarget(**kw), selector, loop=loop)
    except FattyLiverError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"sent {sent} frames", err=True)


main.add_command(profile)

if __name__ == "__main__":
    main()
