"""processors.faust_offsets: what may be committed after ``committed``, and which lost records to fetch again."""

from __future__ import annotations

from processors.faust_offsets import HeadWatch, head_is_acked, waiting_on_lost_records


def test_a_run_starting_at_the_committed_offset_may_be_committed() -> None:
    assert head_is_acked([5, 6, 7], committed=5)


def test_one_unacked_record_at_the_committed_offset_holds_the_commit_back() -> None:
    # faust's own check (min(acked) - committed > 1) lets exactly this through.
    assert not head_is_acked([6, 7], committed=5)


def test_a_partition_read_from_offset_zero_is_checked_too() -> None:
    # faust skips its check when the committed offset is 0 (falsy).
    assert not head_is_acked([3, 4], committed=0)
    assert head_is_acked([0, 1], committed=0)


def test_nothing_is_committed_while_the_partition_start_is_unknown() -> None:
    assert not head_is_acked([0, 1, 2], committed=None)
    assert not head_is_acked([], committed=0)


def test_a_hole_at_the_head_that_no_agent_holds_is_waiting_on_lost_records() -> None:
    # Offsets 5..9 were fetched past and dropped; 10.. were delivered and acknowledged.
    waiting = waiting_on_lost_records({"t0": 5}, {"t0": [10, 11]}, {"t0": 12}, held={})
    assert waiting == {"t0": 5}


def test_a_record_still_in_flight_below_the_acknowledged_ones_is_not_lost() -> None:
    assert waiting_on_lost_records({"t0": 5}, {"t0": [10, 11]}, {"t0": 12}, {"t0": 5}) == {}
    # In flight, but only above the first acknowledged offset: the hole is still lost.
    assert waiting_on_lost_records({"t0": 5}, {"t0": [10]}, {"t0": 12}, {"t0": 11}) == {"t0": 5}


def test_a_partition_with_records_and_nothing_delivered_is_waiting() -> None:
    assert waiting_on_lost_records({"t0": 5}, {}, {"t0": 9}, {}) == {"t0": 5}
    assert waiting_on_lost_records({"t0": 5}, {}, {"t0": 9}, {"t0": 6}) == {}


def test_caught_up_unknown_or_acknowledged_heads_wait_on_nothing() -> None:
    committed = {"caught-up": 9, "unknown-end": 3, "start-unknown": None, "acked": 4}
    acked = {"acked": [4, 5]}
    ends = {"caught-up": 9, "unknown-end": None, "start-unknown": 7, "acked": 8}
    assert waiting_on_lost_records(committed, acked, ends, {}) == {}


def test_a_partition_is_sought_back_only_after_waiting_on_one_offset_for_every_look() -> None:
    watch = HeadWatch(looks=3, tries=2)
    assert watch.look({"t0": 5}) == ([], [])
    assert watch.look({"t0": 6}) == ([], [])  # the commit moved: the count starts again
    assert watch.look({"t0": 6}) == ([], [])
    assert watch.look({"t0": 6}) == (["t0"], [])
    assert watch.look({}) == ([], [])  # it came: nothing waits
    assert watch.look({"t1": 0}) == ([], [])


def test_a_record_that_never_comes_again_is_given_up_after_the_tries() -> None:
    watch = HeadWatch(looks=1, tries=2)
    assert watch.look({"t0": 5}) == (["t0"], [])
    assert watch.look({"t0": 5}) == (["t0"], [])
    assert watch.look({"t0": 5}) == ([], ["t0"])
    assert watch.look({"t0": 5}) == (["t0"], [])  # counted afresh after giving up
    assert watch.look({"t0": 8}) == (["t0"], [])
