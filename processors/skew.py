"""Events stamped in the future: a kiosk whose clock runs ahead.

A reading stamped an hour ahead would drag the watermark forward and close
every re-measure window early, so the worker refuses it (dead letter with the
reason, counted) instead of judging it. A clock running *behind* is
indistinguishable from a kiosk catching up after an outage, and is judged.
"""

from __future__ import annotations

from datetime import datetime, timedelta

MAX_AHEAD = timedelta(minutes=10)


def clock_skew_reason(
    event_time: datetime, now: datetime, max_ahead: timedelta = MAX_AHEAD
) -> str | None:
    """Why an event cannot be judged yet, or None when its time is plausible."""
    ahead = event_time - now
    if ahead > max_ahead:
        return (
            f"clock skew: event time {event_time.isoformat()} is {ahead} ahead of the "
            f"worker's clock (tolerance {max_ahead})"
        )
    return None
