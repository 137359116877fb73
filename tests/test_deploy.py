"""Deploy files stay in step with the code: the example config validates, the unit runs the real command."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from edge_runtime.cli import main as edge_cli
from edge_runtime.config import load_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_example_config_validates_and_documents_every_key() -> None:
    """Every table and every key of [runtime] appears in the example, which loads."""
    config = load_config(DEPLOY / "edge.example.toml")
    text = (DEPLOY / "edge.example.toml").read_text()
    for table, info in type(config).model_fields.items():
        assert f"[runtime.{table}]" in text, f"[runtime.{table}] is not in the example config"
        for key in info.annotation.model_fields:
            assert re.search(rf"^#?\s*{key}\s*=", text, re.M) or key == "profiles", f"{table}.{key} is missing"
    assert config.security.enabled is False and "ward3-logiq" in config.scanners.profiles


def test_serve_has_a_flag_for_every_key_of_every_stage_table() -> None:
    """The flags are generated from the config models, so a new key gets a flag and a help line by itself."""
    from edge_runtime.cli import SERVE_TABLES
    from edge_runtime.config import RuntimeConfig
    from edge_runtime.tools.cli_support import field_flag

    help_text = CliRunner().invoke(edge_cli, ["serve", "--help"], terminal_width=200).output
    for table in SERVE_TABLES:
        for key, info in RuntimeConfig.model_fields[table].annotation.model_fields.items():
            if key != "profiles":  # inline scanner profiles are tables, only in the file
                assert field_flag(table, key, info) in help_text, f"{table}.{key}"


def test_systemd_unit_runs_edge_runtime_serve_unprivileged() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(DEPLOY / "fatty-liver-edge.service")
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[0].endswith("/edge-runtime") and argv[1] == "serve" and "--config" in argv
    result = CliRunner().invoke(edge_cli, ["serve", "--help"])
    assert result.exit_code == 0 and "--config" in result.output  # the flags the unit uses exist
    assert unit["Service"]["User"] not in ("", "root")
    assert unit["Service"]["Restart"] == "on-failure"
    assert unit["Service"]["NoNewPrivileges"] == "yes"


def test_container_installs_only_the_edge_extra() -> None:
    """The image's requirements are the core and [edge] lists of pyproject.toml, nothing of the workstation's (the
    built image itself is checked in test_image.py)."""
    import subprocess
    import sys
    import tomllib

    pyproject = DEPLOY.parent / "pyproject.toml"
    said = subprocess.run([sys.executable, str(DEPLOY / "image" / "requirements.py"), str(pyproject)],
                          capture_output=True, text=True, check=True).stdout.split("\n")  # fmt: skip
    project = tomllib.loads(pyproject.read_text())["project"]
    assert [r for r in said if r] == [*project["dependencies"], *project["optional-dependencies"]["edge"]]
    assert not any(name in r.lower() for r in said for name in ("tensorflow", "tf-keras", "flwr", "scikit"))


def test_the_unit_is_supervised_verifies_and_keeps_its_exposure_low(tmp_path: Path) -> None:
    """Type=notify with a watchdog and reload by SIGHUP; `systemd-analyze verify` passes (with ExecStart pointed at
    this checkout's edge-runtime) and `systemd-analyze security` rates the exposure at most 2.0; the audit log is
    created unreadable by others."""
    import shutil
    import subprocess
    import sys

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(DEPLOY / "fatty-liver-edge.service")
    service = unit["Service"]
    assert service["Type"] == "notify" and int(service["WatchdogSec"]) > 0 and "-HUP" in service["ExecReload"]
    assert service["UMask"] == "0077"
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: `make test` installs Debian's systemd"
    here = Path(sys.executable).parent / "edge-runtime"
    text = (
        (DEPLOY / "fatty-liver-edge.service")
        .read_text()
        .replace("/opt/fatty-liver-edge/venv/bin/edge-runtime", str(here))
    )
    (tmp_path / "fatty-liver-edge.service").write_text(text)
    verify = subprocess.run(
        [analyze, "verify", str(tmp_path / "fatty-liver-edge.service")], capture_output=True, text=True
    )
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=true", str(DEPLOY / "fatty-liver-edge.service")],
        capture_output=True,
        text=True,
    )
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert score and float(score.group(1)) <= 2.0, security.stdout[-400:]
