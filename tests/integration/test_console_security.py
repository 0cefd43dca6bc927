"""The console's log-in, sessions, CSRF and throttling, and assign / resolve, over real HTTP.

The console runs as ``scantrail console`` on the real broker; alerts are
published straight to the test's alerts topic. Requests go through
``urllib`` with a cookie jar (what a browser would send), and the assign /
resolve flow through headless Chromium.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaProducer
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from scantrail import contract
from scantrail.console.accounts import make_account, save_account
from scantrail.contract import Alert, PageRecord
from tests.browser import save_screenshot, wait
from tests.support import consume_all, free_port, publish, service_env, start_scantrail

pytestmark = pytest.mark.integration
PASSWORD = "a test password 1"


@pytest.fixture
def console(kafka_settings, influx_settings, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    accounts = tmp_path / "accounts.json"
    for name, role, sites in (("li", "officer", ["site-a"]), ("wang", "supervisor", [])):
        save_account(accounts, make_account(name, role, sites, PASSWORD))
    now = datetime.now(UTC)
    publish(
        kafka_settings,
        [
            Alert(
                alert_id=f"fever_confirmed:{i}",
                kind="fever_confirmed",
                severity="critical",
                site_id=site,
                person_id=f"p-{i}",
                event_time=now - timedelta(minutes=i),
                raised_at=now,
                evidence=[f"t-{i}"],
            )  # fmt: skip
            for i, site in enumerate(("site-a", "site-b"))
        ],
    )
    producer = KafkaProducer(bootstrap_servers=kafka_settings.servers)
    producer.send(kafka_settings.topic(contract.ALERTS), b'{"schema": "alert/1", "oops": 1}')
    producer.send(kafka_settings.topic(contract.PAGES), b"not json")
    producer.flush()
    producer.close()
    url, proc = start_console(kafka_settings, influx_settings, tmp_path, alerts=2, skipped=2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def start_console(  # type: ignore[no-untyped-def]
    kafka_settings, influx_settings, tmp_path, *, alerts: int, skipped: int, **env: str
) -> tuple[str, subprocess.Popen[bytes]]:
    """``scantrail console`` on the test's accounts and session store, once it has read the topics."""
    env = service_env(
        kafka_settings,
        influx_settings,
        SCANTRAIL_CONSOLE_ACCOUNTS=str(tmp_path / "accounts.json"),
        SCANTRAIL_CONSOLE_SESSIONS=str(tmp_path / "state" / "sessions.db"),
        **env,
    )
    port = free_port()
    proc = start_scantrail("console", "--port", str(port), env=env, log=tmp_path / "console.log")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:  # noqa: S310
                health = json.loads(r.read())
                if health["caught_up"] and health["alerts"] == alerts:
                    assert health["skipped_records"] == skipped  # malformed: counted, not fatal
                    return url, proc
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            proc.wait(timeout=30)
            pytest.fail((tmp_path / "console.log").read_text()[-3000:])
        time.sleep(0.3)


class Client:
    """urllib with cookies, no redirects followed (so statuses and Set-Cookie are visible)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect()
        )

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, Any, str]:
        data = None if form is None else urllib.parse.urlencode(form).encode()
        try:
            with self.opener.open(f"{self.url}{path}", data=data, timeout=10) as r:
                return r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read().decode()

    def csrf(self, path: str) -> str:
        _status, _headers, body = self.request(path)
        match = re.search(r'name="csrf" value="([^"]+)"', body)
        assert match, body[:500]
        return match.group(1)


def test_log_in_sessions_csrf_and_throttling(console: str) -> None:
    client = Client(console)
    status, headers, _ = client.request("/queue")
    assert status == 303 and headers["Location"].startswith("/login")
    token = client.csrf("/login")
    # No CSRF token, or somebody else's: refused before the password is looked at.
    assert client.request("/login", {"user": "li", "password": PASSWORD})[0] == 403
    login = {"user": "li", "password": PASSWORD, "csrf": token}
    assert Client(console).request("/login", login)[0] == 403
    status, headers, _ = client.request("/login", login)
    assert status == 303
    cookie = next(v for k, v in headers.items() if k == "Set-Cookie" and "scantrail_session" in v)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    status, headers, body = client.request("/queue")
    assert status == 200 and "fever_confirmed:0" in body and "fever_confirmed:1" not in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert client.request("/alerts/fever_confirmed:1")[0] == 403  # site-b's alert
    # Every form needs the session's token.
    assert client.request("/alerts/fever_confirmed:0/ack", {"csrf": "forged"})[0] == 403
    assert client.request("/alerts/fever_confirmed:0/ack", {})[0] == 403
    session_token = client.csrf("/queue")
    assert client.request("/alerts/fever_confirmed:1/ack", {"csrf": session_token})[0] == 403
    # Log-out ends the session on the server: the old cookie is worth nothing.
    old = [c for c in client.jar if c.name == "scantrail_session"][0].value
    assert client.request("/logout", {"csrf": session_token})[0] == 303
    replay = Client(console)
    replay.jar.set_cookie(
        http.cookiejar.Cookie(
            0,
            "scantrail_session",
            old,
            None,
            False,
            "127.0.0.1",
            False,
            False,
            "/",
            True,
            False,
            None,
            False,
            None,
            None,
            {},
        )  # fmt: skip
    )
    assert replay.request("/queue")[0] == 303

    # Five wrong passwords lock the name for the window, even with the right one.
    attacker = Client(console)
    for _ in range(5):
        token = attacker.csrf("/login")
        bad = {"user": "wang", "password": "not the password", "csrf": token}
        assert attacker.request("/login", bad)[0] == 401
    token = attacker.csrf("/login")
    status, headers, body = attacker.request(
        "/login", {"user": "wang", "password": PASSWORD, "csrf": token}
    )
    assert status == 429 and int(headers["Retry-After"]) > 200
    assert "Too many failed log-ins" in body


def test_assign_and_resolve_are_page_records(console: str, kafka_settings, browser_factory) -> None:  # type: ignore[no-untyped-def]
    browser = browser_factory(lang="zh-CN")
    browser.get(f"{console}/login")
    browser.find_element(By.ID, "user").send_keys("li")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login-button").click()
    wait(browser, 10).until(lambda b: "/queue" in b.current_url)
    assert "告警队列" in browser.page_source
    browser.find_element(By.ID, "lang-switch").click()
    wait(browser, 10).until(lambda b: "Alert queue" in b.page_source)
    browser.get(f"{console}/alerts/fever_confirmed:0")
    Select(browser.find_element(By.ID, "assign-to")).select_by_value("wang")
    browser.find_element(By.ID, "case-assign").click()
    wait(browser, 10).until(lambda b: b.find_elements(By.ID, "case-assigned"))
    assert browser.find_element(By.ID, "case-assigned").text == "console:wang"
    browser.find_element(By.ID, "resolve-note").send_keys("sent to the fever clinic")
    browser.find_element(By.ID, "case-resolve").click()
    wait(browser, 10).until(lambda b: "resolved" in b.find_element(By.ID, "case-status").text)
    save_screenshot(browser, "console-case-resolved")
    # The fixture's own "not json" record is on the topic too (the console skips it).
    stored = consume_all(kafka_settings, contract.PAGES, expect=4, timeout_s=20)
    assert [m.value for m in stored].count(b"not json") == 1
    records = [contract.decode_as(m.value, PageRecord) for m in stored if m.value != b"not json"]
    assert [(r.action, r.officer_id, r.by, r.reason) for r in records] == [
        ("assigned", "console:wang", "console:li", "assigned by li"),
        ("acknowledged", "console:li", "console:li", "acknowledged in the console"),
        ("resolved", "console:li", "console:li", "sent to the fever clinic"),
    ]


def test_sessions_survive_a_restart_and_end_on_logout_expiry_and_password_change(  # type: ignore[no-untyped-def]
    kafka_settings, influx_settings, tmp_path
) -> None:
    save_account(tmp_path / "accounts.json", make_account("wang", "supervisor", [], PASSWORD))
    store = tmp_path / "state" / "sessions.db"

    def log_in(url: str) -> Client:
        client = Client(url)
        login = {"user": "wang", "password": PASSWORD, "csrf": client.csrf("/login")}
        assert client.request("/login", login)[0] == 303
        return client

    def restart(proc: subprocess.Popen[bytes], **env: str) -> tuple[str, subprocess.Popen[bytes]]:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        return start_console(kafka_settings, influx_settings, tmp_path, alerts=0, skipped=0, **env)

    url, proc = start_console(kafka_settings, influx_settings, tmp_path, alerts=0, skipped=0)
    try:
        kept, ended = log_in(url), log_in(url)
        csrf = kept.csrf("/queue")
        cookie = [c for c in kept.jar if c.name == "scantrail_session"][0].value
        assert store.stat().st_mode & 0o777 == 0o600
        assert cookie.encode() not in store.read_bytes() and csrf.encode() not in store.read_bytes()

        url, proc = restart(proc)
        for client in (kept, ended):
            client.url = url
        status, _headers, body = kept.request("/queue")
        assert status == 200 and "wang" in body  # the same cookie, after the restart
        assert kept.csrf("/queue") == csrf  # and the same CSRF token works for a form
        assert ended.request("/logout", {"csrf": ended.csrf("/queue")})[0] == 303
        assert ended.request("/queue")[0] == 303  # log-out is for good...
        url, proc = restart(proc, SCANTRAIL_CONSOLE_SESSION_MAX_HOURS="0.001")  # 3.6 s
        ended.url = kept.url = url
        assert ended.request("/queue")[0] == 303  # ...across a restart too
        fresh = log_in(url)
        assert fresh.request("/queue")[0] == 200
        time.sleep(4)
        assert fresh.request("/queue")[0] == 303  # past the absolute lifetime
        assert kept.request("/queue")[0] == 303

        url, proc = restart(proc)
        changed = log_in(url)
        assert changed.request("/queue")[0] == 200
        # A new password (adduser again) ends the sessions opened under the old one.
        save_account(tmp_path / "accounts.json", make_account("wang", "supervisor", [], PASSWORD))
        assert changed.request("/queue")[0] == 303
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _browser_log_in(browser, url: str, user: str) -> None:  # type: ignore[no-untyped-def]
    browser.get(f"{url}/login")
    browser.find_element(By.ID, "user").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login-button").click()
    wait(browser, 10).until(lambda b: "/queue" in b.current_url)


def test_supervisors_are_told_of_escalations_live(  # type: ignore[no-untyped-def]
    console: str, kafka_settings, browser_factory
) -> None:
    supervisor, officer = browser_factory(), browser_factory()
    _browser_log_in(supervisor, console, "wang")
    _browser_log_in(officer, console, "li")
    for browser in (supervisor, officer):
        wait(browser, 10).until(
            lambda b: "live on" in b.find_element(By.ID, "live").get_attribute("class")
        )
        assert not browser.find_elements(By.ID, "escalation-banner")
    now = datetime.now(UTC)

    def pager_steps(alert_id: str, site: str) -> list[PageRecord]:
        """What the pager writes when the first officer does not answer in time."""
        base = {"alert_id": alert_id, "site_id": site, "severity": "critical"}
        return [
            PageRecord(action="attempt", at=now, officer_id=f"{site}-day", step=0, channel="webhook", attempt=1, **base),
            PageRecord(action="escalated", at=now, officer_id=f"{site}-chief", step=1, reason="no ack in 45 s", **base),
        ]  # fmt: skip

    publish(kafka_settings, pager_steps("fever_confirmed:1", "site-b"))
    shown = time.monotonic()
    wait(supervisor, 5, poll_frequency=0.1).until(
        lambda b: b.find_elements(By.ID, "esc-fever_confirmed:1")
    )
    took = time.monotonic() - shown
    banner = supervisor.find_element(By.ID, "escalation-banner")
    assert "1 escalated alert(s)" in banner.text and "site-b-chief" in banner.text, banner.text
    assert supervisor.title.startswith("(1) ")
    wait(supervisor, 5).until(lambda b: "(1)" in b.find_element(By.ID, "escalations-filter").text)
    save_screenshot(supervisor, "console-escalation")
    # site-b is not the officer's: no notice, and not in their escalations either.
    time.sleep(1.5)
    assert not officer.find_elements(By.ID, "escalation-banner")
    officer.get(f"{console}/queue?status=escalations")
    assert "fever_confirmed:1" not in officer.page_source
    assert officer.find_element(By.ID, "escalations-filter").text.endswith("(0)")

    # Their own site's escalation reaches the officer, and the supervisor sees both.
    publish(kafka_settings, pager_steps("fever_confirmed:0", "site-a"))
    wait(officer, 5, poll_frequency=0.1).until(
        lambda b: b.find_elements(By.ID, "esc-fever_confirmed:0")
    )
    wait(supervisor, 5).until(
        lambda b: "2 escalated alert(s)" in b.find_element(By.ID, "escalation-banner").text
    )
    # The escalations section of the queue: only escalated alerts, on any page of the console.
    supervisor.find_element(By.ID, "escalations-link").click()
    wait(supervisor, 10).until(lambda b: "status=escalations" in b.current_url)
    section = wait(supervisor, 5).until(  # read inside the wait: a live refresh replaces rows
        lambda b: [
            r.get_attribute("data-alert")
            for r in b.find_elements(By.CSS_SELECTOR, "#rows tr[data-alert]")
        ]
    )
    assert sorted(section) == ["fever_confirmed:0", "fever_confirmed:1"]
    save_screenshot(supervisor, "console-escalations-queue")
    # Acknowledged (here, from the officer's console), the notice goes away.
    officer.get(f"{console}/queue")
    wait(officer, 10).until(
        lambda b: (
            b.find_element(By.CSS_SELECTOR, "#row-fever_confirmed\\:0 button.ack").click() or True
        )
    )
    wait(supervisor, 5).until(
        lambda b: "1 escalated alert(s)" in b.find_element(By.ID, "escalation-banner").text
    )
    assert took < 5, took
