"""Where the bulk restore starts reading a changelog partition (processors.changelog_restore)."""

from __future__ import annotations

from processors.changelog_restore import Partition, RestoreReport, start_offset


def test_an_empty_store_reads_from_the_first_record_kept() -> None:
    assert start_offset(None, low=0, high=10) == 0
    assert start_offset(None, low=4, high=10) == 4  # compacted or deleted below 4


def test_a_store_reads_on_after_its_last_applied_record() -> None:
    assert start_offset(6, low=0, high=10) == 7


def test_a_store_behind_what_compaction_kept_reads_from_the_first_kept() -> None:
    assert start_offset(2, low=5, high=10) == 5


def test_a_store_up_to_date_or_of_an_empty_partition_reads_nothing() -> None:
    assert start_offset(9, low=0, high=10) is None
    assert start_offset(None, low=0, high=0) is None


def test_a_store_claiming_more_than_the_changelog_holds_is_left_to_faust() -> None:
    # A topic deleted and re-created under an old data dir: faust's consistency check reports it.
    assert start_offset(50, low=0, high=10) is None


def test_what_is_left_of_a_partition() -> None:
    part = Partition("t", 0, start=3, end=10, db=None, offset_key=b"k")
    assert part.remaining == 7
    part.applied = 8
    assert part.remaining == 1


def test_the_rate_of_an_instant_restore_is_zero_not_a_division_error() -> None:
    assert RestoreReport(records=0, seconds=0.0).records_per_second == 0.0
    assert RestoreReport(records=100, seconds=2.0).records_per_second == 50.0
