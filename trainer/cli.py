"""`trainer` command: validate manifests, train and ablate the CLKL protocol, explain, evaluate, export, and check
a bundle at a new site.

Defaults and allowed values come from the declared settings (``TrainConfig``, ``ExportSettings``), never from
literals here: a default changes in one place and `--help` shows it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edge_runtime.contracts.validation import WINDOW_DAYS
from edge_runtime.tools.cli_support import ProductGroup, setting
from trainer.config import FEDERATED_EPOCHS, FEDERATION_STRATEGIES, PERSONAL_EPOCHS, ExportSettings, TrainConfig


@click.group(cls=ProductGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train, evaluate and export fatty-liver models (Kim et al. 2021 CLKL protocol)."""


PROFILES_HELP = "Scanner profiles file (JSON or TOML) for scanners beyond the shipped ones."


@main.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--profiles", type=click.Path(dir_okay=False, exists=True), default=None, help=PROFILES_HELP)
def validate(manifest: str, as_json: bool, profiles: str | None) -> None:
    """Check a manifest and every image it names; list all problems (exit 1) or summarise (exit 0)."""
    from edge_runtime.scanners.profiles import load_profiles
    from trainer.manifest import ManifestError, load_manifest

    try:
        loaded = load_manifest(manifest, load_profiles(profiles))
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
        share, rule = summary["fatty_share"], summary["fatty_rule"]
        click.echo(f"  fatty:      {share:.1%} ({rule})   PDFF range {lo:.1f}-{hi:.1f} %")


PROTOCOL_FIELDS = (
    "weights",
    "augment",
    "appearance",
    "epochs",
    "pooling",
    "folds",
    "seed",
    "batch_size",
    "learning_rate",
    "strategy",
    "cache_dir",
    "bootstrap",
    "minmax_floor",
    "features",
    "int8_samples",
    "holdout_share",
    "head_loop",
    "ensemble",
    "ensemble_subsample",
    "class_coverage",
    "profiles",
)


def protocol_options(fn):
    """Options shared by train and ablate: the paper's protocol (TrainConfig's defaults), each knob overridable."""
    flags = {"learning_rate": ("--lr",)}
    for field in reversed(PROTOCOL_FIELDS):
        fn = setting(TrainConfig, field, *flags.get(field, ()))(fn)
    return fn


def _config(**fields: Any) -> TrainConfig:
    from trainer.config import build_config

    weights = fields["weights"]
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise click.BadParameter(
            f"weights file not found: {weights} (expected 'imagenet', 'none' or a path)", param_hint="--weights"
        )
    return build_config(**fields)


def _print_summary(report: dict, label: str) -> None:
    pooled, ci = report["pooled"], report["ci95"]
    parts = []
    for key in ("accuracy", "precision", "auc", "r2", "mae"):
        if pooled.get(key) is not None:
            interval = ci.get(key)
            parts.append(f"{key} {pooled[key]:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""))
    click.echo(f"{label} (pooled over all subjects): " + ", ".join(parts))


def _labelled_cohort(manifest: str, config: TrainConfig):
    from trainer.train import load_labelled_cohort

    return load_labelled_cohort(manifest, profiles=config.profiles, harmonisation=config.harmonisation)


@main.command()
@click.option("--manifest", type=click.Path(dir_okay=False), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@setting(TrainConfig, "views")
@setting(TrainConfig, "task")
@setting(TrainConfig, "finetune")
@setting(TrainConfig, "hri")
@click.option("--folds-file", type=click.Path(dir_okay=False), default=None, help="Reuse another run's folds.json.")
@protocol_options
def train(manifest: str, out_dir: str, folds_file: str | None, **fields) -> None:
    """Cross-validate one configuration; writes config, folds, per-fold heads, predictions, report and plots."""
    from trainer.train import train_run

    config = _config(**fields, extra={"manifest": str(Path(manifest).resolve())})
    cohort = _labelled_cohort(manifest, config)
    report = train_run(cohort, config, Path(out_dir), Path(folds_file) if folds_file else None)
    click.echo((Path(out_dir) / "report.md").read_text())
    _print_summary(report, f"{config.views} {config.task}")
    click.echo(f"run directory: {out_dir}")


@main.command()
@click.option("--manifest", type=click.Path(dir_okay=False), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@setting(TrainConfig, "task", help="Task of every row (the paper's ablation compares classifiers).")
@click.option("--finetune", "finetune_from", default="all", show_default=True, help="Fine-tuning row: all|blockN.")
@click.option("--finetune-epochs", type=click.IntRange(1), default=None, help="Epochs of the fine-tuning row.")
@click.option("--skip", multiple=True, help="Leave out a row (liver, kidney_liver, clkl, clkl_finetuned, ...).")
@protocol_options
def ablate(manifest: str, out_dir: str, finetune_from: str, finetune_epochs: int | None, skip: tuple[str, ...], **kw):
    """The paper's comparison: liver vs kidney-liver vs CLKL, CLKL fine-tuned, CLKL without augmentation."""
    from trainer.ablate import ROWS, run_ablation

    unknown = set(skip) - set(ROWS)
    if unknown:
        raise click.BadParameter(f"unknown row(s) {sorted(unknown)}; rows are {', '.join(ROWS)}", param_hint="--skip")
    config = _config(**kw, extra={"manifest": str(Path(manifest).resolve())})
    cohort = _labelled_cohort(manifest, config)
    run_ablation(cohort, config, Path(out_dir), skip, finetune_from, finetune_epochs)
    click.echo((Path(out_dir) / "ablation.md").read_text())


@main.command()
@click.option("--manifest", type=click.Path(dir_okay=False), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@setting(TrainConfig, "views")
@setting(TrainConfig, "task")
@setting(TrainConfig, "hri")
@click.option(
    "--study/--no-study",
    default=False,
    show_default=True,
    help="Also compare no appearance augmentation, each family alone and all families on the same rows.",
)
@protocol_options
def transfer(manifest: str, out_dir: str, study: bool, **fields) -> None:
    """Across scanners: train on some vendors, test on one never seen (every pair; leave-one-vendor-out)."""
    from trainer.transfer import run_transfer

    config = _config(**fields, extra={"manifest": str(Path(manifest).resolve())})
    cohort = _labelled_cohort(manifest, config)
    run_transfer(cohort, config, Path(out_dir), study)
    click.echo((Path(out_dir) / "transfer.md").read_text())
    click.echo(f"plot: {Path(out_dir) / 'transfer.png'}")


@main.command()
@click.option("--run", "run_dir", type=click.Path(file_okay=False, exists=True), required=True)
@click.option("--subject", "subject_id", required=True)
@click.option("--manifest", type=click.Path(dir_okay=False), default=None, help="Default: the run's manifest.")
@click.option("--nsamples", type=click.IntRange(50), default=400, show_default=True, help="SHAP coalitions.")
def explain(run_dir: str, subject_id: str, manifest: str | None, nsamples: int) -> None:
    """Grad-CAM heatmaps and SHAP attributions over both views of one subject, as PNG overlays."""
    from trainer.explain import explain_subject

    result = explain_subject(run_dir, subject_id, manifest, nsamples=nsamples)
    click.echo(f"subject {subject_id} (test subject of fold {result['fold']}, MRI-PDFF {result['pdff']})")
    for name, info in result["outputs"].items():
        share = ", ".join(f"{v} {s:+.3f}" for v, s in info["shap_per_view"].items())
        click.echo(f"  {name} = {info['value']:.3f}; SHAP by view: {share}; overlay {info['png']}")


@main.command()
@click.option("--run", "run_dir", type=click.Path(file_okay=False, exists=True), required=True)
@click.option("--manifest", type=click.Path(dir_okay=False), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None)
@click.option("--profiles", type=click.Path(dir_okay=False, exists=True), default=None, help=PROFILES_HELP)
@click.option(
    "--bundle",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="A bundle exported from the run: report the share of the cohort its out-of-distribution guard flags.",
)
def evaluate(run_dir: str, manifest: str, out_dir: str | None, profiles: str | None, bundle: str | None) -> None:
    """Apply a trained run to another cohort: metrics where PDFF exists, reader agreement where it does not.

    Subjects the run trained on are scored only by the fold model that held them out (see `scored_by`)."""
    from trainer.evaluate import evaluate_run

    out = Path(out_dir) if out_dir else None
    result = evaluate_run(run_dir, manifest, out, profiles, bundle)
    click.echo(json.dumps({k: v for k, v in result.items() if k != "out_dir"}, indent=2))
    reused = result["scored_by"].get("held_out_by_id_only", [])
    if reused:
        click.echo(
            f"NOTE: {len(reused)} subject(s) share an id with the run's training subjects but none of their images "
            "(other patients under reused ids?); each is scored by the fold that held its id out. Give new subjects "
            "new ids to have them scored by the whole ensemble.",
            err=True,
        )
    guard = result.get("guard")
    if guard and guard["shifted"]:
        click.echo(
            f"WARNING: the bundle's guard flags {100 * guard['flagged_share']:.0f} % of this cohort (designed for "
            f"{100 * guard['false_alarm_target']:.0f} %): its images differ from training; do not trust the metrics "
            "above without checking why.",
            err=True,
        )
    click.echo(f"written to {result['out_dir']}")


SIGN_KEY = click.Path(exists=True, dir_okay=False, path_type=Path)
SIGN_KEY_HELP = "Sign the bundle with this Ed25519 key (`edge-runtime keys signing`); serve trusts signed bundles."


def export_options(fn):
    """trainer export's options, one per ExportSettings field."""
    flags = {
        "int8": ("--int8/--float",),
        "representative_samples": ("--samples",),
        "debugger": ("--debugger/--no-debugger",),
    }
    paths = {"fidelity_manifest": click.Path(exists=True, dir_okay=False)}
    for field in reversed(ExportSettings.model_fields):
        extra = {"type": paths[field]} if field in paths else {}
        fn = setting(ExportSettings, field, *flags.get(field, ()), **extra)(fn)
    return fn


@main.command()
@click.option("--run", "run_dir", type=click.Path(file_okay=False, exists=True), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Bundle directory.")
@click.option("--sign-key", type=SIGN_KEY, default=None, help=SIGN_KEY_HELP)
@export_options
def export(run_dir: str, out_dir: str, sign_key: Path | None, **fields) -> None:
    """Export a CLKL run as a verified bedside bundle (int8 encoder, bias-corrected head, fidelity report)."""
    from trainer.export import FidelityMiss, export_bundle

    settings = _export_settings(fields)
    try:
        result = export_bundle(run_dir, out_dir, settings)
    except FidelityMiss as exc:
        click.echo((Path(out_dir) / "fidelity.md").read_text(), err=True)
        raise FidelityMiss(
            f"int8 bundle misses the fidelity bars: {exc} (see {out_dir}/fidelity.md; --allow-fidelity-miss to accept)"
        ) from None
    click.echo((Path(out_dir) / "fidelity.md").read_text())
    click.echo(f"bundle {result.bundle} (sha {result.sha}) written and verified in {result.seconds:.0f} s")
    click.echo(f"export record (who trained, calibrated and judged it): {result.record}")
    _sign(Path(out_dir), sign_key)


def _sign(bundle_dir: Path, secret: Path | None) -> None:
    """Sign a bundle this command has just written and verified (edge_runtime.model.signing)."""
    if secret is not None:
        from edge_runtime.model.signing import sign_bundle

        click.echo(f"{bundle_dir}: signed by key {sign_bundle(bundle_dir, secret)}")


@main.command("site-cohort")
@click.option(
    "--reference",
    type=click.Path(dir_okay=False, exists=True),
    required=True,
    help="MRI-PDFF results: CSV (patient_id, accession, mri_date, pdff) or a FHIR Bundle of Observations.",
)
@click.option("--pacs", default=None, help="The PACS to ask, AE@HOST:PORT (C-FIND, then --retrieve).")
@click.option("--dicomweb", default=None, help="Or a DICOMweb service to ask, its root URL (QIDO-RS, then WADO-RS).")
@click.option("--bundle", "bundle_dir", type=click.Path(file_okay=False, exists=True), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="The hospital's own folder.")
@click.option("--profiles", type=click.Path(dir_okay=False, exists=True), default=None, help=PROFILES_HELP)
@click.option(
    "--window-days",
    type=click.IntRange(0, 3650),
    default=WINDOW_DAYS,
    show_default=True,
    help="Longest gap between the ultrasound study and the MRI.",
)
@click.option(
    "--retrieve",
    "how",
    type=click.Choice(["get", "move"]),
    default="get",
    show_default=True,
    help="C-GET, or C-MOVE to this tool's storage SCP (the PACS must know --calling-ae at --move-port).",
)
@click.option("--calling-ae", default="FLECOHORT", show_default=True, help="This tool's AE title.")
@click.option("--move-port", type=click.IntRange(1, 65535), default=None, help="Storage SCP port for C-MOVE.")
@click.option(
    "--id-key",
    type=click.Path(dir_okay=False),
    default=None,
    help="Pseudonym key file (default: OUT/private/identity.key, created on first use).",
)
@click.option(
    "--adapt-subjects",
    type=click.IntRange(0),
    default=12,
    show_default=True,
    help="Subjects set aside in adapt.csv for site-adapt, half of each class; check.csv holds the rest.",
)
def site_cohort(reference: str, bundle_dir: str, out_dir: str, profiles, window_days, how, **kw) -> None:
    """A validation study from the PACS (DIMSE or DICOMweb): for each MRI-PDFF result, the nearest ultrasound study
    within the window, retrieved, its best liver and kidney-liver frames chosen by the bundle's gate; a manifest for
    site-check and site-adapt, a per-patient log and a contact sheet. Resumable: a second run skips finished
    patients."""
    from edge_runtime.hospital.reference import read_reference
    from trainer.site.cohort import site_cohort as build

    archive = _archive(kw["pacs"], kw["dicomweb"], kw["calling_ae"], kw["move_port"])
    results = read_reference(reference)
    for refused in results.refused:
        click.echo(f"refused: {refused}", err=True)
    summary = build(results, archive, bundle_dir, out_dir, profiles=profiles, window_days=window_days, how=how,
                    key_file=kw["id_key"], adapt_count=kw["adapt_subjects"])  # fmt: skip
    for outcome, n in sorted(summary["outcomes"].items()):
        click.echo(f"{outcome:<24} {n:>4}")
    seconds = summary["seconds_per_patient"]["median"]
    click.echo(f"{summary['used']} of {summary['results']} patients used ({seconds or 0:.1f} s per patient, median); "
               f"manifest {Path(out_dir) / 'manifest.csv'} (adapt.csv, check.csv), log cohort_log.csv, "
               "contact_sheet.png")  # fmt: skip


def _archive(pacs: str | None, dicomweb: str | None, calling: str, move_port: int | None):
    """The archive site-cohort asks: a PACS over DIMSE or a DICOMweb service, exactly one."""
    from edge_runtime.hospital.dicomweb import DicomWebArchive
    from edge_runtime.hospital.peers import Peer
    from edge_runtime.hospital.retrieve import Archive

    if (pacs is None) == (dicomweb is None):
        raise click.UsageError("name the archive to ask: --pacs AE@HOST:PORT or --dicomweb URL (one of them)")
    if pacs is not None:
        return Archive(Peer.parse(pacs), calling, move_port=move_port)
    try:
        return DicomWebArchive(dicomweb)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--dicomweb") from None


@main.command("site-check")
@click.option("--bundle", "bundle_dir", type=click.Path(file_okay=False, exists=True), required=True)
@click.option("--manifest", type=click.Path(dir_okay=False), required=True, help="The site's labelled subjects.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--profiles", type=click.Path(dir_okay=False, exists=True), default=None, help=PROFILES_HELP)
@click.option(
    "--criteria",
    "criteria_file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Acceptance criteria JSON (edge_runtime.contracts.AcceptanceCriteria); default: the bundle's own.",
)
def site_check(bundle_dir: str, manifest: str, out_dir: str, profiles: str | None, criteria_file: str | None) -> None:
    """The acceptance test for a new scanner or site: the bundle's bedside path on the site's labelled subjects,
    each figure with a bootstrap CI, judged pass or fail. Exits 1 on fail."""
    from edge_runtime.validation.verdict import remedy
    from trainer.site.check import site_check as check

    result = check(bundle_dir, manifest, out_dir, profiles, criteria_file)
    for f in result["findings"]:
        value = "n/a" if f["value"] is None else f"{f['value']:.3f}"
        click.echo(f"{'pass' if f['passed'] else 'FAIL'}  {f['metric']:<18} {value:>7}  (needs {f['bound']})")
        if not f["passed"]:
            click.echo(f"      {remedy(f['metric'])}")
    verdict = "PASS" if result["pass"] else "FAIL"
    click.echo(f"{verdict}: {result['subjects']} subjects; report {Path(out_dir) / 'site_check.md'}")
    if not result["pass"]:
        raise SystemExit(1)


FEDERATED_FIELDS = tuple(f for f in PROTOCOL_FIELDS if f not in ("strategy", "ensemble", "ensemble_subsample"))


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def federated_options(fn):
    """The protocol's options but the TF distribution strategy (--strategy names the federation's here); --epochs
    counts local epochs per round."""
    flags = {"learning_rate": ("--lr",)}
    epochs = {"default": FEDERATED_EPOCHS, "help": "Local epochs per round (x the rounds: the study's epochs)."}
    for field in reversed(FEDERATED_FIELDS):
        fn = setting(TrainConfig, field, *flags.get(field, ()), **(epochs if field == "epochs" else {}))(fn)
    return fn


def _sites(values: tuple[str, ...], option: str) -> list[tuple[str, str]]:
    """NAME=VALUE pairs, in the order given (a name given twice is the federation's to refuse, by name)."""
    pairs = [v.partition("=") for v in values]
    bad = [v for v, (_, eq, rest) in zip(values, pairs, strict=True) if not eq or not rest]
    if bad:
        raise click.BadParameter(f"expected NAME=VALUE, got {bad[0]!r}", param_hint=option)
    return [(name.strip(), rest.strip()) for name, _, rest in pairs]


@main.command()
@click.option("--site", "sites", multiple=True, required=True, help="A site: NAME=MANIFEST (repeat per site).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--rounds", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option(
    "--strategy",
    "aggregation",
    type=click.Choice(FEDERATION_STRATEGIES),
    default="fedavgm",
    show_default=True,
    help="Flower's aggregation; fedavgm and fedadam add a server optimiser.",
)
@click.option("--proximal-mu", type=click.FloatRange(0), default=0.1, show_default=True, help="FedProx's pull.")
@click.option("--server-lr", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="The server optimiser's learning rate (fedavgm; fedadam's eta).")  # fmt: skip
@click.option("--server-momentum", type=click.FloatRange(0, 1, max_open=True), default=0.9, show_default=True,
              help="FedAvgM's server momentum.")  # fmt: skip
@click.option("--personal-epochs", type=click.IntRange(0), default=PERSONAL_EPOCHS, show_default=True,
              help="Each site also fine-tunes the federated head on its own subjects (epochs; 0: no).")  # fmt: skip
@click.option("--mode", type=click.Choice(["simulation", "deployment"]), default="simulation", show_default=True)
@click.option(
    "--centralised/--no-centralised",
    default=True,
    show_default=True,
    help="Also train on the pooled data for comparison (--no-centralised when it may not be pooled).",
)
@click.option("--site-setting", "site_settings", multiple=True, help="A site's own setting: NAME:KEY=VALUE.")
@setting(TrainConfig, "task", default="both", help="both: the two-output head a bundle ships.")
@federated_options
def federated(sites: tuple[str, ...], out_dir: str, **kw) -> None:
    """Train across sites that keep their images (Flower): each site a client, the federated MinMax, rounds of
    local training aggregated by a Flower strategy (FedAvgM by default); --epochs are local epochs per round.
    Writes a run like any other, with federated.json and federated.png (federated vs centralised, each site alone)."""
    from trainer.federated import Federation, federated_train

    own: dict[str, dict] = {}
    for name, setting_text in _sites(tuple(v.replace(":", "=", 1) for v in kw.pop("site_settings")), "--site-setting"):
        key, _, value = setting_text.partition("=")
        own.setdefault(name, {})[key] = value
    federation = Federation(
        sites=[(name, Path(manifest)) for name, manifest in _sites(sites, "--site")],
        rounds=kw.pop("rounds"), strategy=kw.pop("aggregation"), proximal_mu=kw.pop("proximal_mu"),
        server_learning_rate=kw.pop("server_lr"), server_momentum=kw.pop("server_momentum"),
        personal_epochs=kw.pop("personal_epochs"), mode=kw.pop("mode"), folds=kw["folds"],
        centralised=kw.pop("centralised"), site_settings=own,
        profiles=kw["profiles"],
    )  # fmt: skip
    config = _config(**kw, ensemble=0)
    said = federated_train(federation, config, Path(out_dir))
    for name in ("federated", "centralised"):
        if said.get(name):
            click.echo(f"{name}: AUC {said[name]['auc']:.3f}, R2 {said[name]['r2']:.3f}")
    for name, site in sorted(said["sites"].items()):
        alone, fed = site["alone"].get("auc"), site["federated"].get("auc")
        own = f", personalised AUC {_figure(site['personalised'].get('auc'))}" if "personalised" in site else ""
        click.echo(f"site {name}: alone AUC {_figure(alone)}, federated AUC {_figure(fed)}{own}")
    for name, why in said["why_dropped"].items():
        click.echo(f"site {name} left the study at {why}")
    click.echo(
        f"{said['seconds_per_round']:.1f} s per round ({said['heads_per_round']} heads trained together); "
        f"run directory: {out_dir}"
    )


@main.command("site-adapt")
@click.option("--bundle", "bundle_dir", type=click.Path(file_okay=False, exists=True), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="The adapted bundle.")
@click.option("--manifest", type=click.Path(dir_okay=False), default=None, help="Labelled local subjects (8 or more).")
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="The run the bundle was exported from: its training frames refit the guard with the local ones.",
)
@click.option("--unlabelled", type=click.Path(dir_okay=False), default=None, help="Local exams without MRI-PDFF.")
@click.option("--profiles", type=click.Path(dir_okay=False, exists=True), default=None, help=PROFILES_HELP)
@click.option("--site", default=None, help="The site's name in the bundle (default: the manifest's folder).")
@click.option(
    "--retrain-heads/--keep-heads",
    default=False,
    show_default=True,
    help="With --run and labels: also retrain the heads on the run's subjects plus the local ones (DESIGN.md: on the "
    "CANON-like site recalibrating the parent's heads did better).",
)
@click.option("--sign-key", type=SIGN_KEY, default=None, help=SIGN_KEY_HELP)
def site_adapt(bundle_dir: str, out_dir: str, manifest, run_dir, unlabelled, profiles, site, sign_key, **kw) -> None:
    """Adapt a bundle to a new scanner or site from a handful of its exams: a new bundle whose `site` section names
    its parent, the local evidence and the before/after figures (nested CV over the local subjects)."""
    import time

    from edge_runtime.validation.verdict import remedy
    from trainer.site.adapt import site_adapt as adapt

    start = time.perf_counter()
    result = adapt(bundle_dir, out_dir, manifest, run_dir, unlabelled, profiles, site, kw["retrain_heads"])
    site_info = result["meta"].site
    click.echo(f"{'figure':<18} {'before':>8} {'after':>8}")
    for key, after in result["after"].items():
        before = result["before"].get(key)
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        click.echo(f"{key:<18} {fmt(before):>8} {fmt(after):>8}")
    for f in result["findings"]:
        click.echo(f"{'pass' if f.passed else 'FAIL'}  {f.metric} {f.bound}")
        if not f.passed:
            click.echo(f"      to fix: {remedy(f.metric)}")
    click.echo(site_info.note)
    verdict = {True: "meets", False: "MISSES", None: "cannot be judged against"}[site_info.passed]
    seconds, adapted = time.perf_counter() - start, ", ".join(site_info.adapted)
    click.echo(f"bundle {out_dir} {result['meta'].version} written ({seconds:.0f} s); nested figures {verdict} the")
    click.echo(f"acceptance criteria; adapted: {adapted}")
    _sign(Path(out_dir), sign_key)


def _export_settings(fields: dict[str, Any]) -> ExportSettings:
    from pydantic import ValidationError

    from edge_runtime.contracts import validation_problems
    from edge_runtime.errors import ConfigError

    try:
        return ExportSettings(**fields)
    except ValidationError as exc:
        raise ConfigError(f"export settings: {validation_problems(exc)}") from None


if __name__ == "__main__":
    main()
