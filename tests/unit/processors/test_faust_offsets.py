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
