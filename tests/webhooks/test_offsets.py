"""Offset bookkeeping: records finish out of order, only the finished prefix is committed."""

from __future__ import annotations

from mandate_vault_worker.offsets import OffsetTracker, PartitionOffsets


def test_only_the_longest_finished_prefix_is_committable() -> None:
    offsets = PartitionOffsets()
    for offset in range(10, 16):
        offsets.start(offset)
    assert offsets.committable() is None
    for offset in (12, 15, 11):  # out of order, with the first still in flight
        offsets.finished(offset)
    assert offsets.committable() is None  # 10 is not done: nothing may be committed
    offsets.finished(10)
    assert offsets.committable() == 13  # 10..12 done; 13 in flight holds 14 and 15 back
    offsets.committed(13)
    assert offsets.committable() is None  # nothing new since the last commit
    offsets.finished(14)
    assert offsets.committable() is None
    offsets.finished(13)
    assert offsets.committable() == 16
    assert offsets.in_flight == 0


def test_gaps_in_offsets_are_normal() -> None:
    offsets = PartitionOffsets()
    for offset in (3, 7, 8):  # compacted topics and transaction markers leave gaps
        offsets.start(offset)
    offsets.finished(8)
    offsets.finished(3)
    assert offsets.committable() == 4
    offsets.finished(7)
    assert offsets.committable() == 9


def test_a_record_seen_again_is_not_started_again() -> None:
    offsets = PartitionOffsets()
    assert offsets.start(5)
    assert offsets.start(6)
    offsets.finished(5)
    assert not offsets.start(5)  # done already (a re-fetch): not handled twice
    assert not offsets.start(6)  # in flight
    assert offsets.start(7)
    assert offsets.in_flight == 2
    offsets.finished(6)
    offsets.finished(7)
    assert offsets.committable() == 8


def test_tracker_commits_per_partition_and_forgets_revoked_ones() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    a, b = tracker.partition("a"), tracker.partition("b")
    for offset in range(3):
        a.start(offset)
        b.start(offset)
    a.finished(0)
    b.finished(1)
    assert tracker.commits() == {"a": 1}  # b's first record is still in flight
    tracker.committed({"a": 1})
    assert tracker.commits() == {}
    assert tracker.in_flight(["a", "b"]) == 5
    b.finished(0)
    assert tracker.commits(["b"]) == {"b": 2}
    tracker.forget(["b"])
    b.finished(2)  # a record of a revoked partition finishing later changes nothing here
    assert tracker.commits() == {}
    assert tracker.partition("b").committable() is None  # a fresh start if it comes back
