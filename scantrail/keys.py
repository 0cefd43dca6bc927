"""The keyed-hash secret for dead letters of personal topics (HMAC-SHA256).

From ``SCANTRAIL_DEADLETTER_KEY``, else the file named by
``SCANTRAIL_DEADLETTER_KEY_FILE`` (a mounted secret), else
``<state dir>/secrets/deadletter.key``, created (600) on first use. Every
role that writes dead letters on one cluster must share it, or the same
refused value hashes differently at different roles.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from scantrail.private import read_or_create_secret
from scantrail.settings import state_dir


def dead_letter_key_path() -> Path:
    named = os.environ.get("SCANTRAIL_DEADLETTER_KEY_FILE")
    return Path(named) if named else state_dir() / "secrets" / "deadletter.key"


@lru_cache(maxsize=1)
def dead_letter_key() -> bytes:
    if value := os.environ.get("SCANTRAIL_DEADLETTER_KEY"):
        return value.encode()
    path = dead_letter_key_path()
    if os.environ.get("SCANTRAIL_DEADLETTER_KEY_FILE"):
        text = path.read_text().strip()
        if not text:
            raise ValueError(f"SCANTRAIL_DEADLETTER_KEY_FILE {path} is empty")
        return text.encode()
    return read_or_create_secret(path).encode()
