"""The replay view's pure parts: the form, the summary of trails, the job registry's limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scantrail.console.replays import (
    KEEP_S,
    MAX_RUNNING,
    ReplayCancelled,
    ReplayJobs,
    parse_request,
    summarize,
)
from tests.factories import make_scan

TZ = ZoneInfo("Asia/Shanghai")
T = datetime(2020, 2, 10, 8, 0, tzinfo=UTC)


def test_the_form_is_read_in_the_sites_zone_and_checked() -> None:
    req = parse_request(
        {"since": "2020-02-10T08:00", "until": "2020-02-11T08:00", "site": " site-a ",
         "persons": "p-1, p-2 p-1", "window": "30", "depth": "2", "same_kiosk": "1"},
        TZ,
    )  # fmt: skip
    assert req.since == datetime(2020, 2, 10, 0, 0, tzinfo=UTC)
    assert (req.site, req.persons, req.window_minutes) == ("site-a", ("p-1", "p-2"), 30.0)
    assert req.policy.depth == 2 and req.policy.same_kiosk
    bad = [
        {"since": "yesterday", "until": "2020-02-11T08:00"},
        {"since": "2020-02-12T08:00", "until": "2020-02-11T08:00"},
        {"since": "2020-01-01T08:00", "until": "2020-02-11T08:00"},  # over 31 days
        {"since": "2020-02-10T08:00", "until": "2020-02-11T08:00", "window": "500"},
        {"since": "2020-02-10T08:00", "until": "2020-02-11T08:00", "persons": "13800138000"},
        {"since": "2020-02-10T08:00", "until": "2020-02-11T08:00",
         "persons": " ".join(f"p-{i}" for i in range(11))},
    ]  # fmt: skip
    for form in bad:
        with pytest.raises(ValueError) as caught:
            parse_request(form, TZ)
        assert "13800138000" not in str(caught.value)  # a phone number is never echoed


def test_summary_per_site_and_per_person() -> None:
    scans = [
        make_scan(person_id="p-1", site_id="site-a", scanned_at=T),
        make_scan(person_id="p-1", site_id="site-b", scanned_at=T + timedelta(hours=1)),
        make_scan(person_id="p-2", site_id="site-a", kiosk_id="k-2", scanned_at=T),
        make_scan(person_id="p-3", site_id="site-a", scanned_at=T + timedelta(hours=2)),
    ]
    s = summarize(scans)
    assert (s["scans"], s["persons"], s["sites"], s["kiosks"]) == (4, 3, 2, 3)
    assert (s["scans_per_person_max"], s["persons_at_several_sites"]) == (2, 1)
    assert [(r["site"], r["scans"], r["persons"]) for r in s["by_site"]] == [
        ("site-a", 3, 3),
        ("site-b", 1, 1),
    ]
    assert s["by_site"][0]["last"] == T + timedelta(hours=2)
    assert summarize([])["scans_per_person_max"] == 0


def test_one_replay_per_person_two_in_all_and_a_stop_cancels_them() -> None:
    req = parse_request({"since": "2020-02-10T08:00", "until": "2020-02-10T09:00"}, TZ)
    jobs = ReplayJobs()
    first = jobs.new("zhao", req, 0.0)
    assert first is not None and jobs.new("zhao", req, 1.0) is None
    assert jobs.new("qian", req, 1.0) is not None
    assert len(jobs.running()) == MAX_RUNNING and jobs.new("sun", req, 2.0) is None
    first.progress(10, 100)
    assert first.view()["done"] == 10 and first.view()["total"] == 100
    jobs.cancel_all()
    with pytest.raises(ReplayCancelled):
        first.progress(20, 100)
    first.state, first.finished = "failed", 10.0
    assert jobs.of("zhao") == [first]
    jobs.prune(10.0 + KEEP_S + 1)
    assert jobs.of("zhao") == []
