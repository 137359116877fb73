"""The bedside image, built as `make image` builds it (no registry) and exercised as the field runs it, by chroot
into its mounted root (podman run needs cgroups these machines lack): read-only root, the image user, the bundle and
configuration mounted read-only, the state on a volume, the host's network. A phantom exam played into the image's
own `serve` gives the same results, to the last digit, as the same exam through the project's `.venv-edge`."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zmq
from helpers import Display, Source, breathed, phantom_screens, wait_for

from edge_runtime.sinks.audit import read_final_exams

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "localhost/fatty-liver-edge:test"
IMAGE_USER = 10001
BUDGET_BYTES = 450_000_000
TITLE = "org.opencontainers.image.title=fatty-liver-edge"
TOOLS = ("podman", "mmdebstrap", "unshare", "chroot")


def can_build() -> bool:
    """podman image mount and chroot need root (CI runs as root), and the tools `make test` installs."""
    return os.geteuid() == 0 and all(shutil.which(t) for t in TOOLS)


pytestmark = [pytest.mark.slow, pytest.mark.skipif(not can_build(), reason=f"needs root and {', '.join(TOOLS)}")]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`deploy/image/build.sh` (what `make image` runs), its report, and the image's root mounted read-only."""
    from conftest import IMAGE_BUILD

    if not IMAGE_BUILD:  # not started with the session (a single test run by hand): build now
        out = tmp_path_factory.mktemp("image")
        done = subprocess.run(["sh", "deploy/image/build.sh"], cwd=ROOT, capture_output=True, text=True,
                              timeout=1200, env=dict(os.environ, IMAGE=IMAGE, OUT=str(out)))  # fmt: skip
        said, code = done.stdout[-3000:] + done.stderr[-3000:], done.returncode
    else:
        out, code = IMAGE_BUILD["out"], IMAGE_BUILD["process"].wait(1200)
        said = IMAGE_BUILD["log"].read_text()[-6000:]
    assert code == 0, said
    report = json.loads((out / "image.json").read_text())
    inspected = json.loads(subprocess.run(["podman", "image", "inspect", IMAGE], capture_output=True, text=True,
                                          check=True).stdout)[0]  # fmt: skip
    root = Path(subprocess.run(["podman", "image", "mount", IMAGE], capture_output=True, text=True,
                               check=True).stdout.strip())  # fmt: skip
    yield {"report": report, "inspect": inspected, "root": root, "sbom": out / "sbom.cdx.json"}
    subprocess.run(["podman", "image", "unmount", IMAGE], capture_output=True)


def test_a_build_leaves_no_unnamed_images_of_its_own(image: dict) -> None:
    """Every build replaces the last one: the images it superseded, and its build stage, are removed, so repeated
    builds (each `make test` runs one) do not fill the disk. Tagged bases and other projects' images stay."""
    unnamed = ["podman", "images", "--all", "--filter", "dangling=true", "--filter", f"label={TITLE}", "-q"]
    listed = subprocess.run(unnamed, capture_output=True, text=True, check=True)
    assert listed.stdout.split() == [], listed.stdout


def _in_image(image: dict, volumes: dict[Path, tuple[str, str]], argv: list[str]) -> list[str]:
    """A command run as the field runs the image: a private mount namespace with the image's root read-only,
    /dev from the host, a tmpfs /tmp, each volume at its place (``host -> (path, 'ro'|'rw')``), then chroot as the
    image user with the image's environment only."""
    root = image["root"]
    view = "$view"  # a fresh folder of the namespace's own
    steps = ["view=$(mktemp -d)", f"mount --bind {root} {view}", f"mount -o remount,bind,ro {view}",
             f"mount -t proc proc {view}/proc", f"mount --rbind /dev {view}/dev",
             f"mount -t tmpfs tmpfs {view}/tmp"]  # fmt: skip
    for host, (path, mode) in volumes.items():
        steps.append(f"mount --bind {shlex.quote(str(host))} {view}{path}")
        if mode == "ro":
            steps.append(f"mount -o remount,bind,ro {view}{path}")
    env = image["inspect"]["Config"]["Env"]
    steps.append(
        f'exec env -i {shlex.join(env)} {shutil.which("chroot")} --userspec={IMAGE_USER}:{IMAGE_USER} {view} "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", " && ".join(steps), "sh", *argv]


def _normal(name: str) -> str:
    """A Python distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_image_is_small_non_root_labelled_and_lists_every_python_package(image: dict) -> None:
    config, root = image["inspect"]["Config"], image["root"]
    assert image["report"]["size_bytes"] <= BUDGET_BYTES, image["report"]
    assert config["User"] == f"{IMAGE_USER}:{IMAGE_USER}" and config["StopSignal"] == "SIGTERM"
    assert "/healthz" in " ".join(config["Env"]) and "FLE_HEALTHZ" in " ".join(image["inspect"]["Healthcheck"]["Test"])
    labels = config["Labels"]
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.version"] and len(labels["org.opencontainers.image.revision"]) == 40
    site = next((root / "opt/venv/lib").glob("python3.11/site-packages"))
    assert (
        not (site / "tensorflow").exists() and not list(root.glob("usr/bin/*gcc*")) and not (root / "bin/sh").exists()
    )
    installed = {_normal(p.name.split("-")[0]) for p in site.glob("*.dist-info")}
    sbom = json.loads(image["sbom"].read_text())
    listed = {_normal(c["name"]) for c in [sbom["metadata"]["component"], *sbom["components"]]}
    assert installed and installed <= listed, installed - listed


def test_help_runs_as_the_image_user_on_a_read_only_root(image: dict, tmp_path: Path) -> None:
    done = subprocess.run(_in_image(image, {}, ["/opt/venv/bin/edge-runtime", "--help"]), capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and "serve" in done.stdout, done.stderr
    probe = subprocess.run(_in_image(image, {}, ["/opt/venv/bin/python", "-c", "import os; print(os.geteuid())"]),
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert probe.stdout.strip() == str(IMAGE_USER), probe.stderr


def _field(tmp_path: Path, bundle_dir: Path, release_key: Path, ports: tuple[int, int]) -> dict[Path, tuple]:
    """The field's mounts: the bundle and the configuration (with the trusted key) read-only, the state volume."""
    config = tmp_path / "config"
    (config / "trusted-keys").mkdir(parents=True)
    shutil.copy(release_key.with_suffix(".public"), config / "trusted-keys")
    (config / "edge.toml").write_text(
        f'[runtime.model]\nbundle = "/opt/fatty-liver-edge/bundles/demo"\ntrusted_keys = "/etc/fatty-liver-edge/'
        f'trusted-keys"\nthreads = 2\n[runtime.transport]\nframes = "tcp://127.0.0.1:{ports[0]}"\n'
        f'results = "tcp://127.0.0.1:{ports[1]}"\n[runtime.gate]\nview_authority = "header"\n'
        f'[runtime.audit]\nlog = "/var/lib/fatty-liver-edge/audit/results.jsonl"\n'
        f"[runtime.metrics]\nprometheus_port = 0\nheartbeat_period_s = 0.2\n"
    )
    state, bundles = tmp_path / "state", tmp_path / "bundles"
    state.mkdir()
    os.chown(state, IMAGE_USER, IMAGE_USER)
    shutil.copytree(bundle_dir, bundles / "demo")  # the box's bundles folder, holding the demo's bundle
    return {bundles: ("/opt/fatty-liver-edge/bundles", "ro"), config: ("/etc/fatty-liver-edge", "ro"),
            state: ("/var/lib/fatty-liver-edge", "rw")}  # fmt: skip


def _play_exam(argv: list[str], ports: tuple[int, int], work: Path) -> tuple[list[tuple], list[dict]]:
    """Start `serve`, play one phantom exam into it frame by frame (each pair's result awaited), stop it with
    SIGTERM; its results (p_fatty, PDFF) in order, and the exam_final records of its audit log."""
    with open(work / "serve.log", "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    ctx = zmq.Context()
    source = Source(ctx, f"tcp://127.0.0.1:{ports[0]}")
    display = Display(ctx, f"tcp://127.0.0.1:{ports[1]}", topics=(b"result", b"heartbeat"))
    results: list = []
    try:
        assert wait_for(lambda: proc.poll() is not None or display.sock.poll(100) != 0, 120) and proc.poll() is None
        screens = phantom_screens(1, seed=31)
        for k in range(8):
            view = ("liver", "kidney_liver")[k % 2]
            scanner, screen = screens[(0, view)]
            source.send("exam-image", view, scanner, breathed(screen, k))
            if k:
                assert wait_for(lambda k=k: (display.poll(50), len(display.received) >= k)[1], 60), work / "serve.log"
        results = [(r.p_fatty, r.pdff) for r in display.received]
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
        source.close()
        display.close()
        ctx.destroy(linger=0)
    return results, read_final_exams(work / "state" / "audit" / "results.jsonl") if (work / "state").exists() else []


def test_a_phantom_exam_through_the_images_serve_equals_the_edge_venvs(
    image: dict, bundle_dir: Path, release_key: Path, tmp_path: Path
) -> None:
    from edge_runtime.tools.ports import free_port

    ports = (free_port(), free_port())
    mounts = _field(tmp_path / "image", bundle_dir, release_key, ports)
    argv = _in_image(
        image, mounts, ["/opt/venv/bin/edge-runtime", "serve", "--config", "/etc/fatty-liver-edge/edge.toml"]
    )
    in_image, finals = _play_exam(argv, ports, tmp_path / "image")
    said = (tmp_path / "image" / "serve.log").read_text()
    assert len(in_image) == 7 and len(finals) == 1 and finals[0]["why"] == "shutdown", said
    assert "stopped cleanly" in said and "UNSIGNED" not in said

    local = tmp_path / "venv"
    config = next(h for h, (p, _) in mounts.items() if p == "/etc/fatty-liver-edge")
    toml = (config / "edge.toml").read_text().replace("/opt/fatty-liver-edge/bundles/demo", str(bundle_dir))
    (local / "state").mkdir(parents=True)
    (local / "edge.toml").write_text(toml.replace("/etc/fatty-liver-edge/trusted-keys", str(config / "trusted-keys")))
    python = ROOT / ".venv-edge" / "bin" / "python"  # the [edge]-only environment, running this checkout's code
    audit = local / "state" / "audit" / "results.jsonl"
    argv = ["env", f"PYTHONPATH={ROOT}", str(python if python.exists() else sys.executable), "-m", "edge_runtime.cli",
            "serve", "--config", str(local / "edge.toml"), "--audit-log", str(audit)]  # fmt: skip
    through_venv, venv_finals = _play_exam(argv, ports, local)
    np.testing.assert_array_equal(np.array(in_image, float), np.array(through_venv, float))
    keys = ("class_set", "p_fatty", "pdff", "pdff_interval", "n_pairs")  # the call waits on wall-clock holds
    assert {k: finals[0]["exam"][k] for k in keys} == {k: venv_finals[0]["exam"][k] for k in keys}


def test_serve_in_the_image_refuses_a_volume_it_cannot_write(
    image: dict, bundle_dir: Path, release_key: Path, tmp_path: Path
) -> None:
    from edge_runtime.tools.ports import free_port

    mounts = _field(tmp_path, bundle_dir, release_key, (free_port(), free_port()))
    state = next(h for h, (p, _) in mounts.items() if p == "/var/lib/fatty-liver-edge")
    os.chown(state, 0, 0)  # the volume left owned by root: a misconfiguration
    state.chmod(0o755)
    argv = _in_image(
        image, mounts, ["/opt/venv/bin/edge-runtime", "serve", "--config", "/etc/fatty-liver-edge/edge.toml"]
    )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "the audit folder /var/lib/fatty-liver-edge/audit is not writable" in done.stderr, done.stderr
