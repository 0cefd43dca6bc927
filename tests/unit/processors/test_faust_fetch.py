"""How a bounded poll is split between buffered partitions (processors.faust_fetch)."""

from __future__ import annotations

from processors import faust_fetch


def test_shares_split_the_bound_evenly_and_add_up_to_it() -> None:
    assert faust_fetch.shares(500, 4) == [125] * 4
    assert faust_fetch.shares(40, 3) == [14, 13, 13]
    assert faust_fetch.shares(2, 5) == [1, 1, 0, 0, 0]
    assert faust_fetch.shares(500, 0) == []
    assert all(sum(faust_fetch.shares(b, n)) == b for b in (1, 7, 500) for n in range(1, 40))


def test_a_fetch_after_records_waits_for_more_and_one_after_none_waits_for_any() -> None:
    flow = faust_fetch.FetchFlow(min_bytes=16384, max_wait_ms=10, idle_wait_ms=1500)
    assert flow.next_fetch(True) == (16384, 10)
    assert flow.next_fetch(False) == (1, 1500)
    # fetch_min_bytes=1 is faust's own behaviour: one byte either way.
    assert faust_fetch.FetchFlow(1, 10, 1500).next_fetch(True) == (1, 10)
