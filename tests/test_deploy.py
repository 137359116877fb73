"""Deploy files stay in step with the code: the example config validates, the unit runs the real command."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

from click.testing import CliRunner

from edge_runtime.cli import main as edge_cli
from edge_runtime.config import load_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_example_config_validates_and_documents_every_key() -> None:
    config = load_config(DEPLOY / "edge.example.toml")
    text = (DEPLOY / "edge.example.toml").read_text()
    for key in type(config).model_fields:
        assert key in text, f"{key} is not in the example config"
    assert config.security.enabled is False and "ward3-logiq" in config.profiles


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
    text = (DEPLOY / "Containerfile").read_text()
    assert '".[edge]"' in text and "tensorflow" not in text.lower().replace("no tensorflow", "")
