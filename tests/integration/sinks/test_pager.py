"""The pager against the real broker, a real HTTP receiver and a real SMTP server.

The pager runs as the ``scantrail sink pager`` subprocess; the receiver checks
every request's HMAC signature itself, so a page with a bad signature would
show up as such rather than as a delivery.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from kafka import KafkaConsumer, TopicPartition

from scantrail import contract
from scantrail.broker import make_producer
from scantrail.contract import Alert, PageRecord
from scantrail.errors import ContractError
from scantrail.keys import dead_letter_key
from scantrail.pseudonyms import keyed_hash
from sinks.ack_tokens import officer_token
from sinks.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.support import free_port, service_env, start_scantrail

pytestmark = pytest.mark.integration

SHANGHAI = timezone(timedelta(hours=8))
SITE = "site-1"
SECRETS = {
    "officer-a": b"secret-a-0123456789abcdef0123456789",
    "officer-b": b"secret-b-0123456789abcdef0123456789",
}
ACK_SECRET = b"ack-secret-for-tests-0123456789abcdef"


def bearer(officer_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {officer_token(ACK_SECRET, officer_id)}"}


# --- a webhook receiver that verifies signatures --------------------------------


class Receiver:
    """ThreadingHTTPServer on 127.0.0.1 recording (path, payload, signature valid)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[tuple[str, dict[str, Any], bool]] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                officer = self.path.rsplit("/", 1)[-1]
                valid = verify(
                    SECRETS.get(officer, b"?"),
                    self.headers.get(TIMESTAMP_HEADER, ""),
                    body,
                    self.headers.get(SIGNATURE_HEADER, ""),
                )
                receiver.requests.append((self.path, json.loads(body), valid))
                self.send_response(200 if valid else 401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def url(self, officer: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{officer}"

    def to(self, officer: str) -> list[dict[str, Any]]:
        return [p for path, p, _ in self.requests if path.endswith(f"/{officer}")]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


# --- the pager subprocess and its journal --------------------------------------


def write_roster(tmp_path: Path, officers: list[dict[str, Any]]) -> Path:
    path = tmp_path / "roster.yaml"
    path.write_text(yaml.safe_dump({"sites": {SITE: officers}}))
    return path


def officer(receiver: Receiver | None, name: str, email: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": name, "hours": "00:00-24:00"}
    if receiver is not None:
        env = f"TEST_PAGER_SECRET_{name[-1].upper()}"
        entry["webhook"] = {"url": receiver.url(name), "secret_env": env}
    if email:
        entry["email"] = email
    return entry


class PagerProcess:
    def __init__(self, kafka_settings: Any, roster: Path, log: Path, **env: str) -> None:
        self.port = free_port()
        self.log = log
        defaults = {
            "TEST_PAGER_SECRET_A": SECRETS["officer-a"].decode(),
            "TEST_PAGER_SECRET_B": SECRETS["officer-b"].decode(),
            "SCANTRAIL_PAGER_ACK_SECRET": ACK_SECRET.decode(),
            "SCANTRAIL_PAGER_RETRY_INITIAL_S": "0.5",
            "SCANTRAIL_PAGER_RETRY_CAP_S": "4",
        }
        self.env = service_env(kafka_settings, **(defaults | env))
        self.args = ["sink", "pager", "--roster", str(roster), "--port", str(self.port)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> PagerProcess:
        self.proc = start_scantrail(*self.args, *extra, env=self.env, log=self.log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"pager exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                self.request("GET", "/healthz")
                return self
            except OSError:
                time.sleep(0.2)
        pytest.fail(f"pager did not answer /healthz:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def request(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        url = path if path.startswith("http") else f"http://127.0.0.1:{self.port}{path}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture
def pager_factory(kafka_settings: Any, tmp_path: Path) -> Iterator[Callable[..., PagerProcess]]:
    started: list[PagerProcess] = []

    def make(roster: Path, **env: str) -> PagerProcess:
        p = PagerProcess(kafka_settings, roster, tmp_path / f"pager{len(started)}.log", **env)
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


class Journal:
    """Reads the test's pages topic from the start, accumulating records."""

    def __init__(self, kafka_settings: Any) -> None:
        topic = kafka_settings.topic(contract.PAGES)
        self.consumer = KafkaConsumer(bootstrap_servers=kafka_settings.servers)
        parts = self.consumer.partitions_for_topic(topic) or set()
        self.consumer.assign([TopicPartition(topic, p) for p in parts])
        self.consumer.seek_to_beginning()
        self.records: list[PageRecord] = []

    def wait(
        self, pred: Callable[[list[PageRecord]], bool], timeout: float = 45
    ) -> list[PageRecord]:
        deadline = time.monotonic() + timeout
        while True:
            for messages in self.consumer.poll(timeout_ms=300).values():
                for m in messages:
                    try:
                        rec = contract.decode_as(m.value, PageRecord)
                    except ContractError:
                        continue  # a bad record a test put in the journal on purpose
                    self.records.append(rec)
            if pred(self.records):
                return self.records
            if time.monotonic() > deadline:
                actions = [(r.alert_id, r.action, r.officer_id) for r in self.records]
                pytest.fail(f"journal never matched; it holds {actions}")

    def actions(self, alert_id: str, action: str) -> list[PageRecord]:
        return [r for r in self.records if r.alert_id == alert_id and r.action == action]

    def settle(self, seconds: float) -> list[PageRecord]:
        """Read whatever arrives in the next ``seconds`` (for asserting absence)."""
        deadline = time.monotonic() + seconds
        return self.wait(lambda _: time.monotonic() > deadline, timeout=seconds + 5)


@pytest.fixture
def journal(kafka_settings: Any) -> Iterator[Journal]:
    j = Journal(kafka_settings)
    yield j
    j.consumer.close()


def has(journal: Journal, alert_id: str, action: str, n: int = 1) -> Callable[[Any], bool]:
    return lambda _: len(journal.actions(alert_id, action)) >= n


def make_alert(alert_id: str, severity: str = "critical") -> Alert:
    now = datetime.now(UTC).astimezone(SHANGHAI)
    return Alert(
        alert_id=alert_id,
        kind="fever_confirmed",
        severity=severity,  # type: ignore[arg-type]
        site_id=SITE,
        person_id="p-000123",
        event_time=now - timedelta(seconds=5),
        raised_at=now,
        evidence=["t1", "t2"],
        detail={"celsius": [37.9, 38.1]},
    )


def publish(kafka_settings: Any, *payloads: Alert | bytes) -> None:
    producer = make_producer(kafka_settings)
    for item in payloads:
        value = item if isinstance(item, bytes) else contract.encode(item)
        producer.send(kafka_settings.topic(contract.ALERTS), key=SITE.encode(), value=value)
    producer.flush()
    producer.close()


def committed(kafka_settings: Any, group: str = "scantrail-sink-pager") -> int:
    """Sum of the group's committed offsets over the alerts topic (read without joining)."""
    topic = kafka_settings.topic(contract.ALERTS)
    consumer = KafkaConsumer(
        bootstrap_servers=kafka_settings.servers,
        group_id=f"{kafka_settings.namespace}{group}",
        enable_auto_commit=False,
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in parts)
    finally:
        consumer.close(autocommit=False)


def eventually(check: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.3)
    return check()


# --- the tests -------------------------------------------------------------------


def test_critical_alert_is_delivered_by_webhook_and_email_with_a_valid_signature(
    kafka_settings: Any,
    tmp_path: Path,
    receiver: Receiver,
    smtp: tuple[Mailbox, int],
    pager_factory: Callable[..., PagerProcess],
    journal: Journal,
) -> None:
    box, smtp_port = smtp
    roster = write_roster(tmp_path, [officer(receiver, "officer-a", "a@example.org")])
    # aiosmtpd here speaks no TLS: the setting a local relay needs.
    pager_factory(
        roster, SCANTRAIL_PAGER_SMTP_PORT=str(smtp_port), SCANTRAIL_PAGER_SMTP_STARTTLS="false"
    ).start()
    alert = make_alert("fever_confirmed:c1")
    publish(kafka_settings, alert)

    journal.wait(has(journal, alert.alert_id, "delivered", 2))
    assert {r.channel for r in journal.actions(alert.alert_id, "delivered")} == {"webhook", "email"}
    assert {r.channel for r in journal.actions(alert.alert_id, "attempt")} == {"webhook", "email"}
    assert [(p, valid) for p, _, valid in receiver.requests] == [("/hooks/officer-a", True)]
    payload = receiver.requests[0][1]
    assert payload["alert_id"] == alert.alert_id and payload["officer_id"] == "officer-a"
    assert f"/ack/{alert.alert_id}?officer=officer-a&token=" in payload["ack_url"]
    assert len(box.messages) == 1
    assert box.messages[0]["To"] == "a@example.org"
    assert "CRITICAL" in box.messages[0]["Subject"] and alert.alert_id in str(box.messages[0])
    assert eventually(lambda: committed(kafka_settings) == 1), "offset never committed"


def test_warning_is_queued_info_skipped_and_a_malformed_alert_dead_lettered(
    kafka_settings: Any,
    tmp_path: Path,
    receiver: Receiver,
    pager_factory: Callable[..., PagerProcess],
    journal: Journal,
) -> None:
    roster = write_roster(tmp_path, [officer(receiver, "officer-a")])
    pager = pager_factory(roster).start()
    warning, info = make_alert("crowding:w1", "warning"), make_alert("note:i1", "info")
    publish(kafka_settings, warning, info, b'{"schema":"alert/1","alert_id":"x"}')

    journal.wait(has(journal, warning.alert_id, "queued"))
    journal.wait(has(journal, info.alert_id, "skipped"))
    assert pager.request("GET", f"/queue/{SITE}")[0] == 401  # no token, no person ids
    assert pager.request("GET", f"/queue/{SITE}?officer=officer-a", headers=bearer("x"))[0] == 401
    assert pager.request("GET", f"/queue/{SITE}?officer=x", headers=bearer("x"))[0] == 403
    status, body = pager.request(
        "GET", f"/queue/{SITE}?officer=officer-a", headers=bearer("officer-a")
    )
    assert status == 200
    assert [item["alert_id"] for item in body["queued"]] == [warning.alert_id]
    assert body["queued"][0]["person_id"] == "p-000123"
    assert eventually(lambda: committed(kafka_settings) == 3), "offsets never committed"
    dead = KafkaConsumer(
        kafka_settings.topic(contract.DEADLETTER),
        bootstrap_servers=kafka_settings.servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    letters = [contract.decode(m.value) for m in dead]
    dead.close()
    assert len(letters) == 1 and "alert/1" in letters[0].reason  # type: ignore[attr-defined]
    # Acknowledging a queued warning takes it off the queue; nothing was delivered.
    ack = {"officer_id": "officer-a"}
    assert pager.request("POST", f"/ack/{warning.alert_id}", ack)[0] == 401
    assert pager.request("POST", f"/ack/{warning.alert_id}", ack, bearer("officer-a"))[0] == 200
    queue = pager.request("GET", f"/queue/{SITE}?officer=officer-a", headers=bearer("officer-a"))
    assert queue[1]["queued"] == []
    assert receiver.requests == []
    assert not any(r.action in ("attempt", "delivered") for r in journal.records)


def test_redelivered_alert_is_paged_once_also_across_a_restart(
    kafka_settings: Any,
    tmp_path: Path,
    receiver: Receiver,
    pager_factory: Callable[..., PagerProcess],
    journal: Journal,
) -> None:
    roster = write_roster(tmp_path, [officer(receiver, "officer-a")])
    alert = make_alert("fever_confirmed:d1")
    first = pager_factory(roster).start()
    publish(kafka_settings, alert, alert)
    journal.wait(has(journal, alert.alert_id, "duplicate"))
    first.stop()
    # A fresh consumer group re-reads every alert from the start, so only the
    # journal can tell the pager that this alert was already paged.
    second = pager_factory(roster).start("--group", "another-group")
    publish(kafka_settings, alert)
    journal.wait(has(journal, alert.alert_id, "duplicate", 4))
    journal.settle(2)
    assert len(journal.actions(alert.alert_id, "delivered")) == 1
    assert len(receiver.to("officer-a")) == 1
    assert eventually(lambda: committed(kafka_settings, "another-group") == 3)
    second.stop()


def test_escalates_to_the_second_officer_when_nobody_acknowledges(
    kafka_settings: Any,
    tmp_path: Path,
    receiver: Receiver,
    pager_factory: Callable[..., PagerProcess],
    journal: Journal,
) -> None:
    roster = write_roster(
        tmp_path, [officer(receiver, "officer-a"), officer(receiver, "officer-b")]
    )
    pager_factory(roster).start("--ack-timeout", "2")
    alert = make_alert("fever_confirmed:e1")
    publish(kafka_settings, alert)

    journal.wait(has(journal, alert.alert_id, "exhausted"), timeout=60)
    escalated = journal.actions(alert.alert_id, "escalated")
    assert [(r.officer_id, r.step) for r in escalated] == [("officer-b", 1)]
    delivered = journal.actions(alert.alert_id, "delivered")
    assert [(r.officer_id, r.step) for r in delivered] == [("officer-a", 0), ("officer-b", 1)]
    assert delivered[1].at - delivered[0].at >= timedelta(seconds=1.5)
    assert len(receiver.to("officer-a")) == 1
    assert [p["step"] for p in receiver.to("officer-b")] == [1]


def test_ack_in_time_stops_escalation(
    kafka_settings: Any,
    tmp_path: Path,
    receiver: Receiver,
    pager_factory: Callable[..., PagerProcess],
    journal: Journal,
) -> None:
    roster = write_roster(
        tmp_path, [officer(receiver, "officer-a"), officer(receiver, "officer-b")]
    )
    pager = pager_factory(roster).start("--ack-timeout", "4")
    alert = make_alert("fever_confirmed:f1")
    publish(kafka_settings, alert)
    journal.wait(has(journal, alert.alert_id, "delivered"))

    link = receiver.to("officer-a")[0]["ack_url"]
    a, b = {"officer_id": "officer-a"}, {"officer_id": "officer-b"}
    assert pager.request("POST", "/ack/nope:1", a, bearer("officer-a"))[0] == 404
    # A token is required, and it must sign the officer named (a link: and the alert).
    assert pager.request("POST", f"/ack/{alert.alert_id}", a)[0] == 401
    malformed, wrong = {"Authorization": "Bearer 00"}, {"Authorization": f"Bearer {'0' * 64}"}
    assert pager.request("POST", f"/ack/{alert.alert_id}", a, malformed)[0] == 400
    assert pager.request("POST", f"/ack/{alert.alert_id}", a, wrong)[0] == 401
    assert pager.request("POST", link.replace("officer-a", "officer-b"))[0] == 401
    assert pager.request("POST", link.replace(alert.alert_id, "fever_confirmed:other"))[0] == 401
    intruder = {"officer_id": "intruder"}
    assert pager.request("POST", f"/ack/{alert.alert_id}", intruder, bearer("intruder"))[0] == 403
    assert pager.request("POST", f"/ack/{alert.alert_id}", {"who": "officer-a"})[0] == 400
    status, body = pager.request("POST", link)  # the one click from the page
    assert (status, body["acknowledged_by"], body["already"]) == (200, "officer-a", False)
    assert pager.request("POST", f"/ack/{alert.alert_id}", b, bearer("officer-b"))[1]["already"]
    journal.settle(6)  # well past the 4 s ack timeout
    assert [r.officer_id for r in journal.actions(alert.alert_id, "acknowledged")] == ["officer-a"]
    assert journal.actions(alert.alert_id, "escalated") == []
    assert receiver.to("officer-b") == []


def test_an_ack_written_to_the_journal_by_the_console_stops_escalation(
    kafka_settings: Any,
    tmp_path: Path,
    receiver: Receiver,
    pager_factory: Callable[..., PagerProcess],
    journal: Journal,
) -> None:
    """The web console acknowledges by appending to scantrail.pages; the pager follows it."""
    roster = write_roster(
        tmp_path, [officer(receiver, "officer-a"), officer(receiver, "officer-b")]
    )
    pager = pager_factory(roster).start("--ack-timeout", "4")
    acked, ignored = make_alert("fever_confirmed:c1"), make_alert("fever_confirmed:c2")
    publish(kafka_settings, acked, ignored)
    journal.wait(lambda _: bool(journal.actions(acked.alert_id, "delivered")))
    console_ack = PageRecord(
        alert_id=acked.alert_id, action="acknowledged", site_id=SITE, severity="critical",
        at=datetime.now(UTC), officer_id="console:li", by="console:li",
    )  # fmt: skip
    producer = make_producer(kafka_settings)
    producer.send(
        kafka_settings.topic(contract.PAGES),
        key=console_ack.key(),
        value=contract.encode(console_ack),
    ).get(timeout=10)
    producer.close()
    journal.wait(has(journal, ignored.alert_id, "escalated"), timeout=30)  # the control escalates
    journal.settle(6)  # well past the 4 s ack timeout of the acknowledged one
    assert journal.actions(acked.alert_id, "escalated") == []
    assert [p["alert_id"] for p in receiver.to("officer-b")] == [ignored.alert_id]
    # A later ack through the pager's own endpoint finds it acknowledged already.
    status, body = pager.request(
        "POST", f"/ack/{acked.alert_id}", {"officer_id": "officer-a"}, bearer("officer-a")
    )
    assert (status, body["acknowledged_by"], body["already"]) == (200, "console:li", True)


@pytest.mark.slow
def test_receiver_down_for_a_minute_gets_the_page_after_retries(
    kafka_settings: Any,
    tmp_path: Path,
    pager_factory: Callable[..., PagerProcess],
    journal: Journal,
) -> None:
    late = Receiver()
    roster = write_roster(tmp_path, [officer(late, "officer-a")])
    pager_factory(roster).start("--ack-timeout", "600")
    alert = make_alert("fever_confirmed:g1")
    publish(kafka_settings, alert)
    journal.wait(has(journal, alert.alert_id, "failed", 2))
    time.sleep(60)
    late.start()
    try:
        journal.wait(has(journal, alert.alert_id, "delivered"), timeout=30)
        assert [valid for _, _, valid in late.requests] == [True]
    finally:
        late.stop()
    failed = journal.actions(alert.alert_id, "failed")
    assert len(failed) >= 5, "the pager should have kept retrying through the outage"
    delivered = journal.actions(alert.alert_id, "delivered")
    assert len(delivered) == 1 and delivered[0].attempt == len(failed) + 1
    assert eventually(lambda: committed(kafka_settings) == 1)


def test_an_open_escalation_survives_a_pager_restart(
    kafka_settings: Any,
    tmp_path: Path,
    receiver: Receiver,
    pager_factory: Callable[..., PagerProcess],
    journal: Journal,
) -> None:
    two = [officer(receiver, "officer-a"), officer(receiver, "officer-b")]
    roster = write_roster(tmp_path, two)
    first = pager_factory(roster).start("--ack-timeout", "4")
    alert = make_alert("fever_confirmed:h1")
    publish(kafka_settings, alert)
    journal.wait(has(journal, alert.alert_id, "delivered"))
    first.stop()  # before the 4 s are up: only the journal knows the page is open
    assert journal.actions(alert.alert_id, "escalated") == []
    pager_factory(roster).start("--ack-timeout", "4")
    journal.wait(has(journal, alert.alert_id, "escalated"), timeout=30)
    journal.wait(has(journal, alert.alert_id, "delivered", 2), timeout=30)
    assert [r.officer_id for r in journal.actions(alert.alert_id, "delivered")] == [
        "officer-a",
        "officer-b",
    ]
    assert len(receiver.to("officer-a")) == 1  # the restart did not page A again


def test_ack_links_expire_malformed_tokens_get_400_and_no_token_is_logged(
    kafka_settings: Any,
    tmp_path: Path,
    receiver: Receiver,
    pager_factory: Callable[..., PagerProcess],
    journal: Journal,
) -> None:
    roster = write_roster(tmp_path, [officer(receiver, "officer-a")])
    pager = pager_factory(roster, SCANTRAIL_PAGER_ACK_LINK_TTL_S="3").start("--ack-timeout", "600")
    alert = make_alert("fever_confirmed:k1")
    publish(kafka_settings, alert)
    journal.wait(has(journal, alert.alert_id, "delivered"))
    link = receiver.to("officer-a")[0]["ack_url"]
    token = link.rpartition("token=")[2]
    a = {"officer_id": "officer-a"}
    path = f"/ack/{alert.alert_id}"
    for bad in ("é" * 64, "x" * 64, "1." + "0" * 10):  # non-ASCII included: 400, never a 500
        assert (
            pager.request(
                "POST", path, a, {"Authorization": f"Bearer {bad}".encode().decode("latin-1")}
            )[0]
            == 400
        )
    assert (
        pager.request(
            "GET", f"/queue/{SITE}?officer=officer-a", headers={"Authorization": "Bearer zz"}
        )[0]
        == 400
    )
    time.sleep(3.5)  # past the link's 3 s
    status, body = pager.request("POST", link)
    assert status == 403 and "expired" in body["error"]
    assert (
        pager.request("POST", path, a, bearer("officer-a"))[0] == 200
    )  # the officer token still works
    pager.stop()
    log = pager.log.read_text()
    assert f"/ack/{alert.alert_id}" in log, "the access log should show the request"
    assert token not in log and "token=" not in log
    assert officer_token(ACK_SECRET, "officer-a") not in log


def test_short_ack_secret_stops_the_pager_at_start(
    kafka_settings: Any, tmp_path: Path, receiver: Receiver
) -> None:
    roster = write_roster(tmp_path, [officer(receiver, "officer-a")])
    pager = PagerProcess(
        kafka_settings, roster, tmp_path / "short.log", SCANTRAIL_PAGER_ACK_SECRET="x"
    )
    proc = start_scantrail(*pager.args, env=pager.env, log=pager.log)
    assert proc.wait(timeout=60) != 0
    out = pager.log.read_text()
    assert "at least 32 bytes" in out and "Traceback" not in out


def test_bad_records_in_the_journal_do_not_stop_paging(
    kafka_settings: Any,
    tmp_path: Path,
    receiver: Receiver,
    pager_factory: Callable[..., PagerProcess],
    journal: Journal,
) -> None:
    """Unreadable journal records are dead-lettered once, however often the pager starts."""
    pages = kafka_settings.topic(contract.PAGES)
    carried = make_alert("fever_confirmed:j0").to_dict() | {
        "event_time": "9999-12-31T23:59:59-05:00"
    }
    bad = [
        b'{"schema":"page/1","alert_id":"x","at":' + b"9" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        json.dumps({
            "schema": "page/1", "alert_id": "fever_confirmed:j0", "action": "escalated",
            "site_id": SITE, "severity": "critical", "at": "2026-12-01T00:00:00Z",
            "step": 1, "officer_id": "officer-a", "alert": carried,
        }).encode(),
    ]  # fmt: skip
    producer = make_producer(kafka_settings)
    for value in bad:
        producer.send(pages, key=b"x", value=value)
    producer.flush()
    producer.close()
    roster = write_roster(tmp_path, [officer(receiver, "officer-a")])
    for n in range(2):  # two starts: still one dead letter per bad record
        pager = pager_factory(roster).start("--ack-timeout", "600")
        alert = make_alert(f"fever_confirmed:j{n + 1}")
        publish(kafka_settings, alert)
        journal.wait(has(journal, alert.alert_id, "delivered"))
        assert pager.proc is not None and pager.proc.poll() is None
        pager.stop()
    dead = KafkaConsumer(
        kafka_settings.topic(contract.DEADLETTER),
        bootstrap_servers=kafka_settings.servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    letters = [contract.decode_as(m.value, contract.DeadLetter) for m in dead]
    dead.close()
    # The pages topic is personal: each letter holds its record as a keyed hash only.
    key = dead_letter_key()
    assert sorted(letter.value_hash or "" for letter in letters) == sorted(
        keyed_hash(key, value) for value in bad
    )
    assert all(letter.topic == pages and "journal" in letter.reason for letter in letters)
    assert any("the alert it carries" in letter.reason for letter in letters)
