"""The console's pure parts: accounts and throttling, the board fold, languages, sessions, charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from processors.contacts import ContactPolicy, trace
from processors.trails import TrailIndex
from scantrail.console.accounts import (
    AccountError,
    Throttle,
    authenticate,
    check_password,
    hash_password,
    load_accounts,
    make_account,
    save_account,
)
from scantrail.console.board import Board, Filters, fold
from scantrail.console.charts import contact_graph, encounter_timeline, temperature_curve
from scantrail.console.i18n import EN, ZH, negotiate, translator
from scantrail.console.sessions import Sessions, password_fingerprint, same_token, token_hash
from scantrail.contract import Alert, PageRecord
from tests.factories import make_scan

T0 = datetime(2020, 2, 10, 8, 0, tzinfo=UTC)


def alert(site: str = "site-a", severity: str = "critical", n: int = 1) -> Alert:
    return Alert(
        alert_id=f"a-{site}-{n}", kind="fever_confirmed", severity=severity, site_id=site,
        person_id="p-001", event_time=T0 + timedelta(minutes=n), raised_at=T0, evidence=["t-1"],
    )  # fmt: skip


def page(a: Alert, action: str, **kw: object) -> PageRecord:
    kw.setdefault("at", T0)
    return PageRecord(
        alert_id=a.alert_id, action=action, site_id=a.site_id, severity=a.severity, **kw
    )  # type: ignore[arg-type]


def test_scrypt_hash_checks_the_right_password_only() -> None:
    encoded = hash_password("correct horse battery")
    assert encoded.startswith("scrypt$16384$8$1$")
    assert check_password("correct horse battery", encoded)
    assert not check_password("correct horse batterx", encoded)
    assert not check_password("x", "not a hash")
    assert hash_password("same", salt=b"1" * 16) != hash_password("same", salt=b"2" * 16)


def test_accounts_round_trip_through_a_0600_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "accounts.json"
    save_account(path, make_account("li", "officer", ["site-a"], "a long password!"))
    save_account(path, make_account("wang", "supervisor", [], "another long one"))
    assert path.stat().st_mode & 0o777 == 0o600
    accounts = load_accounts(path)
    assert set(accounts) == {"li", "wang"}
    assert "a long password" not in path.read_text()
    assert authenticate(accounts, "li", "a long password!") == accounts["li"]
    assert authenticate(accounts, "li", "wrong password!!") is None
    assert authenticate(accounts, "nobody", "a long password!") is None


@pytest.mark.parametrize(
    ("name", "role", "sites", "password"),
    [
        ("Li", "officer", ["s"], "long enough pw"),
        ("li", "admin", [], "long enough pw"),
        ("li", "officer", [], "long enough pw"),
        ("li", "officer", ["s"], "short"),
    ],
)
def test_bad_accounts_are_refused(name: str, role: str, sites: list[str], password: str) -> None:
    with pytest.raises(AccountError):
        make_account(name, role, sites, password)


def test_roles_decide_sites_actions_and_traces() -> None:
    officer = make_account("li", "officer", ["site-a"], "long enough pw")
    supervisor = make_account("wang", "supervisor", [], "long enough pw")
    epi = make_account("zhao", "epidemiologist", [], "long enough pw")
    assert officer.sees_site("site-a") and not officer.sees_site("site-b")
    assert officer.may_act("site-a") and not officer.may_act("site-b")
    assert supervisor.sees_site("site-b") and supervisor.may_act("site-b")
    assert epi.sees_site("site-b") and not epi.may_act("site-b")
    assert epi.may_trace and not officer.may_trace and not supervisor.may_trace


def test_throttle_locks_after_five_failures_and_forgets_after_the_window() -> None:
    throttle = Throttle(limit=5, window_s=300)
    keys = ["user:li", "addr:1.2.3.4"]
    for i in range(4):
        throttle.failed(keys, 100.0 + i)
    assert throttle.retry_after(keys, 104.0) == 0
    throttle.failed(keys, 104.0)
    assert throttle.retry_after(keys, 105.0) == pytest.approx(295.0)
    assert throttle.retry_after(["addr:1.2.3.4"], 105.0) > 0  # another name, same address
    assert throttle.retry_after(keys, 401.0) == 0
    throttle.failed(["user:wang"], 0.0)
    throttle.succeeded(["user:wang"])
    assert throttle.retry_after(["user:wang"], 1.0) == 0


def test_sessions_expire_after_idle_and_absolute_time_and_end_on_logout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "console" / "sessions.db"
    sessions = Sessions(path, idle_s=600, absolute_s=3600)
    try:
        s = sessions.create("li", 0.0, "fp")
        assert sessions.get(s.sid, 599.0).user == "li"  # type: ignore[union-attr]  # use renews it
        assert sessions.get(s.sid, 1190.0) is not None
        assert sessions.get(s.sid, 1800.0) is None  # idle for 610 s
        s2 = sessions.create("li", 0.0)
        for now in range(500, 3600, 500):
            assert sessions.get(s2.sid, float(now)) is not None
        assert sessions.get(s2.sid, 3600.0) is None  # an hour after log-in, however busy
        s3 = sessions.create("li", 0.0)
        sessions.end(s3.sid)
        assert sessions.get(s3.sid, 1.0) is None and sessions.get("", 1.0) is None
        assert same_token(s.csrf, s.csrf) and not same_token(s.csrf, "")
        assert not same_token("a", None) and s.csrf != s2.csrf
        kept = sessions.create("wang", 0.0, "fp-w")
    finally:
        sessions.close()
    # Another process (a restarted console) finds the session by its cookie, CSRF token and all.
    again = Sessions(path, idle_s=600, absolute_s=3600)
    try:
        found = again.get(kept.sid, 10.0)
        assert found is not None and (found.user, found.csrf) == ("wang", kept.csrf)
        assert found.password_fingerprint == "fp-w"
        # The file is private and holds no token, only hashes of them.
        assert path.stat().st_mode & 0o777 == 0o600
        raw = path.read_bytes()
        assert kept.sid.encode() not in raw and kept.csrf.encode() not in raw
        assert token_hash(kept.sid).encode() in raw
        assert again.end_user("wang") == 1 and again.get(kept.sid, 11.0) is None
    finally:
        again.close()


def test_a_password_change_changes_the_sessions_fingerprint() -> None:
    old, new = hash_password("a test password 1"), hash_password("a test password 1")
    assert password_fingerprint(old) != password_fingerprint(new)  # new salt: a new hash
    assert password_fingerprint(old) == password_fingerprint(old)


def test_escalations_are_the_unanswered_escalated_alerts_an_account_sees() -> None:
    a, b, c = alert("site-a", n=1), alert("site-b", n=2), alert("site-b", n=3)
    board = fold([a, b, c], [])
    assert board.escalations(lambda s: True) == []
    board.apply(page(a, "escalated", officer_id="chief-a", step=1))
    board.apply(page(b, "escalated", officer_id="chief-b", step=1, at=T0 + timedelta(minutes=5)))
    board.apply(page(c, "exhausted", step=2))
    everyone = [r.alert_id for r in board.escalations(lambda s: True)]
    assert everyone[0] == b.alert_id and set(everyone) == {a.alert_id, b.alert_id, c.alert_id}
    assert [r.alert_id for r in board.escalations(lambda s: s == "site-a")] == [a.alert_id]
    section = board.visible(lambda s: True, Filters(status="escalations"))
    assert {r.alert_id for r in section} == set(everyone)
    board.apply(page(b, "acknowledged", officer_id="console:wang", step=1))
    assert b.alert_id not in [r.alert_id for r in board.escalations(lambda s: True)]
    assert b.alert_id not in [
        r.alert_id for r in board.visible(lambda s: True, Filters(status="escalations"))
    ]


def test_board_follows_the_pager_and_console_records() -> None:
    a, b = alert("site-a", n=1), alert("site-b", n=2)
    board = fold([a, b], [])
    assert board.status(board.rows[a.alert_id]) == "new"
    board.apply(page(a, "attempt", officer_id="officer-a", channel="webhook", attempt=1))
    assert board.status(board.rows[a.alert_id]) == "paged"
    board.apply(page(a, "escalated", officer_id="officer-b", step=1))
    assert board.status(board.rows[a.alert_id]) == "escalated"
    board.apply(page(a, "acknowledged", officer_id="console:li", by="console:li", step=1))
    assert board.status(board.rows[a.alert_id]) == "acknowledged"
    board.apply(page(a, "assigned", officer_id="console:wang", by="console:li"))
    assert board.rows[a.alert_id].assigned_to == "console:wang"
    board.apply(page(a, "resolved", by="console:li", reason="sent to fever clinic"))
    row = board.rows[a.alert_id]
    assert board.status(row) == "resolved" and row.note == "sent to fever clinic"
    assert [r.alert_id for r in board.open_critical()] == [b.alert_id]
    # Officers of site-a never see site-b's alert; closed rows only on request.
    only_a = board.visible(lambda s: s == "site-a", Filters())
    assert only_a == []
    assert [
        r.alert_id for r in board.visible(lambda s: s == "site-a", Filters(show_closed=True))
    ] == [a.alert_id]
    assert [r.alert_id for r in board.visible(lambda s: True, Filters(site="site-b"))] == [
        b.alert_id
    ]


def test_a_page_record_carrying_the_alert_makes_a_row_without_the_alert_topic() -> None:
    a = alert(severity="warning")
    board = Board()
    board.apply(page(a, "queued", alert=a.to_dict()))
    assert board.status(board.rows[a.alert_id]) == "queued"
    board.add_alert(a)  # the alert itself arrives later: one row still
    assert len(board.rows) == 1 and len(board.rows[a.alert_id].history) == 1


def test_language_from_accept_language_or_the_choice() -> None:
    assert negotiate("zh-CN,zh;q=0.9,en;q=0.8") == "zh-CN"
    assert negotiate("en-GB,en;q=0.9,zh;q=0.8") == "en"
    assert negotiate("fr, zh;q=0.5") == "zh-CN"
    assert negotiate("fr") == "en"
    assert negotiate("zh-CN", chosen="en") == "en"
    assert negotiate("en", chosen="xx") == "en"
    assert set(EN) == set(ZH), set(EN) ^ set(ZH)
    assert translator("zh-CN")("acknowledge") == "确认"
    assert translator("en")("throttled", seconds=3).endswith("3 s.")


def test_curve_draws_each_reading_the_fever_line_and_the_baseline() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    points = [(T0 - timedelta(days=d), 36.4 + d / 100) for d in range(1, 6)] + [(T0, 38.1)]
    svg = temperature_curve(
        points, start=T0 - timedelta(days=14), end=T0 + timedelta(hours=1), baseline=36.42,
        labels={"curve": "c", "fever_line": "37.3 line", "baseline": "base <36.42>"}, tz=tz,
        highlight={T0},
    )  # fmt: skip
    assert svg.count("<circle") == 6
    assert svg.count('class="reading hot evidence"') == 1
    assert 'class="fever"' in svg and 'class="baseline"' in svg
    assert "base &lt;36.42&gt;" in svg  # labels are escaped


def test_graph_and_timeline_show_every_contact_of_a_small_trace() -> None:
    index = TrailIndex()
    for i, person in enumerate(["p-index", "p-1", "p-2"]):
        index.add_event(make_scan(person_id=person, scanned_at=T0 + timedelta(minutes=i)))
    index.add_event(make_scan(person_id="p-3", scanned_at=T0 + timedelta(hours=3)))
    index.add_event(make_scan(person_id="p-1", scanned_at=T0 + timedelta(hours=3, minutes=2)))
    index.settle()
    result = trace(
        "p-index", T0 - timedelta(hours=1), T0 + timedelta(hours=4), stores=index,
        policy=ContactPolicy(depth=2),
    )  # fmt: skip
    assert {c.person_id: c.degree for c in result.contacts} == {"p-1": 1, "p-2": 1, "p-3": 2}
    graph = contact_graph(result)
    assert graph.count("<circle") == 4 and ">p-3<" in graph
    timeline = encounter_timeline(result, ZoneInfo("Asia/Shanghai"))
    assert timeline.count("<circle") == sum(len(c.times) for c in result.contacts)


def test_escalated_alerts_lead_the_queue_and_filter_by_status() -> None:
    paged, escalated, warning = alert(n=2), alert(n=1), alert(severity="warning", n=3)
    board = fold([paged, escalated, warning], [])
    board.apply(page(paged, "attempt", officer_id="officer-a", channel="webhook", attempt=1))
    board.apply(page(escalated, "escalated", officer_id="officer-b", step=1))
    order = [r.alert_id for r in board.visible(lambda _s: True, Filters())]
    assert order == [escalated.alert_id, paged.alert_id, warning.alert_id]
    only = board.visible(lambda _s: True, Filters(status="escalated"))
    assert [r.alert_id for r in only] == [escalated.alert_id]


def test_each_site_has_its_time_zone(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from scantrail.settings import ConsoleSettings

    monkeypatch.setenv("SCANTRAIL_CONSOLE_SITE_TIMEZONES", '{"site-ur": "Asia/Urumqi"}')
    settings = ConsoleSettings()
    assert settings.zone_name("site-ur") == "Asia/Urumqi"
    assert settings.zone_name("site-a") == "Asia/Shanghai"
    assert (settings.host, settings.port) == ("127.0.0.1", 8480)  # loopback by default
