"""Bedside configuration: a TOML file validated with pydantic; every key can be overridden by a flag.

Unknown keys are errors (a typo must not silently fall back to a default at the bedside).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge_runtime.errors import FattyLiverError
from edge_runtime.exam import ExamPolicy
from edge_runtime.schema import ScannerSpec, validation_problems
from edge_runtime.transport import CurveClientKeys, CurveServerKeys


class ConfigError(FattyLiverError):
    """The configuration file is unreadable or invalid; the message lists every problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecurityConfig(_Strict):
    """CURVE (Ironhouse): the runtime's key pair, the frame source's public key, the allowed displays' keys."""

    enabled: bool = False
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


class DisplayConfig(_Strict):
    """`edge-runtime display` settings ([runtime.display]); its flags override them."""

    results: str | None = Field(None, description="The runtime's results endpoint; default: runtime.results.")
    listen: str = Field("127.0.0.1:8080", description="HOST:PORT the page is served on; beyond localhost a token.")
    token_file: Path | None = Field(None, description="File holding the access token (default: a fresh one).")


class RuntimeConfig(_Strict):
    bundle: Path | None = None
    frames: str = "tcp://127.0.0.1:5555"
    results: str = "tcp://127.0.0.1:5556"
    metrics_period_s: float = Field(5.0, gt=0)
    heartbeat_period_s: float = Field(1.0, gt=0)
    pairing_window_s: float = Field(300.0, gt=0)
    session_ttl_s: float = Field(900.0, gt=0)
    max_sessions: int = Field(256, ge=1)
    threads: int = Field(2, ge=1, le=64)
    receive_hwm: int = Field(8, ge=1)
    audit_log: Path = Path("audit/results.jsonl")
    audit_max_bytes: int = Field(50_000_000, ge=1024)
    audit_backups: int = Field(5, ge=1)
    prometheus_port: int = Field(0, ge=0, le=65535)
    profiles: dict[str, ScannerSpec] = Field(default_factory=dict, description="Inline scanner profiles.")
    profiles_file: Path | None = Field(None, description="A scanner profiles file (JSON or TOML) to add.")
    allow_unseen_scanners: bool = Field(
        False, description="Serve frames from scanner profiles the bundle was not trained on (counted, not refused)."
    )
    view_authority: Literal["model", "header"] = Field(
        "model",
        description="When a frame names its view and the bundle's view gate confidently disagrees: whose view "
        "is used (the mismatch is counted either way). With 'header', named frames skip the gate.",
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
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    exam: ExamPolicy = Field(default_factory=ExamPolicy)
    thumbnails: bool = Field(False, description="Publish the view crops behind each result (for the display).")
    thumbnail_period_s: float = Field(1.0, gt=0, description="At most one pair of thumbnails per session per this.")
    display: DisplayConfig = Field(default_factory=DisplayConfig)

    @field_validator("frames", "results")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError(f"{value!r} is not a ZeroMQ endpoint (e.g. tcp://127.0.0.1:5555, ipc:///run/x)")
        return value


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RuntimeConfig:
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        data = data.get("runtime", data) if set(data) <= {"runtime"} else data
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    try:
        return RuntimeConfig(**data)
    except ValidationError as exc:
        raise ConfigError(f"{path or 'configuration'}: {validation_problems(exc)}") from None
