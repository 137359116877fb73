"""Where a federated study runs: Flower's simulation runtime (every site in one machine, one process each under
Ray), or its deployment runtime: a SuperLink and one SuperNode per site as separate processes, talking over TLS on
loopback, the way hospitals run them; each SuperNode is told only its own site's files.

Deployment needs a certificate authority and a server certificate (made here for loopback), a Flower home with the
SuperLink connection, and the app folder `flwr run` packages (``trainer/federated/app``: its components are
trainer.federated.apps).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.tools.ports import free_port
from trainer.federated.study import FederationError

APP_FOLDER = Path(__file__).with_name("app")
SEE_NOTHING = "tmpfs"  # what a process sees in place of another site's folder (a private mount, under root)


def run_simulation(plan_path: Path, sites: int) -> None:
    """Every site in Flower's simulation runtime on this machine (one Ray actor per CPU). The simulation runtime
    takes no run config, so the plan's path travels in the environment the actors inherit."""
    from flwr.simulation import run_simulation as flower_simulation

    from trainer.federated.apps import PLAN_VARIABLE, client_app, server_app

    os.environ[PLAN_VARIABLE] = str(plan_path)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    backend = {"client_resources": {"num_cpus": 1}, "init_args": {"log_to_driver": False}}
    flower_simulation(server_app, client_app, num_supernodes=sites, backend_config=backend)


@dataclass
class Certificates:
    ca: Path
    cert: Path
    key: Path


def make_certificates(folder: Path) -> Certificates:
    """A throwaway certificate authority and a server certificate for 127.0.0.1 (deployment on loopback)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now, pem = dt.datetime.now(dt.UTC), serialization.Encoding.PEM
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fatty-liver-edge federation CA")])
    builder = x509.CertificateBuilder().not_valid_before(now).not_valid_after(now + dt.timedelta(days=2))
    authority = x509.BasicConstraints(ca=True, path_length=None)
    ca = (builder.subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key()).serial_number(1)
          .add_extension(authority, critical=True).sign(ca_key, hashes.SHA256()))  # fmt: skip
    names = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    server = (builder.subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
              .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(2)
              .add_extension(names, critical=False).sign(ca_key, hashes.SHA256()))  # fmt: skip
    paths = Certificates(folder / "ca.crt", folder / "server.pem", folder / "server.key")
    paths.ca.write_bytes(ca.public_bytes(pem))
    paths.cert.write_bytes(server.public_bytes(pem))
    key = server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    paths.key.write_bytes(key)
    paths.key.chmod(0o600)
    return paths


def _tool(name: str) -> str:
    """A Flower command of this environment (beside this Python), where the SuperLink also looks for its helpers."""
    found = Path(sys.executable).with_name(name)
    if not found.exists() and shutil.which(name) is None:
        raise FederationError(f"{name} is not installed (the [train] extra's flwr provides it)")
    return str(found if found.exists() else shutil.which(name))


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, FLWR_HOME=str(home), HOME=str(home), TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def _seeing_only(hidden: list[Path], command: list[str]) -> list[str]:
    """The command in a private mount namespace where each of ``hidden`` (other sites' folders) is an empty tmpfs,
    so the process cannot open another site's files; as is when this rehearsal does not run as root."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or not hidden:
        return command
    mounts = " && ".join(f"mount -t tmpfs {SEE_NOTHING} {shlex.quote(str(p))}" for p in hidden)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{mounts} && exec "$@"', "sh", *command]


def site_folder(site: dict[str, Any]) -> Path:
    """The folder a site's data lives in: its manifest's."""
    return Path(site["manifest"]).resolve().parent


def run_deployment(plan_path: Path, sites: list[dict[str, Any]], work: Path, timeout: float) -> dict[str, Any]:
    """A SuperLink and one SuperNode per site, each its own process, over TLS on loopback; `flwr run` submits
    the study. Returns what it saw (the processes' exit codes and log files).

    Args:
        plan_path: the study's plan (the coordinator reads it).
        sites: one node config per site (its name, manifest, settings, profiles, cache, folds).
        work: a folder for certificates, Flower homes and logs.
        timeout: seconds the whole study may take.
    """
    certs, port = make_certificates(work / "tls"), free_port()
    home = work / "flwr-home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local"\n[superlink.local]\naddress = "127.0.0.1:{port}"\n'
        f'root-certificates = "{certs.ca}"\n'
    )
    folders = [site_folder(site) for site in sites]
    processes = [_superlink(certs, port, work, folders)]
    try:
        _wait_for_port(port, processes[0], timeout=60)
        for k, site in enumerate(sites):
            others = [f for f in folders if f != folders[k]]
            processes.append(_supernode(site, k, (certs, port), work, others))
        done = subprocess.run([_tool("flwr"), "run", str(APP_FOLDER), "local", "--stream", "--run-config",
                               f'plan="{plan_path}"'], env=_env(home), capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        (work / "flwr-run.log").write_text(done.stdout + done.stderr)
        return {"run_exit": done.returncode, "logs": str(work)}
    finally:
        for proc in reversed(processes):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _superlink(certs: Certificates, port: int, work: Path, sites: list[Path]) -> subprocess.Popen:
    """The SuperLink, running the coordinator (the ServerApp) in its own subprocess; it sees no site's folder."""
    home = work / "coordinator"
    args = [_tool("flower-superlink"), "--ssl-ca-certfile", str(certs.ca), "--ssl-certfile", str(certs.cert),
            "--ssl-keyfile", str(certs.key), "--host", "127.0.0.1", "--port", str(port),
            "--disable-runtime-dependency-installation", "--database", str(home / "superlink.db")]  # fmt: skip
    log = open(home / "superlink.log", "w")  # noqa: SIM115 - the process writes it
    return subprocess.Popen(_seeing_only(sites, args), stdout=log, stderr=subprocess.STDOUT, env=_env(home))


def _supernode(site: dict[str, Any], k: int, link: tuple[Certificates, int], work: Path, others: list[Path]
               ) -> subprocess.Popen:  # fmt: skip
    """One site's SuperNode: its own process, Flower home and log; its node config names only its own files, and
    the other sites' folders are hidden from it."""
    certs, port = link
    home = work / f"site-{k}"
    home.mkdir(parents=True, exist_ok=True)
    site = site | {"cache": str(home / "features")}  # a site's features stay with it
    node_config = " ".join(f"{key}={json.dumps(str(value))}" for key, value in site.items() if value is not None)
    args = [_tool("flower-supernode"), "--root-certificates", str(certs.ca), "--superlink", f"127.0.0.1:{port}",
            "--node-config", node_config, "--port", str(free_port())]  # fmt: skip
    log = open(home / "supernode.log", "w")  # noqa: SIM115 - the process writes it
    return subprocess.Popen(_seeing_only(others, args), stdout=log, stderr=subprocess.STDOUT, env=_env(home))


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FederationError(f"the SuperLink exited ({proc.returncode}); see its log")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise FederationError(f"the SuperLink did not listen on port {port} within {timeout:.0f} s")
