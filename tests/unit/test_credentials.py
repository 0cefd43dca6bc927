"""Bearer credentials: only hashes on disk, 401 vs 403, revocation without a restart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scantrail.credentials import (
    TRACE,
    CredentialError,
    CredentialStore,
    Forbidden,
    Unauthenticated,
    add_credential,
    bearer_token,
    credential_line,
    hash_token,
    revoke,
)


def test_a_token_authorizes_its_own_scopes_only(tmp_path: Path) -> None:
    path = tmp_path / "creds"
    epi = add_credential(path, "epi-wang", [TRACE])
    clerk = add_credential(path, "clerk-li", ["console"])
    store = CredentialStore.load(path)
    assert store.authorize(epi, TRACE).name == "epi-wang"
    with pytest.raises(Forbidden) as refused:
        store.authorize(clerk, TRACE)
    assert refused.value.principal.name == "clerk-li"
    for bad in (None, "", "st_guessed", epi + "x"):
        with pytest.raises(Unauthenticated):
            store.authorize(bad, TRACE)


def test_the_file_holds_hashes_not_tokens_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "creds"
    token = add_credential(path, "epi-wang", [TRACE])
    text = path.read_text()
    assert token not in text and hash_token(token) in text
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_revoking_takes_effect_on_the_next_request(tmp_path: Path) -> None:
    path = tmp_path / "creds"
    token = add_credential(path, "epi-wang", [TRACE])
    store = CredentialStore.load(path)
    assert store.authorize(token, TRACE).name == "epi-wang"
    assert revoke(path, "epi-wang") == 1
    os.utime(path, ns=(1, 1))  # a same-size rewrite within one mtime tick still counts
    with pytest.raises(Unauthenticated):
        store.authorize(token, TRACE)


def test_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    line = credential_line("svc", [TRACE, "console"], hash_token("tok-1"))
    monkeypatch.setenv("SCANTRAIL_CREDENTIALS", f"# issued 2026-12-03; {line}")
    store = CredentialStore.default()
    assert store.authorize("tok-1", "console").scopes == {"console", TRACE}


def test_a_missing_file_refuses_everyone(tmp_path: Path) -> None:
    with pytest.raises(Unauthenticated):
        CredentialStore.load(tmp_path / "none").authorize("anything", TRACE)


@pytest.mark.parametrize(
    "line", ["only two", "name trace sha256:short", "bad/name trace sha256:" + "0" * 64]
)
def test_malformed_lines_are_refused_with_the_line_number(line: str) -> None:
    with pytest.raises(CredentialError, match="line 1|principal|hash|scopes"):
        CredentialStore.from_lines([line])


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer ", None)],
)
def test_bearer_header(header: str, token: str | None) -> None:
    assert bearer_token(header) == token
    assert bearer_token(None) is None


def test_what_a_scantrail_process_creates_is_its_users_only(tmp_path: Path) -> None:
    """The CLI sets umask 077: a command that writes files (here the schema export)
    leaves them 600 in a 700 directory, whatever the caller's umask."""
    import subprocess
    import sys

    out = tmp_path / "schema"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; os.umask(0o022); from scantrail.cli import main; main()",
            "schema",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    files = list(out.rglob("*.json"))
    assert files and all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    assert out.stat().st_mode & 0o777 == 0o700
