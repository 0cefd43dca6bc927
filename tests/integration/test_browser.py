"""The browser the page tests rely on: Debian's Chromium renders a page served on loopback."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.browser import PHONE, save_screenshot

pytestmark = pytest.mark.integration


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        lang = self.headers.get("Accept-Language", "")
        body = f"<html><body><h1 id='lang'>{lang}</h1></body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_chromium_loads_a_loopback_page_with_the_chosen_language(browser_factory) -> None:  # type: ignore[no-untyped-def]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser = browser_factory(width=PHONE[0], height=PHONE[1], lang="zh-CN")
        browser.get(f"http://127.0.0.1:{server.server_port}/")
        assert browser.find_element("id", "lang").text.startswith("zh-CN")
        assert browser.execute_script("return window.innerWidth") == PHONE[0]
        shot = save_screenshot(browser, "browser-smoke")
        assert shot.stat().st_size > 0
    finally:
        server.shutdown()
        server.server_close()
