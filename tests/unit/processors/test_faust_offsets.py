"""The head check of processors.faust_offsets: what may be committed after ``committed``."""

from __future__ import annotations

from processors.faust_offsets import head_is_acked


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


def test_records_in_order_are_delivered() -> None:
    from processors.faust_offsets import FetchContinuity

    c = FetchContinuity()
    c.start("tp", 10)
    assert [c.check("tp", o) for o in (10, 11, 12)] == [FetchContinuity.DELIVER] * 3
    assert c.owed["tp"] == 13


def test_a_jump_past_the_owed_offset_is_fetched_again_not_delivered() -> None:
    from processors.faust_offsets import FetchContinuity

    c = FetchContinuity()
    c.start("tp", 890)
    c.next_batch()
    # The fetch hands out 1030.. although 890..1029 never reached the agents.
    assert c.check("tp", 1030) == FetchContinuity.REFETCH
    assert c.owed["tp"] == 890  # the seek goes back here
    assert c.check("tp", 1031) == FetchContinuity.SKIP  # the rest of that batch
    c.next_batch()
    assert c.check("tp", 890) == FetchContinuity.DELIVER  # the records come again, in order
    assert c.check("tp", 891) == FetchContinuity.DELIVER


def test_records_that_are_gone_are_accepted_after_the_seek_back_failed() -> None:
    from processors.faust_offsets import FetchContinuity

    c = FetchContinuity()
    c.start("tp", 5)
    c.next_batch()
    assert c.check("tp", 100) == FetchContinuity.REFETCH
    c.next_batch()
    assert c.check("tp", 100) == FetchContinuity.SKIP  # may still be the old fetch
    c.next_batch()
    assert c.check("tp", 100) == FetchContinuity.GONE  # retention removed 5..99
    assert c.check("tp", 101) == FetchContinuity.DELIVER


def test_a_re_delivery_after_a_seek_back_and_an_unknown_start_are_delivered() -> None:
    from processors.faust_offsets import FetchContinuity

    c = FetchContinuity()
    assert c.check("tp", 42) == FetchContinuity.DELIVER  # nothing known: faust's rules apply
    assert c.check("tp", 40) == FetchContinuity.DELIVER  # faust sought back itself
    assert c.owed["tp"] == 41
    c.start("tp", None)
    assert c.check("tp", 7) == FetchContinuity.DELIVER
