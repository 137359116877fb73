"""The model a bedside serves, and safe updates to it.

``serve`` loads the bundle that edge.toml (and the flags) name through :class:`ConfiguredModel`: verified against
the trusted keys, its scanner profiles resolved, its interpreters warmed up. On SIGHUP the same path runs again on
a helper thread while the old model goes on serving (:class:`ModelUpdates`); the worker swaps the new one in
between two frames. A bundle that fails any step is refused and the old model serves on. Both outcomes are said in
the heartbeat (``model_update``) and recorded in the audit log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from edge_runtime.config import ModelSettings, RuntimeConfig, load_config
from edge_runtime.contracts import INPUT_SHAPE, VIEWS, ModelInfo, ModelUpdate
from edge_runtime.errors import FattyLiverError
from edge_runtime.model.bundle import Bundle, load_bundle
from edge_runtime.model.gate import GatePolicy
from edge_runtime.model.signing import TrustPolicy
from edge_runtime.pipeline.exam import ExamModel
from edge_runtime.scanners.profiles import ScannerProfile, load_profiles

log = logging.getLogger("edge_runtime")


class ModelRefused(FattyLiverError):
    """The configured bundle cannot be served: no bundle named, no trusted keys, or the bundle failed a check."""


@dataclass(frozen=True)
class ServedModel:
    """A verified, warmed-up bundle with everything read from it once: the scanner profiles it reads frames with, its
    gate's decisions at the site's view authority, and its exam statements at the site's coverage. Immutable: a
    model update makes a new one."""

    bundle: Bundle
    profiles: Mapping[str, ScannerProfile]
    gate: GatePolicy
    exam: ExamModel

    @classmethod
    def prepared(cls, bundle: Bundle, profiles: Mapping[str, ScannerProfile], config: RuntimeConfig) -> ServedModel:
        """The model as this site's configuration serves it."""
        gate = GatePolicy(bundle.gate, bundle.meta.view_gate, config.gate.view_authority)
        exam = ExamModel.from_bundle(bundle.meta.exam, bundle.threshold, config.exam)
        return cls(bundle, MappingProxyType(dict(profiles)), gate, exam)


class Served:
    """The one reference to the model being served, and its updates. A reader takes ``current`` once per frame or
    stored object and so sees one consistent model; an update is prepared beside it (``updates``) and replaces the
    reference in one step, between two frames."""

    def __init__(self, model: ServedModel, loader: ConfiguredModel | None = None):
        """Args:
        model: the verified, warmed-up model to serve first.
        loader: where a model update (SIGHUP) reads the next bundle from; None: updates are refused.
        """
        self.current, self.since = model, time.time()
        self.updates = ModelUpdates(loader)

    def swap(self, model: ServedModel) -> ServedModel:
        """Serve ``model`` from now on; returns the one it replaces."""
        previous, self.current, self.since = self.current, model, time.time()
        return previous


def warm_up(bundle: Bundle) -> np.ndarray:
    """Run the encoder once so the first real frame does not pay the interpreter's first-invoke costs."""
    return bundle.encode(VIEWS[0], np.zeros(INPUT_SHAPE, np.uint8))


def trust_policy(model: ModelSettings) -> TrustPolicy:
    """Who may have made the bundle: keys in --trusted-keys, or (development only) nobody with --allow-unsigned."""
    if model.trusted_keys is None and not model.allow_unsigned:
        raise ModelRefused("no trusted keys: pass --trusted-keys DIR (or --allow-unsigned in development)")
    return TrustPolicy.from_folder(model.trusted_keys, model.allow_unsigned)


class ConfiguredModel:
    """The bundle the configuration names, read afresh on every load: a SIGHUP after editing ``model.bundle`` in
    edge.toml, or after a new bundle was put at the same path, serves that bundle. Only ``[runtime.model]`` and the
    scanner profiles are re-read; other settings need a restart."""

    def __init__(self, config_path: str | Path | None, overrides: dict[str, Any]):
        self.config_path, self.overrides = config_path, overrides

    def config(self) -> RuntimeConfig:
        return load_config(self.config_path, self.overrides)

    def target(self) -> str:
        """The bundle folder a load reads now (for the update record when the load fails)."""
        try:
            return str(self.config().model.bundle)
        except FattyLiverError as exc:
            return f"(configuration unreadable: {exc})"

    def load(self, config: RuntimeConfig | None = None) -> ServedModel:
        """Verify and warm up the configured bundle (from ``config`` when the caller has just read it, else read
        afresh); ModelRefused (or BundleError) names why it cannot serve."""
        config = self.config() if config is None else config
        if config.model.bundle is None:
            raise ModelRefused("no bundle: pass --bundle or set model.bundle in the config")
        trust = trust_policy(config.model)
        bundle = load_bundle(config.model.bundle, num_threads=config.model.threads, trust=trust)
        trained = {k: v.model_dump() for k, v in bundle.meta.scanners.items()}
        inline = {k: v.model_dump() for k, v in config.scanners.profiles.items()}
        profiles = load_profiles(config.scanners.profiles_file, extra={**trained, **inline})
        warm_up(bundle)
        return ServedModel.prepared(bundle, profiles, config)


class ModelUpdates:
    """SIGHUP asks (``request``); a helper thread prepares the new model; the worker ``take``s it between frames and
    reports the swap (``swapped``). A request while one is being prepared is folded into it."""

    def __init__(self, loader: ConfiguredModel | None):
        self.loader = loader
        self.last: ModelUpdate | None = None
        self._ready: ServedModel | None = None
        self._lock = threading.Lock()
        self._preparing: threading.Thread | None = None
        self.on_refused = lambda update: None  # the server records refusals in the audit log

    def request(self, serving: ModelInfo) -> None:
        """Start preparing the configured bundle, unless it is already being prepared."""
        if self.loader is None:
            log.warning("model update asked for, but this server was given its bundle directly: nothing to re-read")
            return
        with self._lock:
            if self._preparing is not None and self._preparing.is_alive():
                return
            self._preparing = threading.Thread(target=self._prepare, args=(serving,), name="model-update", daemon=True)
            self._preparing.start()

    def _prepare(self, serving: ModelInfo) -> None:
        target = self.loader.target()
        log.info("model update: verifying and warming up %s while %s %s serves", target, serving.name, serving.sha)
        try:
            prepared = self.loader.load()
        except Exception as exc:  # whatever fails, the old model must serve on, and say why
            error = str(exc) if isinstance(exc, FattyLiverError) else f"{type(exc).__name__}: {exc}"
            self.last = ModelUpdate(at=time.time(), ok=False, requested=target, previous=serving, error=error)
            log.error("model update REFUSED, %s %s serves on: %s", serving.name, serving.sha, error)
            self.on_refused(self.last)
            return
        with self._lock:
            self._ready = prepared

    def take(self) -> ServedModel | None:
        """The prepared model, once; None when there is none (the worker calls this between frames)."""
        with self._lock:
            ready, self._ready = self._ready, None
        return ready

    def swapped(self, previous: ModelInfo, served: ServedModel, sessions_ended: int) -> ModelUpdate:
        """Record the swap the worker just made."""
        model = served.bundle.model_info
        self.last = ModelUpdate(
            at=time.time(),
            ok=True,
            requested=str(served.bundle.root),
            model=model,
            previous=previous,
            sessions_ended=sessions_ended,
        )
        log.info(
            "model update: now serving %s %s (sha %s); %d exams ended",
            model.name,
            model.version,
            model.sha,
            sessions_ended,
        )
        return self.last

    def wait(self, timeout: float) -> None:
        """Until the update being prepared is ready or refused (tests and benchmarks)."""
        thread = self._preparing
        if thread is not None:
            thread.join(timeout)
