"""Bedside configuration: ``edge.toml``, one table per stage, every key described, validated with pydantic.

``[runtime.model]``, ``[runtime.transport]``, ``[runtime.scanners]``, ``[runtime.sessions]``, ``[runtime.gate]``,
``[runtime.exam]``, ``[runtime.audit]``, ``[runtime.metrics]``, ``[runtime.thumbnails]``, ``[runtime.display]``,
``[runtime.security]``, ``[runtime.dicom]`` and ``[runtime.pacs]``. ``edge-runtime serve`` builds one flag per key
from these models (``edge_runtime.tools.cli_support.settings_options``): a field's ``flag`` names it when the short name
is the natural one (``--frames``), else it is ``--<table>-<key>``. Unknown keys are errors: a typo must not
silently fall back to a default at the bedside.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from edge_runtime.contracts import ScannerSpec, StrictModel, validation_problems
from edge_runtime.errors import ConfigError
from edge_runtime.followup.change import DEFAULT_BETWEEN_VISITS_PP, DEFAULT_CHANGE_SCALE, DEFAULT_PAIR_SD, ChangeRule
from edge_runtime.hospital.peers import checked_url
from edge_runtime.wire.transport import CurveClientKeys, CurveServerKeys


def flag(name: str) -> dict[str, Any]:
    """A field's command-line flag, when it is not ``--<table>-<key>``."""
    return {"json_schema_extra": {"flag": name}}


class ModelSettings(StrictModel):
    """[runtime.model]: the bundle to serve and how its interpreters run."""

    bundle: Path | None = Field(None, description="The verified model bundle folder.", **flag("--bundle"))
    threads: int = Field(
        2, ge=1, le=64, description="Interpreter threads (the box's physical cores).", **flag("--threads")
    )
    trusted_keys: Path | None = Field(
        None,
        description="Folder of trusted *.public signing keys; the bundle must carry a signature by one.",
        **flag("--trusted-keys"),
    )
    allow_unsigned: bool = Field(
        False,
        description="Serve an unsigned bundle (development only: said in the log, heartbeat and page).",
        **flag("--allow-unsigned"),
    )


class TransportSettings(StrictModel):
    """[runtime.transport]: the ZeroMQ endpoints (protocol v1)."""

    frames: str = Field(
        "tcp://127.0.0.1:5555", description="Frame source endpoint the runtime's SUB connects to.", **flag("--frames")
    )
    results: str = Field(
        "tcp://127.0.0.1:5556", description="Results endpoint the runtime's PUB binds.", **flag("--results")
    )
    receive_hwm: int = Field(8, ge=1, description="Receive high-water mark: small, so stale frames drop, not queue.")

    @field_validator("frames", "results")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError(f"{value!r} is not a ZeroMQ endpoint (e.g. tcp://127.0.0.1:5555, ipc:///run/x)")
        return value


class ScannerSettings(StrictModel):
    """[runtime.scanners]: the screen layouts frames may come from, beyond the shipped and the bundle's own."""

    profiles_file: Path | None = Field(
        None, description="A scanner profiles file (JSON or TOML) to add.", **flag("--profiles")
    )
    profiles: dict[str, ScannerSpec] = Field(
        default_factory=dict, description="Inline profiles, one [runtime.scanners.profiles.NAME] table each."
    )
    allow_unseen: bool = Field(
        False,
        description="Serve frames from scanner profiles the bundle was not trained on (counted, not refused).",
        **flag("--allow-unseen-scanners"),
    )


class SessionSettings(StrictModel):
    """[runtime.sessions]: how long an exam's frames are kept and how many exams at once."""

    pairing_window_s: float = Field(
        300.0, gt=0, description="Seconds within which both views must be captured to pair.", **flag("--pairing-window")
    )
    ttl_s: float = Field(900.0, gt=0, description="Seconds without a new frame after which an exam ends.")
    max_active: int = Field(256, ge=1, description="Exams kept at once; the least recently seen ends first.")


class GateSettings(StrictModel):
    """[runtime.gate]: what the bundle's view gate and guard decide."""

    view_authority: Literal["model", "header"] = Field(
        "model",
        description="When a frame names its view and the bundle's view gate confidently disagrees: whose view "
        "is used (the mismatch is counted either way). With 'header', named frames keep their view.",
    )
    out_of_distribution: Literal["mark", "withhold"] = Field(
        "mark", description="A result built on a frame beyond the bundle's guard: published marked, or withheld."
    )
    repeated_frame_correlation: float = Field(
        0.999,
        ge=0,
        le=1.01,
        description="A frame whose model input (averaged over 4x4-pixel blocks) correlates at least this much with "
        "the session's last kept frame of its view is a repeat, e.g. a frozen screen: counted frames_repeated and "
        "not paired again. A new live frame correlates about 0.99 (new speckle); above 1 pairs every frame.",
    )


class ExamPolicy(StrictModel):
    """[runtime.exam]: how pairs become an exam answer (docs/DESIGN.md, 'The exam-level answer')."""

    window_pairs: int = Field(30, ge=1, description="Most recent pairs combined.")
    window_s: float = Field(120.0, gt=0, description="Pairs older than this (frame time) are dropped.")
    trim: float = Field(0.2, ge=0, lt=0.5, description="Share trimmed from each end before averaging.")
    min_pairs: int = Field(5, ge=1, description="Pairs needed before any exam call.")
    hold_updates: int = Field(5, ge=1, description="Consecutive updates a new call must hold before it is shown.")
    hold_s: float = Field(2.0, ge=0, description="...and for at least this long (frame time), whatever the rate.")
    pdff_coverage: float | None = Field(
        None, gt=0, lt=1, description="Coverage of the PDFF interval (default: the bundle's, 0.9)."
    )
    definite_error: float | None = Field(
        None,
        gt=0,
        lt=0.5,
        description="The largest share of wrong definite calls, per class, the bundle's calibration subjects must "
        "certify before a call is definite (default: the bundle's, 5 %); a smaller share certifies fewer calls.",
    )


class AuditSettings(StrictModel):
    """[runtime.audit]: the append-only JSON-lines log of every result and every exam's final answer."""

    log: Path = Field(Path("audit/results.jsonl"), description="The audit log file.", **flag("--audit-log"))
    max_bytes: int = Field(50_000_000, ge=1024, description="Rotate the log past this size.")
    backups: int = Field(5, ge=1, description="Rotated files kept; the oldest beyond them is deleted (counted).")
    max_age_days: float | None = Field(
        None, gt=0, description="Delete rotated files last written longer ago than this (counted); unset: by size only."
    )
    identity_key: Path | None = Field(
        None,
        description="The site's pseudonym key (created on first start; default: identity.key beside the log): "
        "exams are matched to MRI-PDFF by it.",
    )

    def identity_key_path(self) -> Path | None:
        """Where the pseudonym key lives; None when the log is a device (nothing beside it to keep a key in)."""
        if self.identity_key is not None:
            return self.identity_key
        return None if self.log.is_char_device() else self.log.parent / "identity.key"


class DriftSettings(StrictModel):
    """[runtime.drift]: each scanner's recent exams against what the bundle's validation expects
    (edge_runtime.validation.drift); an alarm goes to the heartbeat, the page and Prometheus."""

    enabled: bool = Field(True, description="Watch every scanner's recent exams.")
    window_exams: int = Field(20, ge=5, le=1000, description="The most recent exams per scanner judged together.")
    min_exams: int = Field(10, ge=5, le=1000, description="Exams a scanner needs before it is judged.")
    alpha: float = Field(
        0.001, gt=0, lt=0.5, description="Chance of an alarm on in-distribution exams at each check (after each exam)."
    )


class MetricsSettings(StrictModel):
    """[runtime.metrics]: the metrics and heartbeat topics and the Prometheus endpoint."""

    period_s: float = Field(5.0, gt=0, description="Seconds between metrics messages.", **flag("--metrics-period"))
    heartbeat_period_s: float = Field(1.0, gt=0, description="Seconds between heartbeats.")
    stall_s: float = Field(
        10.0,
        gt=0,
        description="A stage loop silent this long is stalled: /healthz answers 503 and the systemd watchdog starves.",
    )
    prometheus_port: int = Field(
        0, ge=0, le=65535, description="Prometheus endpoint on 127.0.0.1 (0: off).", **flag("--prometheus-port")
    )


class ThumbnailSettings(StrictModel):
    """[runtime.thumbnails]: the view crops behind results, for the bedside page."""

    enabled: bool = Field(
        False, description="Publish the view crops behind each result (for the display).", **flag("--thumbnails")
    )
    period_s: float = Field(1.0, gt=0, description="At most one pair of thumbnails per session per this.")


class DisplayConfig(StrictModel):
    """[runtime.display]: `edge-runtime display`, the bedside page; its flags override it."""

    results: str | None = Field(
        None, description="The runtime's results endpoint; default: transport.results.", **flag("--results")
    )
    listen: str = Field(
        "127.0.0.1:8080", description="HOST:PORT the page is served on; beyond localhost a token.", **flag("--listen")
    )
    token_file: Path | None = Field(
        None, description="File holding the access token (default: a fresh one).", **flag("--token-file")
    )


class SecurityConfig(StrictModel):
    """[runtime.security]: CURVE (Ironhouse): the runtime's key pair, the frame source's key, allowed displays."""

    enabled: bool = Field(False, description="Encrypt both links and admit only listed keys.")
    secret_key: Path | None = Field(None, description="The runtime's own *.key_secret (from `edge-runtime keys`).")
    frames_server_key: Path | None = Field(None, description="The frame source's public *.key.")
    allowed_clients: Path | None = Field(None, description="Folder of display/logger public *.key files.")

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> SecurityConfig:
        if not self.enabled:
            return self
        missing = [k for k in ("secret_key", "frames_server_key", "allowed_clients") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"CURVE is enabled but {', '.join(missing)} is not set")
        absent = [str(p) for p in (self.secret_key, self.frames_server_key, self.allowed_clients) if not p.exists()]
        if absent:
            raise ValueError(f"CURVE key file(s) not found: {', '.join(absent)}")
        return self

    def results_keys(self) -> CurveServerKeys | None:
        """The runtime is the CURVE server of the results link (displays must be listed)."""
        return CurveServerKeys(self.secret_key, self.allowed_clients) if self.enabled else None

    def frames_keys(self) -> CurveClientKeys | None:
        """The runtime is a CURVE client of the frame source."""
        return CurveClientKeys(self.secret_key, self.frames_server_key) if self.enabled else None


AE_TITLE = r"^[ -~]{1,16}$"  # DICOM AE titles: 1-16 printable ASCII characters (PS3.5 table 6.2-1, AE)


class DicomSettings(StrictModel):
    """[runtime.dicom]: the bedside as a DICOM storage node: images and cine loops the scanner stores, one exam per
    study (edge_runtime.sources.dicom). Off unless ``listen`` is set."""

    listen: str | None = Field(
        None, description="HOST:PORT the Storage SCP listens on (unset: no DICOM).", **flag("--dicom-listen")
    )
    ae_title: str = Field("FATTYLIVER", pattern=AE_TITLE, description="This node's AE title.", **flag("--dicom-ae"))
    allowed_calling: list[str] = Field(
        default_factory=list,
        description="Calling AE titles admitted (the scanners'); empty admits any, and the log says so.",
    )
    study_idle_s: float = Field(
        120.0, gt=0, description="A study with no new image for this long ends its exam.", **flag("--study-idle")
    )
    scanners: dict[str, str] = Field(
        default_factory=dict,
        description="'MANUFACTURER' or 'MANUFACTURER/MODEL' (as the files say) -> scanner profile name, for files "
        "the automatic match (model name, or vendor and screen size) does not place.",
    )
    max_pdu_bytes: int = Field(262_144, ge=4096, le=16_777_216, description="Largest PDU accepted.")
    max_association_bytes: int = Field(
        512_000_000, ge=1_000_000, description="Bytes one association may send; past them it is aborted."
    )
    max_frames: int = Field(600, ge=1, le=10_000, description="Frames one object may hold (a cine loop).")
    max_associations: int = Field(8, ge=1, le=64, description="Associations served at once.")
    network_timeout_s: float = Field(30.0, gt=0, description="An association silent this long is closed.")
    queue_timeout_s: float = Field(
        60.0, gt=0, description="How long a store waits for the pipeline to take its frames before 'out of resources'."
    )
    keep_dir: Path | None = Field(None, description="Keep every received object here (unset: nothing goes to disk).")
    keep_max_bytes: int = Field(
        2_000_000_000, ge=1_000_000, description="The kept objects' size limit; the oldest go first."
    )
    tls_certificate: Path | None = Field(None, description="PEM certificate: the listener speaks TLS only.")
    tls_key: Path | None = Field(None, description="The certificate's PEM private key.")
    tls_ca: Path | None = Field(None, description="PEM CA bundle: scanners must present a certificate it signed.")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port (tests)
            raise ValueError(f"{value!r} is not HOST:PORT (e.g. 0.0.0.0:11112)")
        return value

    @field_validator("allowed_calling")
    @classmethod
    def _titles(cls, titles: list[str]) -> list[str]:
        bad = [t for t in titles if not re.fullmatch(AE_TITLE, t)]
        if bad:
            raise ValueError(f"not AE titles (1-16 printable ASCII characters): {bad}")
        return titles

    @model_validator(mode="after")
    def _tls_complete(self) -> DicomSettings:
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise ValueError("TLS needs both tls_certificate and tls_key")
        if self.tls_ca is not None and self.tls_certificate is None:
            raise ValueError("tls_ca needs tls_certificate and tls_key")
        return self

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = (self.listen or "").rpartition(":")
        return host.strip("[]"), int(port)


DicomWebUrl = Annotated[str, AfterValidator(checked_url)]  # a DICOMweb root, http(s)://HOST[:PORT]/PATH


def checked_peers(peers: list[str]) -> list[str]:
    """DICOM peers as edge.toml writes them, AE@HOST:PORT; a ValueError names the ones that are not."""
    bad = [p for p in peers if not re.fullmatch(r"[ -~]{1,16}@[A-Za-z0-9.\-_:\[\]]+:\d{1,5}", p)]
    if bad:
        raise ValueError(f"not AE@HOST:PORT: {bad}")
    return peers


class PacsSettings(StrictModel):
    """[runtime.pacs]: each exam's report to the PACS (edge_runtime.hospital): a DICOM SR in the exam's study, sent by
    C-STORE (and optionally STOW-RS) through an on-disk queue. Off unless a destination is set."""

    destinations: list[str] = Field(
        default_factory=list, description="PACS to store reports in, AE@HOST:PORT.", **flag("--pacs")
    )
    stow_url: DicomWebUrl | None = Field(None, description="A DICOMweb service to store reports in too (STOW-RS).")
    queue: Path = Field(
        Path("reports"),
        description="The store-and-forward queue folder (patient data until sent).",
        **flag("--pacs-queue"),
    )
    worklist: str | None = Field(
        None,
        description="The Modality Worklist, AE@HOST:PORT: links screen-grab exams to their study.",
        **flag("--worklist"),
    )
    ae_title: str | None = Field(None, pattern=AE_TITLE, description="Calling AE title (default: dicom.ae_title).")
    retry_s: float = Field(5.0, gt=0, description="First retry after a failed send; doubling each time.")
    retry_max_s: float = Field(600.0, gt=0, description="The longest wait between retries.")
    timeout_s: float = Field(30.0, gt=0, description="Seconds before a PACS or worklist counts as not answering.")

    @field_validator("destinations")
    @classmethod
    def _peers(cls, peers: list[str]) -> list[str]:
        return checked_peers(peers)

    @property
    def enabled(self) -> bool:
        return bool(self.destinations or self.stow_url)


class FollowUpSettings(StrictModel):
    """[runtime.followup]: each exam linked to a study against the patient's previous report by this product, read
    from the PACS off the result path (edge_runtime.followup). On whenever a PACS is configured."""

    enabled: bool = Field(True, description="Compare each report's exam with the patient's previous one.")
    window_days: int = Field(730, ge=1, le=36500, description="How far back a previous report is looked for.")
    peer: str | None = Field(None, description="The PACS to ask, AE@HOST:PORT (default: the first report destination).")
    dicomweb_url: DicomWebUrl | None = Field(
        None,
        description="A DICOMweb service to ask instead, by QIDO-RS and WADO-RS (default: pacs.stow_url when no PACS "
        "is a report destination).",
    )
    timeout_s: float = Field(10.0, gt=0, description="Seconds before the PACS counts as not answering the query.")
    scale: float = Field(
        DEFAULT_CHANGE_SCALE,
        gt=0,
        description="Multiplier on two exams' repeat error that bounds 90 % of unchanged pairs (benchmarks "
        "followup calibrates it and between_visits for a bundle).",
    )
    between_visits: float = Field(
        DEFAULT_BETWEEN_VISITS_PP, ge=0, description="Sd of what a new day moves an exam's PDFF, percentage points."
    )
    pair_sd: float = Field(
        DEFAULT_PAIR_SD, gt=0, description="One image pair's sd on log(1 + PDFF): an exam of one pair's error."
    )

    @field_validator("peer")
    @classmethod
    def _peer(cls, peer: str | None) -> str | None:
        return None if peer is None else checked_peers([peer])[0]

    @property
    def rule(self) -> ChangeRule:
        return ChangeRule(self.scale, self.between_visits, self.pair_sd)


class RuntimeConfig(StrictModel):
    """edge.toml's [runtime]: one table per stage of the bedside."""

    model: ModelSettings = Field(default_factory=ModelSettings)
    transport: TransportSettings = Field(default_factory=TransportSettings)
    scanners: ScannerSettings = Field(default_factory=ScannerSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    exam: ExamPolicy = Field(default_factory=ExamPolicy)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    thumbnails: ThumbnailSettings = Field(default_factory=ThumbnailSettings)
    display: DisplayConfig = Field(default_factory=DisplayConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    dicom: DicomSettings = Field(default_factory=DicomSettings)
    pacs: PacsSettings = Field(default_factory=PacsSettings)
    followup: FollowUpSettings = Field(default_factory=FollowUpSettings)


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested overrides on nested settings; a None value is 'not given' and keeps the base."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict):
            out[key] = merge(out.get(key) or {}, value)
        elif value is not None:
            out[key] = value
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """edge.toml's content under [runtime] (a file may also hold the tables without the [runtime] prefix)."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return data.get("runtime", data) if set(data) <= {"runtime"} else data


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RuntimeConfig:
    """The configuration file (if any) with nested overrides (flags) on top; a ConfigError lists every problem."""
    data = merge(read_toml(path) if path is not None else {}, overrides or {})
    try:
        return RuntimeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path or 'configuration'}: {validation_problems(exc)}") from None
