from __future__ import annotations

from ingest.dedupe import ScanDeduplicator


def test_consecutive_frames_within_3_seconds_are_one_scan():
    dedupe = ScanDeduplicator()
    admitted = [dedupe.admit("ps-1", t / 10) for t in range(0, 100)]  # 10 s held at 10 fps
    assert admitted.count(True) == 1


def test_same_pass_after_a_gap_is_a_new_scan():
    dedupe = ScanDeduplicator()
    assert dedupe.admit("ps-1", 0.0)
    assert not dedupe.admit("ps-1", 2.9)
    assert dedupe.admit("ps-1", 6.0)


def test_different_passes_are_independent():
    dedupe = ScanDeduplicator()
    assert dedupe.admit("ps-1", 0.0)
    assert dedupe.admit("ps-2", 0.1)
    assert not dedupe.admit("ps-1", 0.2)


def test_many_passes_are_pruned_without_losing_recent_ones():
    dedupe = ScanDeduplicator()
    for i in range(200):
        dedupe.admit(f"ps-{i}", i * 10.0)
    assert not dedupe.admit("ps-199", 1991.0)
    assert len(dedupe._last_seen) < 70
