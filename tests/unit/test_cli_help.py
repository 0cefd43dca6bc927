"""Every role's --help works, names its purpose, and loads no more than it needs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from scantrail.cli import COMMANDS, cli


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) > 3


def test_top_level_help_lists_every_role() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("kiosk", "worker", "sink", "simulate", "replay", "trace", "screen", "pass"):
        assert name in result.output


def test_kiosk_help_does_not_import_faust_or_influx() -> None:
    code = (
        "import sys; from scantrail.cli import main\n"
        "try:\n    main(['kiosk', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('faust', 'influxdb_client', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
