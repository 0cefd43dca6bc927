"""Venue check-in by phone, end to end: `scantrail checkin` on loopback, the real broker.

Residents' phones are headless Chromium at a phone's viewport; passes, tokens
and the venue code come from the real `scantrail pass` and `scantrail venue`
commands. The check-ins reach the test's namespace on the shared broker through
the spool and publisher, and a trace built from what the broker holds finds
the one contact the case met only at the market.
"""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from processors.contacts import trace
from processors.trails import TrailIndex
from scantrail import contract
from scantrail.cli import cli
from tests.browser import PHONE, save_screenshot, wait
from tests.factories import make_scan
from tests.support import consume_all, free_port, service_env, start_scantrail

pytestmark = pytest.mark.integration


def run_cli(args: list[str], env: dict[str, str]) -> str:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def wait_healthy(port: int, proc: Any, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"checkin exited early: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"checkin did not answer: {log.read_text()[-2000:]}")


def stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return dict(json.load(r))


class Residents:
    """An issuer, phone passes for a few residents and a market's venue code, in tmp_path."""

    def __init__(self, tmp_path: Path, port: int) -> None:
        self.env = {"SCANTRAIL_STATE": str(tmp_path / "state")}
        run_cli(["pass", "keygen"], self.env)
        self.wallets: dict[str, str] = {}
        for person, household, health in (
            ("p-case", "hh-case", "green"),
            ("p-contact", "hh-contact", "green"),
            ("p-red", "hh-red", "red"),
        ):
            out = run_cli(
                [
                    "pass",
                    "issue",
                    "--site",
                    "site-000",
                    "--person",
                    person,
                    "--household",
                    household,
                    "--health",
                    health,
                    "--phone",
                    "--out",
                    str(tmp_path / "passes"),
                ],
                self.env,
            )
            self.wallets[person] = json.loads(out.splitlines()[0])["wallet"]
        issued = json.loads(
            run_cli(
                [
                    "venue",
                    "issue",
                    "--venue-id",
                    "market-01",
                    "--site",
                    "site-000",
                    "--kind",
                    "market",
                    "--name",
                    "东门菜市场",
                    "--base-url",
                    f"http://127.0.0.1:{port}",
                    "--out",
                    str(tmp_path / "venues"),
                ],
                self.env,
            )
        )
        self.url: str = issued["url"]
        self.poster = Path(issued["poster"])

    def token(self, person: str) -> str:
        return run_cli(["pass", "token", self.wallets[person]], self.env).strip()


def result_after(browser: Any, button: str) -> Any:
    """Click ``button`` and wait for the result page (a click does not wait for the load)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    browser.find_element(By.ID, button).click()
    return wait(browser, 20).until(
        expected_conditions.presence_of_element_located((By.ID, "result"))
    )


def submit_token(browser: Any, url: str, token: str) -> tuple[str, str]:
    from selenium.webdriver.common.by import By

    browser.get(url)
    box = browser.find_element(By.ID, "token")
    box.send_keys(token)
    result = result_after(browser, "submit")
    return str(result.get_attribute("data-admit")), str(result.get_attribute("data-reason"))


def test_phones_check_in_at_a_market_and_the_trace_finds_the_contact(
    kafka_settings: Any, browser_factory: Any, tmp_path: Path
) -> None:
    port = free_port()
    people = Residents(tmp_path, port)
    assert people.poster.read_bytes().startswith(b"%PDF")
    log = tmp_path / "checkin.log"
    env = service_env(
        kafka_settings, SCANTRAIL_VISITOR_SECRET="district-test-secret-0123", **people.env
    )
    server = start_scantrail(
        "checkin", "--port", str(port), "--spool", str(tmp_path / "checkin.db"), env=env, log=log
    )
    try:
        wait_healthy(port, server, log)
        phone = browser_factory(width=PHONE[0], height=PHONE[1], lang="zh-CN")
        phone.get(people.url)
        assert "扫码登记" in phone.page_source and "东门菜市场" in phone.page_source
        save_screenshot(phone, "checkin-form-zh")

        case_token = people.token("p-case")
        assert submit_token(phone, people.url, case_token) == ("true", "ok")
        assert "准予通行" in phone.page_source
        save_screenshot(phone, "checkin-green-zh")
        # the same token again (a screenshot passed on): refused
        assert submit_token(phone, people.url, case_token) == ("false", "replayed")
        save_screenshot(phone, "checkin-replayed-zh")

        other = browser_factory(width=PHONE[0], height=PHONE[1], lang="en")
        assert submit_token(other, people.url, people.token("p-contact")) == ("true", "ok")
        assert "ADMITTED" in other.page_source
        assert submit_token(other, people.url, people.token("p-red")) == (
            "false",
            "health_code_red",
        )
        assert "Red health code" in other.page_source
        save_screenshot(other, "checkin-red-en")
        # a forged poster: the code's signature does not match
        forged = people.url[:-6] + ("AAAAAA" if not people.url.endswith("AAAAAA") else "BBBBBB")
        other.get(forged)
        assert other.find_element("id", "result").get_attribute("data-reason") == "venue_forged"

        # a visitor without a pass registers with a phone number on the same page
        from selenium.webdriver.common.by import By

        visitor = browser_factory(width=PHONE[0], height=PHONE[1], lang="en")
        visitor.get(people.url)
        visitor.find_element(By.TAG_NAME, "summary").click()
        visitor.find_element(By.ID, "phone").send_keys("+86 138 0013 8000")
        visitor.find_element(By.ID, "visiting").send_keys("p-case")
        visitor.find_element(By.ID, "celsius").send_keys("36.6")
        save_screenshot(visitor, "checkin-visitor-form-en")
        result = result_after(visitor, "register")
        assert result.get_attribute("data-reason") == "visitor_ok"
        assert "13800138000" not in visitor.page_source

        counts = stats(port)["counts"]
        assert counts == {
            "checked_in": 2,
            "refused_health_code_red": 1,
            "refused_replayed": 1,
            "refused_venue_forged": 1,
            "visitors": 1,
        }
        messages = consume_all(kafka_settings, contract.SCANS, expect=4, timeout_s=60)
        readings = consume_all(kafka_settings, contract.TEMPERATURES, expect=1, timeout_s=30)
    finally:
        server.terminate()
        server.wait(timeout=60)
    scans = [contract.decode_as(m.value, contract.ScanEvent) for m in messages]
    [guest] = [s for s in scans if s.person_kind == "visitor"]
    assert guest.person_id.startswith("v-") and guest.visiting == "p-case"
    assert all(b"13800138000" not in m.value for m in messages + readings)
    [reading] = [contract.decode_as(m.value, contract.TemperatureReading) for m in readings]
    assert (reading.person_id, reading.celsius, reading.scan_event_id) == (
        guest.person_id,
        36.6,
        guest.event_id,
    )
    residents = [s for s in scans if s.person_kind is None]
    assert sorted((s.person_id, s.kiosk_id, s.venue_kind, s.health_code) for s in residents) == [
        ("p-case", "market-01", "market", "green"),
        ("p-contact", "market-01", "market", "green"),
        ("p-red", "market-01", "market", "red"),
    ]
    case = next(s for s in scans if s.person_id == "p-case")
    assert case.household_id == "hh-case" and case.venue_site_id == "site-000"

    # Their gates are at different compounds, hours apart: they met only at the market.
    index = TrailIndex()
    for scan in scans:
        index.add_event(scan)
    now = case.scanned_at
    index.add_event(
        make_scan(
            person_id="p-case",
            site_id="site-000",
            kiosk_id="kiosk-000",
            scanned_at=now - timedelta(hours=3),
        )
    )
    index.add_event(
        make_scan(
            person_id="p-contact",
            site_id="site-009",
            kiosk_id="kiosk-009",
            scanned_at=now - timedelta(hours=6),
        )
    )
    index.add_event(
        make_scan(
            person_id="p-far",
            site_id="site-000",
            kiosk_id="kiosk-000",
            scanned_at=now - timedelta(hours=8),
        )
    )
    found = trace("p-case", now - timedelta(days=1), now + timedelta(hours=1), stores=index)
    contacts = {c.person_id: c for c in found.contacts}
    # the visitor's check-in enters the trails like a resident's
    assert set(contacts) == {"p-contact", "p-red", guest.person_id}
    assert contacts["p-contact"].sites == ("market-01",)


def test_a_broker_outage_loses_no_check_in(kafka_settings: Any, tmp_path: Path) -> None:
    """The server spools while its broker is unreachable; a restart with the broker sends it."""
    port = free_port()
    people = Residents(tmp_path, port)
    spool = tmp_path / "checkin.db"
    dead = service_env(
        kafka_settings, SCANTRAIL_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}", **people.env
    )
    log = tmp_path / "checkin.log"
    server = start_scantrail(
        "checkin",
        "--port",
        str(port),
        "--spool",
        str(spool),
        "--drain-timeout",
        "1",
        env=dead,
        log=log,
    )
    try:
        wait_healthy(port, server, log)
        body = f"token={urllib.request.quote(people.token('p-case'))}".encode()
        request = urllib.request.Request(people.url + "/checkin", data=body, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310
            assert 'data-admit="true"' in r.read().decode()
        assert stats(port)["spool_depth"] == 1
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert consume_all(kafka_settings, contract.SCANS, timeout_s=5) == []
    live = service_env(kafka_settings, **people.env)
    server = start_scantrail(
        "checkin", "--port", str(port), "--spool", str(spool), env=live, log=log
    )
    try:
        wait_healthy(port, server, log)
        messages = consume_all(kafka_settings, contract.SCANS, expect=1, timeout_s=60)
    finally:
        server.terminate()
        server.wait(timeout=60)
    [scan] = [contract.decode_as(m.value, contract.ScanEvent) for m in messages]
    assert (scan.person_id, scan.kiosk_id) == ("p-case", "market-01")
    assert scan.scanned_at <= datetime.now(UTC)
