"""Routing: duty hours, who is paged for which severity, escalation order, roster errors."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from scantrail.contract import Alert, PageRecord
from sinks.routing import (
    DutyRange,
    Ledger,
    Officer,
    Page,
    Queue,
    RosterError,
    Skip,
    decide,
    escalation_due,
    escalation_order,
    next_page,
    parse_hours,
    parse_roster,
)

ROOT = Path(__file__).resolve().parents[3]
SHANGHAI = timezone(timedelta(hours=8))


def at(hhmm: str) -> datetime:
    """An instant on 10 Feb 2020 at a Shanghai wall-clock time."""
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime(2020, 2, 10, h, m, tzinfo=SHANGHAI)


def officer(hours: str | None, **kw: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": kw.pop("id", "o1"), "email": "o@example.org", **kw}
    if hours is not None:
        entry["hours"] = hours
    return entry


def roster(*officers: dict[str, Any], site: str = "site-1") -> Any:
    return parse_roster({"sites": {site: list(officers)}})


def alert(severity: str = "critical", site: str = "site-1") -> Alert:
    return Alert(
        alert_id=f"fever_confirmed:{severity}",
        kind="fever_confirmed",
        severity=severity,  # type: ignore[arg-type]
        site_id=site,
        event_time=at("09:00"),
        raised_at=at("09:00"),
        evidence=["t1"],
    )


# --- duty hours --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "when", "on"),
    [
        ("08:00-20:00", "08:00", True),  # start included
        ("08:00-20:00", "19:59", True),
        ("08:00-20:00", "20:00", False),  # end excluded
        ("08:00-20:00", "07:59", False),
        ("20:00-08:00", "20:00", True),  # overnight
        ("20:00-08:00", "23:59", True),
        ("20:00-08:00", "00:00", True),
        ("20:00-08:00", "07:59", True),
        ("20:00-08:00", "08:00", False),
        ("20:00-08:00", "12:00", False),
        ("00:00-24:00", "00:00", True),
        ("00:00-24:00", "23:59", True),
        ("18:00-24:00", "23:59", True),
        ("18:00-24:00", "00:00", False),
        ("07:00-12:00,14:00-22:00", "13:00", False),
        ("07:00-12:00,14:00-22:00", "14:30", True),
    ],
)
def test_on_duty_hours_with_boundaries_and_overnight_ranges(
    hours: str, when: str, on: bool
) -> None:
    o = roster(officer(hours)).officers("site-1")[0]
    assert o.on_duty(at(when)) is on


def test_hours_are_local_to_the_officer_timezone_not_the_instant_offset() -> None:
    o = roster(officer("08:00-20:00")).officers("site-1")[0]
    # 00:30 UTC is 08:30 in Shanghai: on duty, whichever offset the instant carries.
    assert o.on_duty(datetime(2020, 2, 10, 0, 30, tzinfo=UTC))
    assert not o.on_duty(datetime(2020, 2, 10, 12, 30, tzinfo=UTC))  # 20:30 in Shanghai
    utc_officer = roster(officer("08:00-20:00", timezone="UTC")).officers("site-1")[0]
    assert utc_officer.on_duty(datetime(2020, 2, 10, 12, 30, tzinfo=UTC))


def test_no_hours_means_always_on_duty_and_naive_instants_are_refused() -> None:
    o = Officer(id="o", hours=())
    assert o.on_duty(at("03:00"))
    with pytest.raises(ValueError, match="timezone-aware"):
        o.on_duty(datetime(2020, 2, 10, 3, 0))


def test_parse_hours_accepts_a_yaml_list() -> None:
    assert parse_hours(["20:00-08:00"], "x") == (DutyRange(time(20), time(8)),)


# --- severity decisions -----------------------------------------------------------


def test_critical_pages_the_first_officer_on_duty_in_escalation_order() -> None:
    r = roster(
        officer("08:00-20:00", id="day"),
        officer("20:00-08:00", id="night"),
        officer(None, id="always"),
    )
    assert decide(alert(), r, at("10:00")) == Page(r.officers("site-1")[0], 0, True)
    night = decide(alert(), r, at("23:00"))
    assert isinstance(night, Page) and night.officer.id == "night" and night.on_duty


def test_critical_with_nobody_on_duty_still_pages_the_first_officer() -> None:
    r = roster(officer("08:00-09:00", id="a"), officer("09:00-10:00", id="b"))
    page = decide(alert(), r, at("03:00"))
    assert isinstance(page, Page) and page.officer.id == "a" and not page.on_duty


@pytest.mark.parametrize(("severity", "expected"), [("warning", Queue("site-1")), ("info", Skip)])
def test_warnings_are_queued_and_info_is_skipped(severity: str, expected: object) -> None:
    result = decide(alert(severity), roster(officer(None)), at("10:00"))
    if isinstance(expected, type):
        assert isinstance(result, expected)
    else:
        assert result == expected


def test_an_alert_for_a_site_without_officers_is_skipped_with_the_reason() -> None:
    result = decide(alert(site="site-9"), roster(officer(None)), at("10:00"))
    assert isinstance(result, Skip) and "site-9" in result.reason


def test_the_fallback_site_covers_sites_without_their_own_entry() -> None:
    r = roster(officer(None, id="desk"), site="*")
    page = decide(alert(site="site-9"), r, at("10:00"))
    assert isinstance(page, Page) and page.officer.id == "desk"


# --- escalation -------------------------------------------------------------------------


def test_escalation_order_puts_on_duty_officers_first_keeping_roster_order() -> None:
    r = roster(
        officer("20:00-08:00", id="a"),
        officer("08:00-20:00", id="b"),
        officer("20:00-08:00", id="c"),
        officer("08:00-20:00", id="d"),
    )
    assert [o.id for o in escalation_order(r, "site-1", at("10:00"))] == ["b", "d", "a", "c"]
    assert [o.id for o in escalation_order(r, "site-1", at("22:00"))] == ["a", "c", "b", "d"]


def test_next_page_skips_officers_already_paged_and_ends_with_none() -> None:
    r = roster(officer(None, id="a"), officer(None, id="b"))
    page = next_page(r, "site-1", ["a"], 1, at("10:00"))
    assert page is not None and (page.officer.id, page.step) == ("b", 1)
    assert next_page(r, "site-1", ["a", "b"], 2, at("10:00")) is None


def test_escalation_is_due_one_ack_timeout_after_the_step_started() -> None:
    assert escalation_due(at("10:00"), timedelta(minutes=5)) == at("10:05")


# --- the ledger ---------------------------------------------------------------------------


def rec(action: str, **kw: Any) -> PageRecord:
    fields: dict[str, Any] = {"alert_id": "a:1", "site_id": "site-1", "severity": "critical"}
    fields.update({"at": at("10:00"), "action": action, **kw})
    return PageRecord(**fields)


def test_ledger_marks_an_alert_handled_only_once_its_outcome_is_recorded() -> None:
    ledger = Ledger()
    ledger.apply(rec("attempt", officer_id="a", channel="webhook", attempt=1))
    ledger.apply(rec("failed", officer_id="a", channel="webhook", attempt=1))
    assert not ledger.is_handled("a:1")  # a crash here must page again
    ledger.apply(rec("delivered", officer_id="a", channel="webhook", attempt=2))
    assert ledger.is_handled("a:1")
    state = ledger.alerts["a:1"]
    assert state.open and state.step_delivered and state.paged == ["a"]


def test_ledger_tracks_escalation_steps_acks_and_queues() -> None:
    ledger = Ledger()
    ledger.apply(rec("attempt", officer_id="a", attempt=1, at=at("10:00")))
    ledger.apply(rec("delivered", officer_id="a", attempt=1))
    ledger.apply(rec("escalated", officer_id="b", step=1, at=at("10:05")))
    state = ledger.alerts["a:1"]
    assert (state.step, state.officer_id, state.step_started) == (1, "b", at("10:05"))
    assert not state.step_delivered and state.paged == ["a", "b"]
    ledger.apply(rec("acknowledged", officer_id="b", step=1))
    assert not state.open and ledger.open_pages() == []

    ledger.apply(rec("queued", alert_id="w:1", severity="warning", at=at("09:00")))
    ledger.apply(rec("queued", alert_id="w:2", severity="warning", at=at("08:00")))
    assert [s.alert_id for s in ledger.queue("site-1")] == ["w:2", "w:1"]
    ledger.apply(rec("acknowledged", alert_id="w:2", severity="warning", officer_id="a"))
    assert [s.alert_id for s in ledger.queue("site-1")] == ["w:1"]
    assert ledger.queue("site-2") == []


# --- roster validation ----------------------------------------------------------------------


def test_the_shipped_example_roster_is_valid() -> None:
    data = yaml.safe_load((ROOT / "deploy" / "roster.example.yaml").read_text())
    r = parse_roster(data)
    assert r.officers("any-other-site")[0].id == "district-duty-desk"
    webhooks = [o.webhook for site in r.sites.values() for o in site if o.webhook]
    assert webhooks and all(w.secret_env or w.secret_file for w in webhooks)


HOOK = {"url": "https://h.example.org/x", "secret_env": "PAGER_KEY"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "'sites' mapping"),
        ({"sites": {"s": []}}, "non-empty list"),
        ({"sites": {"s": [{"id": "a"}]}}, "at least one channel"),
        ({"sites": {"s": [{"id": "a b", "email": "a@x.org"}]}}, "id must be"),
        ({"sites": {"s": [officer("8-20")]}}, "not 'HH:MM-HH:MM'"),
        ({"sites": {"s": [officer("08:00-25:00")]}}, "valid time of day"),
        ({"sites": {"s": [officer("08:00-08:00")]}}, "is empty"),
        ({"sites": {"s": [officer(None, timezone="Mars/Olympus")]}}, "unknown timezone"),
        ({"sites": {"s": [officer(None, email="nope")]}}, "not an address"),
        ({"sites": {"s": [officer(None), officer(None)]}}, "repeat"),
        ({"sites": {"s": [officer(None, pager="x")]}}, "unknown field"),
        ({"sites": {"s": [officer(None, webhook={**HOOK, "secret": "x"})]}}, "never put a secret"),
        (
            {"sites": {"s": [officer(None, webhook={"url": HOOK["url"]})]}},
            "exactly one of secret_env",
        ),
        (
            {"sites": {"s": [officer(None, webhook={**HOOK, "secret_file": "/k"})]}},
            "exactly one of secret_env",
        ),
        ({"sites": {"s": [officer(None, webhook={**HOOK, "url": "ftp://x"})]}}, "http"),
        (
            {"sites": {"s": [officer(None, webhook={**HOOK, "secret_env": "a-b"})]}},
            "environment variable name",
        ),
        ({"sites": {}, "escalate": 1}, "unknown top-level"),
    ],
)
def test_roster_errors_say_what_is_wrong_and_where(data: object, message: str) -> None:
    with pytest.raises(RosterError, match=message):
        parse_roster(data)


def test_roster_error_names_site_and_officer() -> None:
    with pytest.raises(RosterError, match=r"site gate-2, officer 2 \(b\)"):
        parse_roster({"sites": {"gate-2": [officer(None, id="a"), officer("nope", id="b")]}})
