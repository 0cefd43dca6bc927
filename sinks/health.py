"""A sink's health over HTTP: is its loop alive, and is it storing?

The InfluxDB sink is a plain consumer loop, not a web app, so a hung sink (a
deadlock, a call that never returns) would otherwise look exactly like a busy
one to its supervisor. ``GET /healthz`` answers 200 while the loop has turned
within ``stale_after_s`` and 503 after that, which is what a liveness probe
needs; an InfluxDB outage keeps it at 200 (restarting cannot fix InfluxDB, and
the sink is waiting correctly), with ``"retrying": true`` for the operator.
``GET /stats`` has the sink's counters.

stdlib ``http.server`` in a daemon thread: two read-only endpoints do not
justify a web framework in the sink process.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

Snapshot = Callable[[], dict[str, Any]]


class HealthServer:
    """Serves ``snapshot()`` on /healthz (status from its ``ok``) and its stats on /stats."""

    def __init__(self, host: str, port: int, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sink-health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health on http://%s:%d/healthz", *self._server.server_address[:2])
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        snapshot = self.snapshot

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                state = snapshot()
                if self.path == "/healthz":
                    body = {k: v for k, v in state.items() if k != "stats"}
                    self._send(200 if state.get("ok") else 503, body)
                elif self.path == "/stats":
                    self._send(200, state.get("stats", {}))
                else:
                    self._send(404, {"error": "GET /healthz or /stats"})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body, sort_keys=True).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return  # probes every few seconds would flood the sink's log

        return Handler
