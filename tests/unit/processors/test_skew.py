from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processors.skew import MAX_AHEAD, clock_skew_reason

NOW = datetime(2020, 2, 10, 8, 0, tzinfo=UTC)


def test_times_up_to_the_tolerance_ahead_are_accepted() -> None:
    assert clock_skew_reason(NOW + MAX_AHEAD, NOW) is None
    assert clock_skew_reason(NOW - timedelta(hours=5), NOW) is None  # late, not skewed


def test_a_time_past_the_tolerance_is_refused_with_a_reason() -> None:
    reason = clock_skew_reason(NOW + MAX_AHEAD + timedelta(seconds=1), NOW)
    assert reason is not None and reason.startswith("clock skew")
