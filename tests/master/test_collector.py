"""The master loop's garbage-collector schedule (menndl.master.collector): off, freezes, an hourly full run."""

from __future__ import annotations

import gc
import weakref

from menndl.master import collector
from menndl.master.collector import master_collector


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_collector_is_off_in_the_loop_and_restored_after() -> None:
    assert gc.isenabled()
    with master_collector():
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0  # the start-up objects
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_survivors_are_frozen_after_enough_allocations(monkeypatch) -> None:
    monkeypatch.setattr(collector, "FREEZE_ALLOCATIONS", 1000)
    with master_collector() as schedule:
        frozen = gc.get_freeze_count()
        schedule.tick()
        assert schedule.freezes == 0  # nothing allocated yet
        kept = [[index] for index in range(2000)]
        schedule.tick()
        assert schedule.freezes == 1 and gc.get_freeze_count() >= frozen + len(kept)
        assert gc.get_count()[0] < 1000


def test_cyclic_garbage_is_reclaimed_hourly_and_at_the_end(monkeypatch) -> None:
    monkeypatch.setattr(collector, "FREEZE_ALLOCATIONS", 100)
    now = [0.0]
    with master_collector(clock=lambda: now[0]) as schedule:
        early = weakref.ref(_Cycle())
        [[index] for index in range(200)]
        schedule.tick()  # frozen, not collected: under an hour
        assert early() is not None and schedule.full_collections == 0
        now[0] = collector.FULL_COLLECTION_SECONDS
        late = weakref.ref(_Cycle())
        kept = [[index] for index in range(200)]
        schedule.tick()
        assert schedule.full_collections == 1 and early() is None and late() is None
        leftover = weakref.ref(_Cycle())
        assert kept
    gc.collect()
    assert leftover() is None

