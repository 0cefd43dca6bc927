"""Files and directories that hold personal data or secrets: owner only (700/600).

Every ``scantrail`` process runs with umask 077 (set in :func:`scantrail.cli.main`),
so what it creates (RocksDB tables, SQLite spools and registries, logs) is
readable by its user only. State directories made by an older version are
tightened when a role starts, with :func:`private_dir`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 700; an existing one is tightened too."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def tighten_tree(path: Path) -> int:
    """Make every directory under ``path`` 700 and every file 600; returns how many changed."""
    changed = 0
    if not path.exists():
        return 0
    for root, _dirs, files in os.walk(path):
        for name, mode in [(root, 0o700)] + [(os.path.join(root, f), 0o600) for f in files]:
            try:
                if os.stat(name, follow_symlinks=False).st_mode & 0o777 != mode:
                    os.chmod(name, mode)
                    changed += 1
            except OSError:
                continue  # a file that went away (a RocksDB compaction) meanwhile
    return changed


def read_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """The secret in ``path``; on first use a random one is written there (600, dir 700)."""
    try:
        text = path.read_text().strip()
        if text:
            return text
    except FileNotFoundError:
        pass
    private_dir(path.parent)
    value = secrets.token_urlsafe(nbytes)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (value + "\n").encode())
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic, and fails if another process made it first
    except FileExistsError:
        value = path.read_text().strip()  # theirs wins: every process uses one secret
    finally:
        os.unlink(tmp)
    return value
