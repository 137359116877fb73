"""`trainer federated`: the paper's head trained across hospitals that keep their images, on Flower.

Each site is a Flower client holding its own manifest and images (features extracted and cached locally); the
coordinator sees per-feature ranges (the federated MinMax), head weights and the scores of held-out subjects.
:func:`federated_train` writes the plan, runs the study in the simulation or the deployment runtime
(trainer.federated.runtime), then writes a run like any other (trainer.federated.run): `trainer export`,
`site-check` and `site-adapt` take it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.config import PERSONAL_EPOCHS, TrainConfig
from trainer.federated.site import settings_fingerprint
from trainer.federated.study import FederationError

__all__ = ["Federation", "FederationError", "federated_train"]


@dataclass(frozen=True)
class Federation:
    """Who takes part and how they train together."""

    sites: list[tuple[str, Path]]  # (name, manifest), in the order given
    rounds: int
    strategy: str = "fedavgm"  # one of trainer.config.FEDERATION_STRATEGIES
    proximal_mu: float = 0.1
    server_learning_rate: float = 1.0
    server_momentum: float = 0.9
    personal_epochs: int = PERSONAL_EPOCHS  # each site fine-tunes the last federated head on its own subjects
    mode: str = "simulation"  # or "deployment"
    folds: int = 5
    centralised: bool = True  # also train on the union, for comparison (only where the data may be pooled)
    site_settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # a site's own settings, when it differs
    profiles: str | None = None
    timeout_s: float = 600.0

    def profiles_of(self, name: str) -> str | None:
        """A site's own consoles' profiles file (``--site-setting NAME:profiles=FILE``), else the run's."""
        return self.site_settings.get(name, {}).get("profiles", self.profiles)


def check_sites(federation: Federation) -> None:
    """Refuse, naming the site, what no federation can train with: a name used twice, a missing manifest."""
    names = [name for name, _ in federation.sites]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise FederationError(f"two sites are both named {', '.join(twice)}; each site needs its own name")
    if len(names) < 2:
        raise FederationError("a federation needs at least two sites (--site NAME=MANIFEST, repeated)")
    for name, manifest in federation.sites:
        if not Path(manifest).is_file():
            raise FederationError(f"site {name}: manifest {manifest} not found")


def write_plan(federation: Federation, config: TrainConfig, out: Path) -> Path:
    """The study's plan: every site's node config (its own settings file among them) and the coordinator's part."""
    work = out / "federation"
    (work / "coordinator").mkdir(parents=True, exist_ok=True)
    sites = []
    for name, manifest in federation.sites:
        own = {k: v for k, v in federation.site_settings.get(name, {}).items() if k != "profiles"}
        profiles = federation.profiles_of(name)
        settings = config.model_dump(mode="json") | own
        path = work / f"settings-{name}.json"
        path.write_text(json.dumps(settings))
        sites.append({"site": name, "manifest": str(Path(manifest).resolve()), "settings": str(path),
                      "profiles": profiles, "cache": None, "folds": federation.folds})  # fmt: skip
    plan = {
        "sites": sites,
        "settings": config.model_dump(mode="json"),
        "fingerprint": settings_fingerprint(config),
        "rounds": federation.rounds,
        "local_epochs": config.n_epochs,
        "strategy": federation.strategy,
        "proximal_mu": federation.proximal_mu,
        "server_learning_rate": federation.server_learning_rate,
        "server_momentum": federation.server_momentum,
        "personal_epochs": federation.personal_epochs,
        "folds": federation.folds,
        "timeout_s": federation.timeout_s,
        "results": str(work / "coordinator" / "results.json"),
    }
    path = work / "plan.json"
    path.write_text(json.dumps(plan, indent=1))
    return path


def federated_train(federation: Federation, config: TrainConfig, out: Path) -> dict[str, Any]:
    """Run the study and write the run; returns federated.json's content.

    Args:
        federation: the sites and how they train together.
        config: the run's training settings (``epochs``: local epochs per round).
        out: the run directory.
    """
    from trainer.federated.run import write_run
    from trainer.federated.runtime import run_deployment, run_simulation

    check_sites(federation)
    if config.features != "float":
        raise FederationError("federated runs take float features (--features int8 is calibrated per run)")
    out.mkdir(parents=True, exist_ok=True)
    plan_path = write_plan(federation, config, out)
    plan = json.loads(plan_path.read_text())
    started = time.perf_counter()
    if federation.mode == "deployment":
        seen = run_deployment(plan_path, plan["sites"], out / "federation", federation.timeout_s * 4)
    else:
        seen = {}
        run_simulation(plan_path, len(plan["sites"]))
    results_path = Path(plan["results"])
    if not results_path.is_file():
        raise FederationError(_why_no_results(out / "federation", seen))
    results = json.loads(results_path.read_text())
    if "error" in results:
        raise FederationError(results["error"])
    return write_run(out, federation, config, results, time.perf_counter() - started)


def _why_no_results(work: Path, seen: dict[str, Any]) -> str:
    """What the coordinator said before it stopped (its log), for a message naming the site that failed."""
    said = ""
    log = work / "flwr-run.log"
    if log.is_file():
        lines = [line for line in log.read_text().splitlines() if "FederationError" in line or "site" in line]
        said = lines[-1] if lines else ""
    return f"the federated study ended without results ({seen.get('run_exit', 'simulation')}): {said}".strip()
