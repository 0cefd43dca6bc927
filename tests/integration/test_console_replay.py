"""The console's replay view against the real broker, in headless Chromium.

Scans of a February 2020 morning (and some outside it) are published to the
test's scans topic; the epidemiologist replays the period for one site and
one person in the browser, and the counts, the trails, the plot and the
contacts are checked, then compared with what ``scantrail replay`` writes for
the same period. An officer gets 403, and every replay is on the audit topic.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from scantrail import contract
from scantrail.console.accounts import make_account, save_account
from tests.browser import save_screenshot, wait
from tests.factories import make_scan
from tests.integration.test_console import audits
from tests.integration.test_console_security import PASSWORD, Client, start_console
from tests.support import ROOT, publish, service_env

pytestmark = pytest.mark.integration
T = datetime(2020, 2, 10, 8, 0, tzinfo=UTC)
SINCE, UNTIL = "2020-02-10T07:00+00:00", "2020-02-10T12:00+00:00"


def scans() -> list[contract.ScanEvent]:
    at = [
        ("p-index", "site-a", "kiosk-a1", T),
        ("p-c1", "site-a", "kiosk-a1", T + timedelta(minutes=5)),
        ("p-c2", "site-a", "kiosk-a2", T + timedelta(minutes=10)),
        ("p-far", "site-b", "kiosk-b1", T),
        ("p-c1", "site-b", "kiosk-b1", T + timedelta(hours=2)),
        ("p-index", "site-a", "kiosk-a1", T - timedelta(days=1)),  # outside the period
        ("p-late", "site-a", "kiosk-a1", T + timedelta(days=1)),  # outside the period
    ]
    # A morning's background at three sites (site-a's after p-index's contacts' window).
    for i in range(160):
        when = T - timedelta(minutes=50) + timedelta(minutes=(i * 37) % 230, seconds=i)
        site = ("site-a", "site-b", "site-c", "site-a")[i % 4]
        if site == "site-a" and when < T + timedelta(minutes=30):
            site = "site-b"
        at.append((f"p-bg-{i % 23}", site, f"kiosk-{site[-1]}{i % 2 + 1}", when))
    return [
        make_scan(person_id=p, site_id=s, kiosk_id=k, scanned_at=when, seq=i)
        for i, (p, s, k, when) in enumerate(at)
    ]


def expected(site: str = "") -> tuple[int, int]:
    """(scans, persons) of the period (and site), counted from the published list itself."""
    since, until = datetime.fromisoformat(SINCE), datetime.fromisoformat(UNTIL)
    kept = [s for s in scans() if since <= s.scanned_at <= until and site in ("", s.site_id)]
    return len(kept), len({s.person_id for s in kept})


def test_an_epidemiologist_replays_a_period_in_the_browser(  # type: ignore[no-untyped-def]
    kafka_settings, influx_settings, tmp_path, browser_factory
) -> None:
    accounts = tmp_path / "accounts.json"
    save_account(accounts, make_account("epi", "epidemiologist", [], PASSWORD))
    save_account(accounts, make_account("li", "officer", ["site-a"], PASSWORD))
    publish(kafka_settings, scans())
    url, proc = start_console(kafka_settings, influx_settings, tmp_path, alerts=0, skipped=0)
    try:
        # Officers do not replay: 403 for the page and the form.
        officer = Client(url)
        login = {"user": "li", "password": PASSWORD, "csrf": officer.csrf("/login")}
        assert officer.request("/login", login)[0] == 303
        assert officer.request("/replay")[0] == 403
        form = {"csrf": officer.csrf("/queue"), "since": SINCE, "until": UNTIL}
        assert officer.request("/replay", form)[0] == 403

        browser = browser_factory()
        browser.get(f"{url}/login")
        browser.find_element(By.ID, "user").send_keys("epi")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "login-button").click()
        wait(browser, 10).until(lambda b: "/login" not in b.current_url)
        browser.find_element(By.ID, "nav-replay").click()
        wait(browser, 10).until(lambda b: b.find_elements(By.ID, "replay-form"))
        for field, value in (
            ("r-since", SINCE),
            ("r-until", UNTIL),
            ("r-site", "site-a"),
            ("r-persons", "p-index"),
        ):
            element = browser.find_element(By.ID, field)
            element.clear()
            element.send_keys(value)
        browser.find_element(By.ID, "r-run").click()
        wait(browser, 60).until(lambda b: b.find_elements(By.ID, "replay-counts"))
        job = re.search(r"/replay/([\w-]+)$", browser.current_url)
        assert job, browser.current_url
        scans_a, persons_a = expected("site-a")
        assert browser.find_element(By.ID, "c-scans").text == str(scans_a) and scans_a > 3
        assert browser.find_element(By.ID, "c-persons").text == str(persons_a)
        sites = [
            td.text for td in browser.find_elements(By.CSS_SELECTOR, "#replay-sites td:first-child")
        ]
        assert sites == ["site-a"]
        row = browser.find_element(By.ID, "trace-p-index")
        assert row.find_element(By.CSS_SELECTOR, ".first-degree").text == "2"
        assert browser.find_elements(By.CSS_SELECTOR, ".graphs svg circle")
        wait(browser, 10).until(
            lambda b: b.execute_script(
                "var i = document.getElementById('replay-plot'); return i.complete && i.naturalWidth;"
            )
        )
        progress = browser.execute_async_script(
            "var done = arguments[0];"
            f"fetch('/replay/{job.group(1)}/progress').then(r => r.json()).then(done);"
        )
        assert progress["state"] == "done" and progress["done"] == progress["total"] > scans_a
        magic = browser.execute_async_script(
            "var done = arguments[0];"
            "fetch(document.getElementById('trails-download').href).then(r => r.arrayBuffer())"
            ".then(b => done(String.fromCharCode.apply(null, new Uint8Array(b).slice(0, 4))));"
        )
        assert magic == "PAR1"
        browser.set_window_size(1440, 1250)
        save_screenshot(browser, "console-replay")

        # The whole period, no site: the same counts as `scantrail replay`.
        epi = Client(url)
        login = {"user": "epi", "password": PASSWORD, "csrf": epi.csrf("/login")}
        assert epi.request("/login", login)[0] == 303
        status, headers, _ = epi.request(
            "/replay",
            {"csrf": epi.csrf("/replay"), "since": SINCE, "until": UNTIL, "persons": "p-index"},
        )
        assert status == 303
        page = headers["Location"]
        for _ in range(120):
            state = json.loads(epi.request(f"{page}/progress")[2])["state"]
            if state != "running":
                break
            time.sleep(0.5)
        assert state == "done"
        body = epi.request(page)[2]
        cli = _cli_replay(kafka_settings, influx_settings, tmp_path)
        assert f'id="c-records">{cli["records_read"]}<' in body
        assert (
            f'id="c-scans">{cli["scans_in_period"]}<' in body
            and cli["scans_in_period"] == expected()[0]
        )
        assert Client(url).request(page)[0] == 303  # no session, no replay
        other = Client(url)
        login = {"user": "li", "password": PASSWORD, "csrf": other.csrf("/login")}
        other.request("/login", login)
        assert other.request(page)[0] == 403
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    trail = audits(kafka_settings)
    seen = {(a.actor, a.action, a.outcome) for a in trail}
    assert ("console:li", "replay", "refused") in seen
    assert ("console:epi", "replay_trails", "allowed") in seen
    replays = [a for a in trail if a.actor == "console:epi" and a.action == "replay"]
    assert sorted(a.detail["site"] for a in replays) == ["", "site-a"]
    traced = [a for a in trail if a.action == "replay_trace"]
    assert [(a.person_id, a.contacts_returned) for a in traced] == [("p-index", 2)] * 2


def _cli_replay(kafka_settings: Any, influx_settings: Any, tmp_path: Any) -> dict[str, Any]:
    out = tmp_path / "cli-replay"
    subprocess.run(
        [sys.executable, "-m", "scantrail.cli", "replay", "--since", SINCE, "--until", UNTIL,
         "--out", str(out)],
        env=service_env(kafka_settings, influx_settings), cwd=ROOT, check=True,
        capture_output=True, timeout=120,
    )  # fmt: skip
    return dict(json.loads((out / "summary.json").read_text()))
