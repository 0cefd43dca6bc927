"""How a bounded poll is split between buffered partitions (processors.faust_fetch)."""

from __future__ import annotations

from processors import faust_fetch


def test_shares_split_the_bound_evenly_and_add_up_to_it() -> None:
    assert faust_fetch.shares(500, 4) == [125] * 4
    assert faust_fetch.shares(40, 3) == [14, 13, 13]
    assert faust_fetch.shares(2, 5) == [1, 1, 0, 0, 0]
    assert faust_fetch.shares(500, 0) == []
    assert all(sum(faust_fetch.shares(b, n)) == b for b in (1, 7, 500) for n in range(1, 40))
