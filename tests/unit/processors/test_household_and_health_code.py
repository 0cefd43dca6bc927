"""The household outing quota and health-code colours, at their boundaries."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from processors.screener import Screener
from processors.screening import judge_outing, judge_scan
from processors.screening_policy import PolicyError, ScreeningPolicy, SitePolicies
from processors.screening_state import GateState, HouseholdState
from scantrail.cli import cli
from scantrail.contract import Alert, ScanEvent, encode
from tests.factories import BASE_TIME, make_scan

H = timedelta(hours=1)
SEC = timedelta(seconds=1)
POLICY = ScreeningPolicy()


def out(person: str, offset: timedelta, household: str | None = "hh-1", **kw: object) -> ScanEvent:
    return make_scan(
        person_id=person,
        pass_id=f"pass-{person}",
        direction="out",
        household_id=household,
        scanned_at=BASE_TIME + offset,
        **kw,
    )


def quota_alerts(
    scans: list[ScanEvent], policy: ScreeningPolicy | SitePolicies = POLICY
) -> list[Alert]:
    return [a for a in Screener(policy).run(scans) if a.kind == "outing_quota_exceeded"]


def test_two_members_within_two_days_break_the_quota() -> None:
    first, second = out("p-a", timedelta(0)), out("p-b", 47 * H)
    alerts = quota_alerts([first, second])
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.severity == "info"
    assert alert.person_id == "p-b"
    assert alert.evidence == sorted([first.event_id, second.event_id])
    assert alert.detail["household_id"] == "hh-1"
    assert alert.detail["persons"] == ["p-a", "p-b"]
    assert alert.detail["quota"] == 1
    assert alert.event_time == second.scanned_at


@pytest.mark.parametrize(
    ("gap", "raised"),
    [(48 * H - SEC, True), (48 * H, False), (48 * H + SEC, False)],
)
def test_window_is_open_at_exactly_48_hours(gap: timedelta, raised: bool) -> None:
    # (t − 48 h, t]: a scan exactly 48 h earlier is outside the window.
    assert bool(quota_alerts([out("p-a", timedelta(0)), out("p-b", gap)])) is raised


def test_the_same_person_twice_is_one_person() -> None:
    assert quota_alerts([out("p-a", timedelta(0)), out("p-a", 2 * H), out("p-a", 30 * H)]) == []


def test_in_scans_other_households_and_old_events_do_not_count() -> None:
    scans = [
        out("p-a", timedelta(0)),
        make_scan(person_id="p-b", direction="in", household_id="hh-1", scanned_at=BASE_TIME + H),
        out("p-c", 2 * H, household="hh-2"),
        out("p-d", 3 * H, household=None),  # an event from before household_id existed
    ]
    assert quota_alerts(scans) == []


def test_exempt_pass_kinds_and_refused_passes_are_not_counted() -> None:
    worker = out("p-b", H, pass_kind="worker")
    refused = out("p-c", 2 * H, pass_status="revoked")
    assert quota_alerts([out("p-a", timedelta(0)), worker, refused]) == []


def test_quota_and_window_are_per_site_policy() -> None:
    policy = SitePolicies.from_mapping(
        {"sites": {"site-2": {"outing_quota": 2, "outing_window": "24h"}}}
    )
    at_site_2 = [out(p, i * H, site_id="site-2") for i, p in enumerate(["p-a", "p-b"])]
    assert quota_alerts(at_site_2, policy) == []
    third = out("p-c", 3 * H, site_id="site-2")
    assert [a.person_id for a in quota_alerts([*at_site_2, third], policy)] == ["p-c"]
    # 24 h window there: a member 25 h later is alone in it
    assert quota_alerts([at_site_2[0], out("p-b", 25 * H, site_id="site-2")], policy) == []


def test_each_scan_alerts_once_and_a_redelivery_is_ignored() -> None:
    state = HouseholdState()
    a, b, c = out("p-a", timedelta(0)), out("p-b", H), out("p-c", 2 * H)
    assert judge_outing(state, a, POLICY) == []
    assert [x.person_id for x in judge_outing(state, b, POLICY)] == ["p-b"]
    assert judge_outing(state, b, POLICY) == []  # same event again
    third = judge_outing(state, c, POLICY)
    assert [x.person_id for x in third] == ["p-c"]
    assert len(third[0].evidence) == 3


def test_a_late_scan_raises_the_alert_of_the_later_one() -> None:
    state = HouseholdState()
    a, b = out("p-a", timedelta(0)), out("p-b", H)
    assert judge_outing(state, b, POLICY) == []
    late = judge_outing(state, a, POLICY)
    assert [(x.person_id, x.event_time) for x in late] == [("p-b", b.scanned_at)]
    assert late == quota_alerts([a, b])  # same alert (same id) as in order


def test_household_state_round_trips_and_stays_bounded() -> None:
    state = HouseholdState()
    for day in range(20):
        judge_outing(state, out("p-a", day * 24 * H), POLICY)
    assert len(state.outings) <= 4  # two windows of 48 h
    again = HouseholdState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state


def test_screener_snapshot_keeps_households() -> None:
    screener = Screener()
    screener.feed(out("p-a", timedelta(0)))
    restored = Screener.from_dict(json.loads(json.dumps(screener.to_dict())))
    assert [a.kind for a in restored.feed(out("p-b", H))] == ["outing_quota_exceeded"]


# --- health-code colour --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("colour", "expected"),
    [
        ("green", []),
        (None, []),
        ("yellow", [("health_code_yellow", "warning")]),
        ("red", [("health_code_red", "critical")]),
    ],
)
def test_health_code_colour_at_any_scan(
    colour: str | None, expected: list[tuple[str, str]]
) -> None:
    for direction in ("in", "out"):
        scan = make_scan(health_code=colour, direction=direction)
        alerts = judge_scan(GateState(), scan, POLICY)
        assert [(a.kind, a.severity) for a in alerts] == expected
        for alert in alerts:
            assert alert.evidence == [scan.event_id]
            assert alert.person_id == scan.person_id
            assert alert.detail["health_code"] == colour


def test_health_code_alerts_are_per_site_policy() -> None:
    policy = SitePolicies.from_mapping({"sites": {"site-park": {"health_codes_alerted": ["red"]}}})
    yellow_at_park = make_scan(health_code="yellow", site_id="site-park")
    assert judge_scan(GateState(), yellow_at_park, policy) == []
    assert [a.kind for a in judge_scan(GateState(), make_scan(health_code="yellow"), policy)] == [
        "health_code_yellow"
    ]
    with pytest.raises(PolicyError):
        SitePolicies.from_mapping({"default": {"health_codes_alerted": ["purple"]}})


def test_scantrail_screen_raises_the_new_kinds(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "day.jsonl"
    scans = [
        out("p-a", timedelta(0)),
        out("p-b", 5 * H),
        make_scan(person_id="p-r", health_code="red", scanned_at=BASE_TIME + 6 * H),
    ]
    old = make_scan(person_id="p-o", direction="out", scanned_at=BASE_TIME + 7 * H).to_dict()
    assert "household_id" not in old  # written as events were before the field existed
    path.write_text("\n".join([*(encode(s).decode() for s in scans), json.dumps(old)]) + "\n")
    result = CliRunner().invoke(cli, ["screen", str(path)])
    assert result.exit_code == 0, result.output
    kinds = [json.loads(line)["kind"] for line in result.stdout.splitlines()]
    assert kinds == ["outing_quota_exceeded", "health_code_red"]


def test_an_alert_keeps_its_id_when_a_member_scan_arrives_after_it() -> None:
    # Live, members' scans come from different partitions: b and c before a.
    a, b, c = out("p-a", timedelta(0)), out("p-b", H), out("p-c", 2 * H)
    state = HouseholdState()
    live = judge_outing(state, b, POLICY) + judge_outing(state, c, POLICY)
    live += judge_outing(state, a, POLICY)
    offline = quota_alerts([a, b, c])
    assert sorted(x.alert_id for x in live) == sorted(x.alert_id for x in offline)
    by_id = {x.alert_id: x for x in offline}
    for alert in live:  # the late scan may be missing from the evidence, nothing else
        assert set(alert.evidence) <= set(by_id[alert.alert_id].evidence)
        assert (alert.person_id, alert.event_time) == (
            by_id[alert.alert_id].person_id,
            by_id[alert.alert_id].event_time,
        )
