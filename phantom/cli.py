"""`phantom` command: synthetic cohorts for training/tests and a live phantom scanner for the runtime."""

from __future__ import annotations

import sys
import time
from collections import Counter

import click

from edge_runtime.contracts import FATTY_PDFF, VIEWS
from edge_runtime.tools.cli_support import ProductGroup
from phantom.formats import FORMATS
from phantom.layouts import CLASSIC_LAYOUTS, DUAL_LAYOUT, LAYOUT_SETS, LAYOUTS
from phantom.subject import PDFF_DISTRIBUTIONS


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


@click.group(cls=ProductGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option(
    "--layout",
    "layouts",
    type=click.Choice([name for name in LAYOUTS if name != DUAL_LAYOUT]),
    multiple=True,
    help="Screen layout (repeat to mix; each vendor's subjects take its chosen layouts in turn). "
    "Default: the two classic layouts.",
)
@click.option(
    "--layouts",
    "layout_set",
    type=click.Choice(list(LAYOUT_SETS)),
    default=None,
    help="A set of layouts: classic (PHILIPS + GE), three-vendor (classic + the CANON-like third vendor, for "
    "trainer transfer), all.",
)
@click.option(
    "--format",
    "formats",
    type=click.Choice(list(FORMATS)),
    multiple=True,
    help="screen: console-screen PNG; dicom: DICOM with a US Region Sequence; cropped: B-mode-only PNG. "
    "Repeat to mix (subjects take them in turn). Default: screen.",
)
@click.option("--cine-frames", type=click.IntRange(1, 60), default=1, show_default=True, help="Frames per DICOM.")
@click.option(
    "--other-frames",
    type=click.IntRange(0, 40),
    default=4,
    show_default=True,
    help="Rows per subject with view=other (air, other organs, Doppler, menu, partial contact): what the "
    "bundle's view gate learns from. 0 turns them off.",
)
@click.option(
    "--appearance",
    type=click.Choice(["standard", "shifted"]),
    default="standard",
    show_default=True,
    help="shifted: finer speckle, narrow dynamic range, a bright grey map and gain far out of range "
    "(a cohort the model never saw, for the out-of-distribution guard).",
)
@click.option(
    "--pdff-distribution",
    type=click.Choice(list(PDFF_DISTRIBUTIONS)),
    default="paper",
    show_default=True,
    help="paper: the paper cohort's long tail; severity-rich: fatty subjects evenly over 5-10, 10-15, 15-30 %.",
)
@click.option(
    "--id-prefix",
    default="PH",
    show_default=True,
    help="Subject ids are PREFIX0001...: give another site's cohort its own, as its patients are other people.",
)
def cohort(
    n_subjects: int,
    seed: int,
    out_dir: str,
    prevalence: float,
    masks: bool,
    workers: int | None,
    layouts: tuple[str, ...],
    layout_set: str | None,
    formats: tuple[str, ...],
    cine_frames: int,
    other_frames: int,
    appearance: str,
    pdff_distribution: str,
    id_prefix: str,
) -> None:
    """Write a cohort: images of both views, manifest.csv, profiles.json, truth.json and a contact sheet."""
    from phantom.cohort import CohortForm, generate_cohort

    chosen = (*layouts, *LAYOUT_SETS.get(layout_set, ()))
    layouts_used = tuple(dict.fromkeys(chosen)) or CLASSIC_LAYOUTS
    form = CohortForm(
        layouts_used, formats or ("screen",), cine_frames, other_frames, appearance, pdff_distribution, id_prefix
    )
    try:
        form.check()
        with click.progressbar(length=(2 + other_frames) * n_subjects, label="rendering", file=sys.stderr) as bar:
            summary = generate_cohort(out_dir, n_subjects, seed, prevalence, masks, workers, bar.update, form)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    fatty = sum(s.pdff >= FATTY_PDFF for s in summary.subjects)
    by = {key: Counter(getattr(s, key) for s in summary.subjects) for key in ("vendor", "screen_layout")}
    click.echo(f"{n_subjects} subjects ({fatty} fatty) in {summary.seconds:.1f} s")
    click.echo("vendors:       " + ", ".join(f"{n} {v}" for v, n in by["vendor"].items()))
    click.echo("layouts:       " + ", ".join(f"{n} {v}" for v, n in by["screen_layout"].items()))
    click.echo(f"formats:       {', '.join(form.formats)}")
    click.echo(f"manifest:      {summary.manifest}")
    click.echo(f"profiles:      {summary.out_dir / 'profiles.json'} (pass to trainer with --profiles)")
    click.echo(f"contact sheet: {summary.contact_sheet}")


@main.command()
@click.option("--patients", type=click.IntRange(8, 10_000), default=60, show_default=True, help="With an MRI result.")
@click.option(
    "--distractors",
    type=click.IntRange(0, 10_000),
    default=10,
    show_default=True,
    help="Patients with ultrasound studies and no MRI.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option(
    "--layout",
    "layouts",
    type=click.Choice([n for n in LAYOUTS if n != DUAL_LAYOUT]),
    multiple=True,
    help="Console layout (repeat to mix). Default: the two classic layouts.",
)
@click.option("--cine-frames", type=click.IntRange(1, 60), default=4, show_default=True, help="Frames per cine loop.")
@click.option(
    "--gain-shift-db",
    type=float,
    default=0.0,
    show_default=True,
    help="Every console's gain this far off its preset (a drifted console).",
)
@click.option("--id-prefix", default="AR", show_default=True, help="Truth ids are PREFIX0001...")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Processes (default: all cores).")
def archive(patients: int, distractors: int, seed: int, out_dir: str, layouts: tuple[str, ...], cine_frames: int,
            gain_shift_db: float, id_prefix: str, workers: int | None) -> None:  # fmt: skip
    """Write a hospital archive with known truth: each patient's ultrasound studies (stills and cine loops among
    other organs' frames) under their own ID, accession number and date, distractors, and the MRI-PDFF results as a
    CSV list and a FHIR Bundle."""
    from phantom.archive import ArchivePlan, archive_studies, write_archive

    plan = ArchivePlan(patients, seed, layouts or CLASSIC_LAYOUTS, cine_frames, distractors=distractors,
                       id_prefix=id_prefix, gain_shift_db=gain_shift_db)  # fmt: skip
    try:
        studies = len(archive_studies(plan))
        with click.progressbar(length=studies, label="studies", file=sys.stderr) as bar:
            written = write_archive(out_dir, plan, workers, on_study=lambda: bar.update(1))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"{patients} patients with MRI, {distractors} distractors, {studies} studies in {out_dir}/archive")
    click.echo("cases:     " + ", ".join(f"{n} {c}" for c, n in Counter(p.case for p in written).items()))
    click.echo(f"reference: {out_dir}/reference.csv and reference.fhir.json; truth: {out_dir}/truth.json")


@main.command()
@click.option("--subject", "index", type=click.IntRange(0, 99_999), default=0, show_default=True,
              help="Which subject of the seed's cohort is followed.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--visits",
    default="0:",
    show_default=True,
    help="DAY:PDFF per visit, comma-separated (empty PDFF: the subject's own), e.g. 0:22,120:15.",
)
@click.option("--cine-frames", type=click.IntRange(0, 60), default=0, show_default=True, help="Frames per cine loop.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Output folder.")
def study(index: int, seed: int, visits: str, cine_frames: int, out_dir: str) -> None:
    """Write a patient's studies over months as a console stores them: one DICOM study per visit, each dated, the
    same patient, anatomy, scanner and operator, the liver at each visit's PDFF (phantom.followup)."""
    from phantom.followup import parse_visits, write_series
    from phantom.subject import draw_cohort

    try:
        plan = parse_visits(visits)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--visits") from None
    subject = draw_cohort(index + 1, seed)[index]
    for written in write_series(out_dir, subject, plan, seed, cine_frames=cine_frames):
        identity = written.identity
        where = written.images[0].path.parent
        click.echo(f"{identity.study_date} study {identity.study_uid}: {written.subject.subject_id} at PDFF "
                   f"{written.subject.pdff:.1f} %, {len(written.images)} images in {where}")  # fmt: skip


@main.command()
@click.option("--frames", "endpoint", default="tcp://127.0.0.1:5555", show_default=True, help="PUB bind endpoint.")
@click.option("--fps", type=click.FloatRange(0.1, 1000), default=30, show_default=True)
@click.option("--sessions", "n_sessions", type=click.IntRange(1, 1000), default=2, show_default=True)
@click.option("--switch-every", type=click.FloatRange(0.1), default=5.0, show_default=True, help="Seconds per view.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--duration", type=click.FloatRange(0.1), default=None, help="Stop after this many seconds.")
@click.option("--count", type=click.IntRange(1), default=None, help="Stop after this many frames.")
@click.option("--encoding", type=click.Choice(["raw", "png", "jpeg"]), default="raw", show_default=True)
@click.option(
    "--server-key",
    type=click.Path(dir_okay=False),
    default=None,
    help="CURVE: this source's *.key_secret (enables Ironhouse with --allowed-clients).",
)
@click.option("--allowed-clients", type=click.Path(file_okay=False), default=None)
@click.option(
    "--truth-log",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write each session's subject and true PDFF here (JSON), to score exam answers against.",
)
@click.option(
    "--script",
    type=click.Choice(["alternate", "exam"]),
    default="alternate",
    show_default=True,
    help="alternate: switch views every --switch-every s; exam: liver, kidney, probe lifted, gallbladder, back.",
)
@click.option("--auto-views", is_flag=True, help="Send view 'auto' (the bundle's view gate decides), not the key.")
@click.option(
    "--prevalence",
    default="39/90",
    show_default=True,
    callback=_parse_prevalence,
    help="Share of fatty subjects among the streamed exams.",
)
@click.option("--pdff-distribution", type=click.Choice(list(PDFF_DISTRIBUTIONS)), default="paper", show_default=True)
@click.option(
    "--frame-log",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write one JSON line per frame: seq, session, what the screen shows, the header's view.",
)
def stream(
    endpoint: str,
    fps: float,
    n_sessions: int,
    switch_every: float,
    seed: int,
    duration: float | None,
    count: int | None,
    encoding: str,
    server_key: str | None,
    allowed_clients: str | None,
    truth_log: str | None,
    script: str,
    auto_views: bool,
    frame_log: str | None,
    prevalence: float,
    pdff_distribution: str,
) -> None:
    """Replay phantom screens over ZeroMQ as a live scanner (protocol v1), switching views like a sonographer."""
    import json
    import signal
    import threading
    from pathlib import Path

    from edge_runtime.wire.transport import CurveServerKeys, FrameSender, publisher
    from phantom.stream import EXAM_SCRIPT, PhantomStream, StreamCohort, prepare_sessions, write_truth

    click.echo(f"rendering {n_sessions} session(s)...", err=True)
    exam = EXAM_SCRIPT if script == "exam" else None
    shots = tuple(dict.fromkeys(shot for shot, _ in exam)) if exam else VIEWS
    sessions = prepare_sessions(n_sessions, StreamCohort(seed, prevalence, pdff_distribution), shots=shots)
    if truth_log:
        write_truth(Path(truth_log), sessions)
    if bool(server_key) != bool(allowed_clients):
        raise click.UsageError("CURVE needs both --server-key and --allowed-clients")
    curve = CurveServerKeys(Path(server_key), Path(allowed_clients)) if server_key and allowed_clients else None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with publisher(endpoint, hwm=64, curve=curve) as sock:
        time.sleep(0.3)  # let subscribers connect before the first frame
        click.echo(f"streaming {', '.join(s.name for s in sessions)} at {fps:g} frames/s on {endpoint}", err=True)
        started = time.perf_counter()
        phantom = PhantomStream(sessions, fps, switch_every, encoding, exam, auto_views)
        log = open(frame_log, "w") if frame_log else None  # noqa: SIM115 - closed below, after the stream
        on_frame = (lambda _: log.write(json.dumps(phantom.last_truth) + "\n")) if log else None
        try:
            sent = phantom.run(FrameSender(sock), duration, count, stop.is_set, on_frame)
        finally:
            if log:
                log.close()
    elapsed = time.perf_counter() - started
    click.echo(f"sent {sent} frames in {elapsed:.1f} s ({sent / max(elapsed, 1e-9):.1f} frames/s)", err=True)


if __name__ == "__main__":
    main()
