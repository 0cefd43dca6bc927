from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from scantrail.cli import cli


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SCANTRAIL_STATE", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


def test_issue_decode_verify_revoke(run, tmp_path: Path):
    run("pass", "keygen")
    out = run("pass", "issue", "--site", "site-1", "--household", "hh-1", "--person", "p-1")
    record = json.loads(out.splitlines()[0])
    assert (tmp_path / "passes" / "passes.pdf").read_bytes().startswith(b"%PDF")
    decoded = json.loads(run("decode", record["png"]))
    assert len(decoded["texts"]) == 1
    verdict = json.loads(run("pass", "verify", decoded["texts"][0]))
    assert verdict["status"] == "valid" and verdict["person_id"] == "p-1"
    run("pass", "revoke", record["pass_id"])
    assert json.loads(run("pass", "verify", decoded["texts"][0]))["status"] == "revoked"
    assert json.loads(run("pass", "verify", "not a pass"))["status"] == "unknown"


def test_phone_pass_token(run, tmp_path: Path):
    run("pass", "keygen")
    out = run("pass", "issue", "--site", "s", "--household", "h", "--person", "p-2", "--phone")
    wallet = json.loads(out.splitlines()[0])["wallet"]
    assert Path(wallet).stat().st_mode & 0o777 == 0o600
    token = run("pass", "token", wallet).strip()
    assert token.startswith("ST1T.")
    assert json.loads(run("pass", "verify", token))["status"] == "valid"


@pytest.mark.parametrize(
    "command", [["pass", "--help"], ["decode", "--help"], ["pass", "issue", "--help"]]
)
def test_help(run, command: list[str]):
    assert "Usage" in run(*command)
