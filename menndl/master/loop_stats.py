"""What the master loop measures about itself and its workers: CPU per turn, stalls, busy and idle time."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

STALL_SECONDS = 0.01  # a turn of the loop this long is counted as a stall (workers that finish meanwhile wait)


@dataclass
class LoopStats:
    """Counters of one run of the master loop; `SearchResult` reports them."""

    master_seconds: float = 0.0  # CPU seconds the master spent outside waiting for messages
    longest_turn: float = 0.0  # wall seconds of the longest turn (a stall every worker may wait on)
    stalls: int = 0  # turns longer than STALL_SECONDS
    timeouts: int = 0  # tasks recorded ``timeout`` (their workers missed the deadline twice)
    all_ready_after: float = math.nan  # seconds from the start until every worker had reported ready
    worker_busy: dict[int, float] = field(default_factory=dict)  # seconds each rank spent evaluating
    worker_idle: dict[int, float] = field(default_factory=dict)  # seconds each rank waited for a task
    ranks_used: set[int] = field(default_factory=set)  # ranks that returned a result

    def add_cpu(self, since: float) -> None:
        """Count the master's CPU time from ``since`` (a `time.process_time` reading) to now."""
        self.master_seconds += time.process_time() - since

    def end_turn(self, cpu_since: float, wall_since: float) -> None:
        """One turn of the loop ended: CPU from ``cpu_since``, wall time from ``wall_since`` (`perf_counter`)."""
        self.master_seconds += time.process_time() - cpu_since
        turn = time.perf_counter() - wall_since
        if turn > STALL_SECONDS:
            self.stalls += 1
            if turn > self.longest_turn:
                self.longest_turn = turn

    def add_worker_times(self, worker: int, busy: float, idle: float) -> None:
        """A result reported how long its worker evaluated and how long it waited for the task."""
        self.worker_busy[worker] = self.worker_busy.get(worker, 0.0) + busy
        self.worker_idle[worker] = self.worker_idle.get(worker, 0.0) + idle
