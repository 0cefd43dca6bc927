"""The sink's health server, over real HTTP on loopback."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from sinks.health import HealthServer


def get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_healthz_follows_ok_and_stats_are_served_apart() -> None:
    state: dict[str, Any] = {"ok": True, "retrying": False, "stats": {"points": 7}}
    server = HealthServer("127.0.0.1", 0, lambda: dict(state)).start()
    try:
        assert get(server.port, "/healthz") == (200, {"ok": True, "retrying": False})
        assert get(server.port, "/stats") == (200, {"points": 7})
        state["ok"] = False  # the loop stopped turning: a liveness probe must fail
        assert get(server.port, "/healthz")[0] == 503
        assert get(server.port, "/nope")[0] == 404
    finally:
        server.stop()
