"""The console as its users meet it: headless Chromium against the real broker, InfluxDB,
worker, InfluxDB sink and pager, each a ``scantrail`` subprocess in this test's namespace.

A simulated kiosk at site-a measures a resident twice above 37.3 °C; the
worker raises ``fever_suspected`` then ``fever_confirmed``, the pager pages
officer-a, and the console's queue shows both without a reload. officer-a
acknowledges in the browser; the pager's journal gets the ack and the pager
does not escalate past its ack timeout. An ack made with the pager's own
token shows up in the console. The case view draws the curve; an
epidemiologist runs a trace and downloads the CSV; officer-b of site-b gets
403. Every page is saved as a screenshot under test-artifacts/.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml
from kafka import KafkaConsumer, TopicPartition
from selenium.webdriver.common.by import By

from scantrail import contract
from scantrail.console.accounts import make_account, save_account
from scantrail.contract import KioskHeartbeat, PageRecord, QuarantineRecord
from sinks.ack_tokens import officer_token
from tests.browser import save_screenshot, wait
from tests.factories import make_reading, make_scan
from tests.support import free_port, publish, service_env, start_scantrail

pytestmark = pytest.mark.integration

ACK_SECRET = "console-test-ack-secret-0123456789"
ACK_TIMEOUT_S = 45
PERSON = "p-fever-001"


class Hooks:
    """A webhook receiver the pager delivers to (signatures are the pager tests' business)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[dict[str, Any]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hooks.got.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, officer: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{officer}"


def pages(kafka_settings: Any) -> list[PageRecord]:
    topic = kafka_settings.topic(contract.PAGES)
    consumer = KafkaConsumer(bootstrap_servers=kafka_settings.servers)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(tps)
        out: list[PageRecord] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for messages in consumer.poll(timeout_ms=500).values():
                out += [contract.decode_as(m.value, PageRecord) for m in messages]
        return out
    finally:
        consumer.close()


def audits(kafka_settings: Any) -> list[contract.AuditRecord]:
    topic = kafka_settings.topic(contract.AUDIT)
    consumer = KafkaConsumer(bootstrap_servers=kafka_settings.servers)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(tps)
        out: list[contract.AuditRecord] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for messages in consumer.poll(timeout_ms=500).values():
                out += [contract.decode_as(m.value, contract.AuditRecord) for m in messages]
        return out
    finally:
        consumer.close()


@pytest.fixture
def stack(kafka_settings, influx_settings, tmp_path) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Worker, InfluxDB sink, pager and console, with four accounts of random passwords."""
    passwords = {
        name: secrets.token_urlsafe(12) for name in ("officer-a", "officer-b", "chief", "epi")
    }
    accounts = tmp_path / "accounts.json"
    save_account(accounts, make_account("officer-a", "officer", ["site-a"], passwords["officer-a"]))
    save_account(accounts, make_account("officer-b", "officer", ["site-b"], passwords["officer-b"]))
    save_account(accounts, make_account("chief", "supervisor", [], passwords["chief"]))
    save_account(accounts, make_account("epi", "epidemiologist", [], passwords["epi"]))
    hooks = Hooks()
    roster = tmp_path / "roster.yaml"
    officers = [
        {"id": o, "hours": "00:00-24:00", "webhook": {"url": hooks.url(o), "secret_env": "T_HOOK"}}
        for o in ("officer-a", "officer-a2")
    ]
    roster.write_text(yaml.safe_dump({"sites": {"site-a": officers, "site-b": officers}}))
    console_port, pager_port = free_port(), free_port()
    env = service_env(
        kafka_settings,
        influx_settings,
        SCANTRAIL_WORKER_APP_ID=f"{kafka_settings.namespace}worker",
        SCANTRAIL_WORKER_WEB_PORT=str(free_port()),
        SCANTRAIL_WORKER_DATA_DIR=str(tmp_path / "worker"),
        SCANTRAIL_STATE=str(tmp_path / "state"),
        SCANTRAIL_CONSOLE_ACCOUNTS=str(accounts),
        SCANTRAIL_PAGER_ACK_SECRET=ACK_SECRET,
        SCANTRAIL_PAGER_ACK_TIMEOUT_S=str(ACK_TIMEOUT_S),
        T_HOOK="console-test-webhook-secret-0123456789",  # 32 bytes at least
    )
    procs = [
        start_scantrail("worker", env=env, log=tmp_path / "worker.log"),
        start_scantrail("sink", "influx", env=env, log=tmp_path / "sink.log"),
        start_scantrail(
            "sink",
            "pager",
            "--roster",
            str(roster),
            "--port",
            str(pager_port),
            env=env,
            log=tmp_path / "pager.log",
        ),  # fmt: skip
        start_scantrail(
            "console", "--port", str(console_port), env=env, log=tmp_path / "console.log"
        ),
    ]
    url = f"http://127.0.0.1:{console_port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:  # noqa: S310
                if json.loads(r.read())["caught_up"]:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail((tmp_path / "console.log").read_text()[-3000:])
        time.sleep(0.3)
    try:
        yield {
            "url": url,
            "pager": f"http://127.0.0.1:{pager_port}",
            "passwords": passwords,
            "hooks": hooks,
            "logs": tmp_path,
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=60)
            except Exception:
                p.kill()
        hooks.server.shutdown()
        hooks.server.server_close()


def text_of(browser: Any, element_id: str) -> str:
    """An element's text read in one step (live rows are replaced under the driver's feet)."""
    got = browser.execute_script(
        "var e = document.getElementById(arguments[0]); return e ? e.innerText : '';", element_id
    )
    return str(got)


class AlertTimes:
    """When each alert id first appears on the alerts topic (monotonic), read on a thread."""

    def __init__(self, kafka_settings: Any) -> None:
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.consumer = KafkaConsumer(
            kafka_settings.topic(contract.ALERTS),
            bootstrap_servers=kafka_settings.servers,
            auto_offset_reset="earliest",
        )
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            for messages in self.consumer.poll(timeout_ms=50).values():
                for m in messages:
                    alert = contract.decode_as(m.value, contract.Alert)
                    self.seen.setdefault(alert.alert_id, time.monotonic())
        self.consumer.close()


def log_in(browser: Any, url: str, user: str, password: str, ok: bool = True) -> None:
    browser.get(f"{url}/login")
    browser.find_element(By.ID, "user").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "login-button").click()
    if ok:
        wait(browser, 10).until(lambda b: "/login" not in b.current_url)
    else:
        wait(browser, 10).until(lambda b: b.find_elements(By.ID, "login-error"))


def simulated_kiosk(now: datetime) -> list[contract.Event]:
    """Five ordinary days, today's contacts at the gate, then a confirmed fever."""
    events: list[contract.Event] = [
        QuarantineRecord(
            person_id=PERSON,
            site_id="site-a",
            starts_on=date.today() - timedelta(days=14),
            ends_on=date.today() - timedelta(days=1),
            reason="returned from Wuhan",
        )  # fmt: skip
    ]
    for d, c in zip(range(5, 0, -1), (36.4, 36.6, 36.5, 36.7, 36.5), strict=True):
        events.append(
            make_reading(
                person_id=PERSON,
                site_id="site-a",
                kiosk_id="kiosk-a1",
                celsius=c,
                measured_at=now - timedelta(days=d, hours=1),
            )  # fmt: skip
        )
    first = now - timedelta(seconds=90)
    for i, person in enumerate(("p-contact-1", "p-contact-2", PERSON)):
        events.append(
            make_scan(
                person_id=person,
                site_id="site-a",
                kiosk_id="kiosk-a1",
                seq=i,
                scanned_at=first - timedelta(minutes=4 - 2 * i),
            )  # fmt: skip
        )
    events.append(
        make_reading(person_id=PERSON, site_id="site-a", kiosk_id="kiosk-a1", celsius=38.3,
                     measured_at=first)
    )  # fmt: skip
    events.append(
        make_reading(person_id=PERSON, site_id="site-a", kiosk_id="kiosk-a1", celsius=38.4,
                     measured_at=now - timedelta(seconds=30))
    )  # fmt: skip
    for kiosk, ago in (("kiosk-a1", 5), ("kiosk-a2", 400)):
        events.append(
            KioskHeartbeat(
                kiosk_id=kiosk,
                site_id="site-a",
                sent_at=now - timedelta(seconds=ago),
                spool_depth=0,
                scans_since_start=3,
                decode_failures=0,
                version="test",
            )  # fmt: skip
        )
    return events


def test_console_end_to_end_in_a_browser(stack, kafka_settings, browser_factory) -> None:  # type: ignore[no-untyped-def]
    url, pw = stack["url"], stack["passwords"]
    officer = browser_factory(lang="en")
    officer.get(f"{url}/queue")
    assert "/login" in officer.current_url
    save_screenshot(officer, "console-login")
    log_in(officer, url, "officer-a", "wrong password!!", ok=False)
    assert "Wrong user name or password" in officer.find_element(By.ID, "login-error").text
    log_in(officer, url, "officer-a", pw["officer-a"])
    assert officer.find_element(By.ID, "who").text.startswith("officer-a")
    wait(officer, 10).until(lambda b: "on" in b.find_element(By.ID, "live").get_attribute("class"))

    # A fever at a simulated kiosk: the rows appear without a reload.
    marker = officer.execute_script("window.__same_page = 1; return window.__same_page")
    now = datetime.now(UTC)
    times = AlertTimes(kafka_settings)
    publish(kafka_settings, simulated_kiosk(now))
    published = time.monotonic()

    def confirmed_row(b: Any) -> Any:
        return b.execute_script(
            "var r = Array.from(document.querySelectorAll('tr.sev-critical'))"
            ".find(r => r.innerText.includes('fever_confirmed')); return r ? r.dataset.alert : null;"
        )

    try:
        alert_id = wait(officer, 120, poll_frequency=0.05).until(confirmed_row)
        on_screen = time.monotonic()
    finally:
        times.stop.set()
    assert officer.execute_script("return window.__same_page") == marker  # no reload
    latency = on_screen - times.seen[alert_id]
    print(
        f"fever alert on the topic {times.seen[alert_id] - published:.1f} s after the readings; "
        f"in the open queue {latency:.2f} s later"
    )
    assert latency < 2.0
    wait(officer, 60).until(lambda b: "paged" in text_of(b, f"row-{alert_id}"))
    save_screenshot(officer, "console-queue")
    records = pages(kafka_settings)
    paged_at = min(r.at for r in records if r.alert_id == alert_id)

    # Acknowledge in the console: a page/1 record, and the pager stops escalating.
    officer.find_element(By.ID, f"row-{alert_id}").find_element(
        By.CSS_SELECTOR, "button.ack"
    ).click()
    wait(officer, 10).until(lambda b: not b.find_elements(By.ID, f"row-{alert_id}"))
    acks = [
        r for r in pages(kafka_settings) if r.alert_id == alert_id and r.action == "acknowledged"
    ]
    assert [(a.officer_id, a.by) for a in acks] == [("console:officer-a", "console:officer-a")]

    # An ack made with the pager's own credential shows in the open console within 2 s.
    officer.get(f"{url}/queue?closed=1")
    wait(officer, 10).until(lambda b: "on" in b.find_element(By.ID, "live").get_attribute("class"))
    suspected = next(
        r
        for r in pages(kafka_settings)
        if r.action == "queued" and r.alert and r.alert["kind"] == "fever_suspected"
    )
    officer.execute_script("window.__same_page = 2")
    req = urllib.request.Request(  # noqa: S310
        f"{stack['pager']}/ack/{suspected.alert_id}",
        data=json.dumps({"officer_id": "officer-a"}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {officer_token(ACK_SECRET.encode(), 'officer-a')}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        assert resp.status == 200
    acked = time.monotonic()
    wait(officer, 10, poll_frequency=0.1).until(
        lambda b: "acknowledged" in text_of(b, f"row-{suspected.alert_id}")
    )
    latency = time.monotonic() - acked
    print(f"pager ack visible in the console {latency:.2f} s after the pager answered")
    assert latency < 2.0
    assert officer.execute_script("return window.__same_page") == 2  # no reload
    assert "officer-a" in text_of(officer, f"row-{suspected.alert_id}")
    save_screenshot(officer, "console-queue-closed")

    # The pager honours the console's ack: nothing escalates past its ack timeout.
    past_timeout_s = (
        paged_at + timedelta(seconds=ACK_TIMEOUT_S + 8) - datetime.now(UTC)
    ).total_seconds()
    time.sleep(max(past_timeout_s, 0))
    after = [r.action for r in pages(kafka_settings) if r.alert_id == alert_id]
    assert "escalated" not in after, after

    # The case view: evidence, the curve with the fever line and baseline, quarantine.
    officer.get(f"{url}/alerts/{alert_id}")
    curve = wait(officer, 30).until(lambda b: b.find_element(By.ID, "curve"))
    dots = curve.find_elements(By.CSS_SELECTOR, "circle")
    assert len(dots) == 7, len(dots)  # five ordinary days and the two fever readings
    assert curve.find_elements(By.CSS_SELECTOR, "line.fever")
    assert curve.find_elements(By.CSS_SELECTOR, "line.baseline")
    assert "36.5" in curve.text  # the baseline: median of the five earlier days
    assert "returned from Wuhan" in officer.find_element(By.ID, "quarantine").text
    assert "38.4" in officer.find_element(By.ID, "evidence").text
    assert not officer.find_elements(By.ID, "contacts-action")  # officers do not trace
    officer.set_window_size(1440, 1250)
    save_screenshot(officer, "console-case")
    officer.set_window_size(1440, 900)

    # The big screen: passages, fevers today, the silent kiosk, open critical alerts.
    publish(
        kafka_settings,
        [
            KioskHeartbeat(
                kiosk_id="kiosk-a1", site_id="site-a", sent_at=datetime.now(UTC),
                spool_depth=0, scans_since_start=4, decode_failures=0, version="test",
            )
        ],
    )  # fmt: skip
    officer.get(f"{url}/bigscreen")
    wait(officer, 30).until(
        lambda b: "kiosk-a2" in text_of(b, "silent") and "kiosk-a1" not in text_of(b, "silent")
    )
    assert int(text_of(officer, "fevers-total")) == 2  # suspected + confirmed, as Grafana counts
    assert "site-a" in text_of(officer, "per-site")
    save_screenshot(officer, "console-bigscreen")

    # An officer of another site: never in the queue, 403 on the case.
    other = browser_factory(lang="zh-CN")
    log_in(other, url, "officer-b", pw["officer-b"])
    assert "告警队列" in other.page_source
    other.get(f"{url}/queue?closed=1")
    assert not other.find_elements(By.ID, f"row-{alert_id}")
    save_screenshot(other, "console-queue-zh")
    other.get(f"{url}/alerts/{alert_id}")
    assert "403" in other.find_element(By.TAG_NAME, "h1").text
    save_screenshot(other, "console-forbidden")

    # The epidemiologist: contacts from the case, the trace, the CSV.
    epi = browser_factory(lang="en")
    log_in(epi, url, "epi", pw["epi"])
    epi.get(f"{url}/alerts/{alert_id}")
    epi.find_element(By.ID, "contacts-action").click()
    table = wait(epi, 60).until(lambda b: b.find_element(By.ID, "contacts"))
    people = [td.text for td in table.find_elements(By.CSS_SELECTOR, "tbody td:first-child")]
    assert sorted(people) == ["p-contact-1", "p-contact-2"]
    epi.find_element(By.CSS_SELECTOR, "#contacts th:nth-child(1)").click()  # sort by person
    assert "kiosk-a1" in text_of(epi, "trail")  # the index's own scan in the period
    assert epi.find_elements(By.CSS_SELECTOR, "#graph circle")
    assert epi.find_elements(By.CSS_SELECTOR, "#timeline circle")
    epi.set_window_size(1440, 1150)
    save_screenshot(epi, "console-trace")
    csv_text = epi.execute_async_script(
        "var done = arguments[0];"
        "fetch(document.getElementById('csv').href).then(r => r.text()).then(done);"
    )
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("person_id,degree,first_contact")
    assert sorted(line.split(",")[0] for line in lines[1:]) == ["p-contact-1", "p-contact-2"]

    trail = audits(kafka_settings)
    kinds = {(a.actor, a.action, a.outcome) for a in trail}
    assert ("console:officer-a", "case_view", "allowed") in kinds
    assert ("console:officer-b", "case_view", "refused") in kinds
    assert ("console:epi", "trace", "allowed") in kinds
    assert ("console:epi", "trace_csv", "allowed") in kinds
    assert all(a.person_id == PERSON for a in trail if a.action.startswith("trace"))
