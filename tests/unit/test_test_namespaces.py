"""Killed test runs leave topics behind; the next run must find and only find those."""

from __future__ import annotations

from tests.support import STALE_AFTER_S, new_test_namespace, stale_test_namespaces

NOW = 1_795_000_000.0  # November 2026


def test_a_fresh_namespace_is_not_stale_and_an_old_one_is() -> None:
    fresh = new_test_namespace(NOW)
    old = new_test_namespace(NOW - STALE_AFTER_S - 1)
    topics = [f"{fresh}scantrail.scans", f"{old}scantrail.scans", f"{old}worker-x-changelog"]
    assert stale_test_namespaces(topics, NOW) == {old}


def test_names_from_before_namespaces_carried_a_time_are_stale() -> None:
    assert stale_test_namespaces(["t0d2290dfae.scantrail.kiosks"], NOW) == {"t0d2290dfae."}


def test_other_topics_are_never_stale() -> None:
    topics = [
        "scantrail.scans",
        "__consumer_offsets",
        "demo-20261123064641.scantrail.alerts",
        "benchl5a3bd407.scantrail.scans",
        "tally.scantrail.scans",
    ]
    assert stale_test_namespaces(topics, NOW) == set()
