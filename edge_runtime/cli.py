"""`edge-runtime` command: serve the bundle at the bedside, grab scanner video, watch results, show the bedside
page, make keys."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from edge_runtime.config import RuntimeConfig
from edge_runtime.contracts import AUTO_VIEW, VIEWS
from edge_runtime.scanners.cli import profile
from edge_runtime.tools.cli_support import ProductGroup, nested_overrides, settings_options
from edge_runtime.validation.cli import outcomes

SERVE_TABLES = (
    "model",
    "transport",
    "scanners",
    "sessions",
    "gate",
    "exam",
    "audit",
    "metrics",
    "thumbnails",
    "dicom",
    "pacs",
    "followup",
)


def profiles_option(help_text: str):
    """--profiles FILE, as grab takes it."""
    return click.option(
        "--profiles", "profiles_file", type=click.Path(dir_okay=False, exists=True), default=None, help=help_text
    )


@click.group(cls=ProductGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Bedside fatty-liver inference over ZeroMQ (no TensorFlow)."""


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="edge.toml (see deploy/edge.example.toml); flags override it.",
)
@settings_options(RuntimeConfig, SERVE_TABLES)
@click.option("-v", "--verbose", is_flag=True)
def serve(config_path: str | None, verbose: bool, **options) -> None:
    """Verify the bundle, then serve: frames in, results/metrics/heartbeats out, every result audited. SIGHUP
    verifies and warms up the configured bundle again and swaps it in between frames (the old one serves on if the
    new one fails)."""
    from edge_runtime.model.bundle import BundleError
    from edge_runtime.model.served import ConfiguredModel, ModelRefused
    from edge_runtime.server import EdgeServer

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    configured = ConfiguredModel(config_path, nested_overrides(options))
    config = configured.config()
    try:
        served = configured.load(config)
    except ModelRefused as exc:
        raise click.UsageError(str(exc)) from None
    except BundleError as exc:
        raise BundleError(f"refusing to serve: {exc}") from None
    if served.bundle.signed_by is None:
        said = "UNSIGNED BUNDLE %s served (--allow-unsigned, signature unchecked): development only, never at a bedside"
        logging.getLogger("edge_runtime").warning(said, served.bundle.name)
    _log_unvalidated_outputs(served.bundle)
    server = EdgeServer(config, served, loader=configured)
    failure = server.serve_forever()
    _say_how_it_stopped(server, failure)


def _say_how_it_stopped(server, failure: str | None) -> None:
    """One line: "stopped cleanly" only when nothing failed and every result is in the audit log; else exit 1."""
    stats = server.bedside.status.metrics().counters
    said = f"{stats.get('results_published', 0)} results, {stats.get('frames_received', 0)} frames received"
    problems = [failure] if failure else []
    audit = server.bedside.audit
    if audit.failures:  # results went out that the audit log does not hold: never "cleanly"
        problems.append(f"{audit.failures} records NOT in the audit log ({audit.last_error})")
    if problems:
        click.echo(f"stopped: {said}; {'; '.join(problems)}", err=True)
        raise SystemExit(1)
    click.echo(f"stopped cleanly: {said}", err=True)


def _log_unvalidated_outputs(bundle) -> None:
    """A bundle output the run never cross-validated is served, but nobody should read it unaware."""
    for name in bundle.meta.outputs.unvalidated():
        logging.getLogger("edge_runtime").warning(
            "bundle %s: output %s was NOT cross-validated by its training run (task %s); treat it as unvalidated",
            bundle.name,
            name,
            bundle.meta.training.task,
        )
    if bundle.meta.exam.p_fatty is None:
        logging.getLogger("edge_runtime").warning(
            "bundle %s has no p_fatty calibrator (its run did not validate p_fatty): exam answers use the raw "
            "p_fatty and say calibrated=false",
            bundle.name,
        )


@main.command()
@click.option("--results", "endpoint", default="tcp://127.0.0.1:5556", show_default=True)
@click.option("--count", type=click.IntRange(1), default=None, help="Exit after this many results.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=None, help="Exit after this many seconds.")
@click.option("--client-key", type=click.Path(dir_okay=False), default=None, help="CURVE: this display's *.key_secret")
@click.option("--server-key", type=click.Path(dir_okay=False), default=None, help="CURVE: the runtime's public *.key")
@click.option(
    "--record",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append every result received, as published (with its end-to-end time), to this JSON-lines file.",
)
def watch(
    endpoint: str,
    count: int | None,
    timeout: float | None,
    client_key: str | None,
    server_key: str | None,
    record: Path | None,
) -> None:
    """Live results and latency percentiles in the terminal."""
    from edge_runtime.tools.watch import watch as run_watch

    results = run_watch(endpoint, click.echo, count, timeout, _client_keys(client_key, server_key), record)
    if count is not None and len(results) < count:
        raise click.ClickException(f"only {len(results)} of {count} results arrived before the timeout")


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None, help="edge.toml")
@settings_options(RuntimeConfig, ("display",))
@click.option("--client-key", type=click.Path(dir_okay=False), default=None, help="CURVE: this display's *.key_secret")
@click.option("--server-key", type=click.Path(dir_okay=False), default=None, help="CURVE: the runtime's public *.key")
def display(config_path: str | None, client_key: str | None, server_key: str | None, **options) -> None:
    """Serve the bedside page: live exams, thumbnails, PDFF trend and box health, in a browser."""
    from edge_runtime.config import load_config
    from edge_runtime.display.service import run_display

    config = load_config(config_path, nested_overrides(options))
    endpoint = config.display.results or config.transport.results
    run_display(endpoint, config.display, _client_keys(client_key, server_key), click.echo)


def _client_keys(client_key: str | None, server_key: str | None):
    from edge_runtime.wire.transport import CurveClientKeys

    if bool(client_key) != bool(server_key):
        raise click.UsageError("CURVE needs both --client-key and --server-key")
    return CurveClientKeys(Path(client_key), Path(server_key)) if client_key and server_key else None


def _server_keys(server_key: str | None, allowed_clients: str | None):
    from edge_runtime.wire.transport import CurveServerKeys

    if bool(server_key) != bool(allowed_clients):
        raise click.UsageError("CURVE needs both --server-key and --allowed-clients")
    return CurveServerKeys(Path(server_key), Path(allowed_clients)) if server_key and allowed_clients else None


@main.group(cls=ProductGroup)
def keys() -> None:
    """Make keys: CURVE pairs for the links, Ed25519 pairs for signing bundles."""


@keys.command("curve")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--name", "names", multiple=True, default=("runtime", "source", "display"), show_default=True)
def curve_keys(out_dir: str, names: tuple[str, ...]) -> None:
    """Create CURVE key pairs (NAME.key public, NAME.key_secret secret) for Ironhouse security."""
    from edge_runtime.wire.security import create_keypair

    for name in names:
        public, secret = create_keypair(out_dir, name)
        click.echo(f"{name}: public {public}, secret {secret}")
    click.echo("Copy each *.key (public) into the allowed-clients folder of the server it may connect to.")


@keys.command("signing")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--name", default="signing", show_default=True, help="Key file names: NAME.secret, NAME.public.")
def signing_keys(out_dir: Path, name: str) -> None:
    """Create an Ed25519 key pair for signing bundles (NAME.secret 0600, NAME.public 0644)."""
    from edge_runtime.model.signing import make_signing_key

    try:
        secret, public = make_signing_key(out_dir, name)
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"secret {secret} (keep it off the bedside), public {public}")
    click.echo("Copy the *.public file into each bedside's trusted-keys folder.")


@main.group(cls=ProductGroup)
def bundle() -> None:
    """Sign a bundle, or check one as the bedside would."""


@bundle.command("sign")
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--key", "secret", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
def sign_command(bundle_dir: Path, secret: Path) -> None:
    """Sign BUNDLE_DIR's bundle.json (which holds every file's SHA-256) after verifying every hash."""
    from edge_runtime.model.bundle import load_bundle
    from edge_runtime.model.signing import sign_bundle

    verified = load_bundle(bundle_dir)  # never sign a bundle whose files do not match their hashes
    click.echo(f"{bundle_dir}: signed by key {sign_bundle(bundle_dir, secret, verified.sha)}")


@bundle.command("verify")
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--trusted-keys", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
def verify_command(bundle_dir: Path, trusted_keys: Path) -> None:
    """Check BUNDLE_DIR as `serve --trusted-keys` does: its signature, then every file's hash and shape."""
    from edge_runtime.model.bundle import load_bundle
    from edge_runtime.model.signing import TrustPolicy

    loaded = load_bundle(bundle_dir, trust=TrustPolicy.from_folder(trusted_keys))
    click.echo(f"{bundle_dir}: {loaded.name} {loaded.version} verified, signed by {loaded.signed_by}")


@main.command()
@click.option("--source", required=True, help="Capture card index (0), a video file, or a folder of screenshots.")
@click.option("--scanner", required=True, help="Scanner profile name of the screen layout.")
@profiles_option("Scanner profiles file (JSON or TOML) that defines --scanner, if it is not a shipped one.")
@click.option("--session", default=None, help="Opaque exam id (never a name or MRN); or let --worklist name it.")
@click.option("--worklist", default=None, help="Modality Worklist AE@HOST:PORT: link the exam to its scheduled study.")
@click.option("--accession", default=None, help="With --worklist: the scheduled procedure (default: the only one).")
@click.option("--station-ae", default=None, help="With --worklist: only procedures scheduled on this AE title.")
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

    from edge_runtime.contracts import SESSION_PATTERN
    from edge_runtime.errors import FattyLiverError
    from edge_runtime.scanners.profiles import get_profile, load_profiles
    from edge_runtime.tools.grabber import GrabTarget, ViewSelector
    from edge_runtime.tools.grabber import grab as run_grab
    from edge_runtime.wire.transport import FrameSender, publisher

    try:
        get_profile(load_profiles(kw.pop("profiles_file")), kw["scanner"])
    except FattyLiverError as exc:
        raise click.BadParameter(str(exc), param_hint="--scanner") from None
    kw["session"] = _grab_session(kw["session"], kw.pop("worklist"), kw.pop("accession"), kw.pop("station_ae"))
    if not SESSION_PATTERN.match(kw["session"]):
        raise click.BadParameter("1-64 of [A-Za-z0-9_.:-]; an exam id, never a name", param_hint="--session")
    curve = _server_keys(kw.pop("server_key"), kw.pop("allowed_clients"))
    selector = ViewSelector(view)
    if view_keys:
        selector.listen()
        click.echo("view keys: l = liver, k = kidney_liver, a = auto (then Enter)", err=True)
    with publisher(endpoint, hwm=64, curve=curve) as sock:
        time.sleep(0.3)  # let subscribers connect before the first frame
        sent = run_grab(source, FrameSender(sock), GrabTarget(**kw), selector, loop=loop)
    click.echo(f"sent {sent} frames", err=True)


def _grab_session(session: str | None, worklist: str | None, accession: str | None, station: str | None) -> str:
    """The exam's session: as given, or the scheduled procedure the worklist lists (by accession, or the only one),
    named by its accession number so the box reports into its study. The patient's name is never printed."""
    from edge_runtime.hospital.peers import Peer
    from edge_runtime.hospital.worklist import choose, find_scheduled, session_for

    if worklist is None:
        if session is None:
            raise click.UsageError("give --session, or --worklist to link the exam to its scheduled study")
        return session
    chosen = choose(find_scheduled(Peer.parse(worklist), station or "FATTYLIVER", station), accession)
    click.echo(f"worklist: accession {chosen.accession} ({chosen.description or 'no description'})", err=True)
    return session_for(chosen.accession)


@main.command()
@click.option("--audit-log", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--session", default=None, help="With --audit-log: the ended exam (its session, or study UID).")
@click.option("--sr", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="A report.")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), default=None, help="A one-page summary.")
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="With --sr: the study's DICOM files, to draw the hepatorenal regions on the frame they were measured on.",
)
@click.option("--pacs", default=None, help="With --sr: fetch the study from this PACS instead (AE@HOST:PORT, C-GET).")
@click.option("--dicomweb", default=None, help="With --sr: fetch the study from this DICOMweb service (WADO-RS).")
def report(audit_log: Path | None, session: str | None, sr: Path | None, png: Path | None, **where) -> None:
    """An ended exam's report: from the audit log's final record, or from a report document (DICOM SR, e.g. from
    the PACS); printed, and with --png drawn as one page for the record, with the measured frame and its regions
    when the study's images are given or fetched."""
    from edge_runtime.hospital.summary import from_audit, from_document, page, text

    if (sr is None) == (audit_log is None) or (audit_log is not None and session is None):
        raise click.UsageError("give --sr FILE, or --audit-log LOG with --session S")
    if sum(v is not None for v in where.values()) > 1 or (sr is None and any(where.values())):
        raise click.UsageError("--images, --pacs and --dicomweb go with --sr, one of them at a time")
    summary = from_document(sr, _frame_source(**where)) if sr is not None else from_audit(audit_log, session)
    click.echo(text(summary), nl=False)
    if png is not None:
        click.echo(f"page: {page(summary, png)}", err=True)


def _frame_source(images: Path | None, pacs: str | None, dicomweb: str | None):
    """Where `report` finds the frame a report's regions were drawn on (None: nowhere, no frame is drawn)."""
    from edge_runtime.hospital.dicomweb import DicomWebArchive
    from edge_runtime.hospital.drawn import drawn_fetched, drawn_from
    from edge_runtime.hospital.peers import Peer
    from edge_runtime.hospital.retrieve import Archive

    if images is not None:
        return lambda said: drawn_from(images, said.hri_regions)
    if pacs is None and dicomweb is None:
        return None
    try:
        archive = Archive(Peer.parse(pacs), "FLEREPORT") if pacs else DicomWebArchive(dicomweb)
    except ValueError as exc:  # a malformed peer or URL, named
        raise click.UsageError(str(exc)) from None
    return lambda said: drawn_fetched(archive, said.study_uid, said.hri_regions)


@main.group(cls=ProductGroup)
def audit() -> None:
    """Check the audit log."""


@audit.command("verify")
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verify_audit_command(logs: tuple[Path, ...]) -> None:
    """Walk each log's hash chain (its rotated files included) and name the first edited or removed line."""
    from edge_runtime.sinks.audit import verify_audit

    broken = False
    for log in logs:
        verdict = verify_audit(log)
        for where in verdict.torn:
            click.echo(f"{where}: torn line (a write cut short by a crash); the chain continues past it")
        if verdict.starts_after_rotation:
            click.echo(f"{log}: the oldest kept line follows records rotated away; the chain is checked from there")
        if verdict.intact:
            click.echo(f"{log}: intact, {verdict.records} records")
        else:
            click.echo(f"{log}: BROKEN at {verdict.broken}", err=True)
            broken = True
    if broken:
        raise SystemExit(1)


main.add_command(profile)
main.add_command(outcomes)

if __name__ == "__main__":
    main()
