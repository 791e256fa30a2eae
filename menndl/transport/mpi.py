"""MPI transport: rank 0 is the master, every other rank a worker.

Static launch only (``mpiexec``/``srun``), never ``MPI_Comm_spawn``.  Idle
ranks poll with ``Iprobe`` and sleep with exponential backoff instead of
blocking in ``recv``: MPICH spins inside a blocking receive, and a spinning
idle rank steals the CPU from the rank that trains.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from menndl.transport.base import MasterTransport, Message, WorkerChannel

TAG_TASK = 1
TAG_RESULT = 2
MIN_SLEEP = 0.0005
MASTER_MAX_SLEEP = 0.005  # a result is seen at most 5 ms late: well inside one queued task
WORKER_MAX_SLEEP = 0.01  # an idle worker: 100 probes a second, well under 1% of a core
CLOSE_TIMEOUT = 10.0
QUICK_WAITS = 4  # yields before the first timed sleep


class Backoff:
    """Sleeps that double from ``low`` up to ``high`` seconds; `reset` after work.

    The first ``quick`` waits after a reset only yield the CPU (``sleep(0)``): a
    message that is on its way (an MPI progress step away) is then picked up at
    once instead of after ``low`` seconds, which at 100 ms tasks and a
    thousand results a second is most of the turnaround.  Bounded, so an idle
    rank still sleeps.
    """

    def __init__(self, low: float = MIN_SLEEP, high: float = WORKER_MAX_SLEEP, quick: int = QUICK_WAITS) -> None:
        self.low, self.high, self.delay = low, high, low
        self.quick = self._quick_left = quick

    def sleep(self, deadline: float | None = None) -> None:
        """Sleep the current delay (never past ``deadline``, a monotonic time) and double it."""
        if self._quick_left > 0:
            self._quick_left -= 1
            time.sleep(0)
            return
        delay = self.delay
        if deadline is not None:
            delay = max(0.0, min(delay, deadline - time.monotonic()))
        time.sleep(delay)
        self.delay = min(self.delay * 2, self.high)

    def reset(self) -> None:
        """Start again from the shortest sleep."""
        self.delay = self.low
        self._quick_left = self.quick


HOST_BYTES = 256  # a node's name, as exchanged by node_ranks (MPI_MAX_PROCESSOR_NAME is 256 in MPICH and Open MPI)


def node_ranks(comm: Any) -> list[int]:
    """World ranks that share this rank's node (same processor name), in rank order (collective over ``comm``).

    A non-blocking all-gather polled with sleeps, not ``Split_type``: MPICH
    spins inside blocking collectives, and at start-up every worker would spin
    there until the last rank arrives, starving the master (on 2 cores with
    128 ranks the master left that collective 40 ms after the workers, and
    they waited for their first task).
    """
    import numpy as np
    from mpi4py import MPI

    name = MPI.Get_processor_name().encode("utf-8")[:HOST_BYTES]
    mine = np.zeros(HOST_BYTES, dtype=np.uint8)
    mine[: len(name)] = np.frombuffer(name, dtype=np.uint8)
    everyone = np.empty((comm.Get_size(), HOST_BYTES), dtype=np.uint8)
    request = comm.Iallgather(mine, everyone)
    backoff = Backoff(high=WORKER_MAX_SLEEP)
    while not request.Test():
        backoff.sleep()
    return [rank for rank in range(comm.Get_size()) if np.array_equal(everyone[rank], mine)]


class MPIMasterTransport(MasterTransport):
    """The master's end on rank 0 of ``comm``; the workers are ranks 1..size-1."""

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self._comm = comm
        self._pending: list[Any] = []
        self._workers = list(range(1, comm.Get_size()))
        self._backoff = Backoff(high=MASTER_MAX_SLEEP)
        self._discarded: set[int] = set()
        self._closed = False

    @property
    def description(self) -> str:
        return f"mpi: {len(self._workers)} worker ranks"

    def start(self, setup: Mapping[str, Any]) -> list[int]:
        for worker in self._workers:
            self.send(worker, setup)
        node_ranks(self._comm)  # the workers' node-layout collective
        return list(self._workers)

    def send(self, worker: int, message: Mapping[str, Any] | None) -> None:
        payload = None if message is None else dict(message)
        self._pending.append(self._comm.isend(payload, dest=worker, tag=TAG_TASK))
        if len(self._pending) > 2 * len(self._workers) + 16:
            self._pending = [request for request in self._pending if not request.Test()]

    def receive(self, timeout: float) -> tuple[int, Message] | None:
        status = self._mpi.Status()
        deadline = time.monotonic() + timeout
        while True:
            if self._comm.Iprobe(source=self._mpi.ANY_SOURCE, tag=TAG_RESULT, status=status):
                self._backoff.reset()
                source = status.Get_source()
                return source, self._comm.recv(source=source, tag=TAG_RESULT)
            if time.monotonic() >= deadline:
                return None
            self._backoff.sleep(deadline)

    def discard(self, worker: int) -> None:
        self._discarded.add(worker)

    def close(self, abandon: bool = False) -> None:
        """Send every worker rank not discarded the stop message.

        Ranks cannot be stopped from here: a rank still training reads the
        message after its task.  Sends to a dead rank never complete, so the
        wait for them is bounded by CLOSE_TIMEOUT.
        """
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            if worker not in self._discarded:
                self.send(worker, None)
        deadline = time.monotonic() + (0.0 if abandon else CLOSE_TIMEOUT)
        backoff = Backoff(high=MASTER_MAX_SLEEP)
        while not self._mpi.Request.Testall(self._pending) and time.monotonic() < deadline:
            backoff.sleep(deadline)
        self._pending.clear()


class MPIWorkerChannel(WorkerChannel):
    """A worker rank's end: messages to and from rank 0."""

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self._comm = comm
        self._node: tuple[int, int] | None = None
        self._backoff = Backoff(high=WORKER_MAX_SLEEP)

    @property
    def rank(self) -> int:
        return self._comm.Get_rank()

    @property
    def local_rank(self) -> int:
        return self._node_layout()[0]

    @property
    def local_size(self) -> int:
        return self._node_layout()[1]

    def _node_layout(self) -> tuple[int, int]:
        """(index among this node's workers, workers on this node), from a collective.

        Called after the setup message arrived, when the master joins the same
        collective in `MPIMasterTransport.start`.
        """
        if self._node is None:
            workers = [rank for rank in node_ranks(self._comm) if rank != 0]
            self._node = (workers.index(self._comm.Get_rank()), len(workers))
        return self._node

    def receive(self) -> Message | None:
        while not self._comm.Iprobe(source=0, tag=TAG_TASK):
            self._backoff.sleep()
        self._backoff.reset()
        return self._comm.recv(source=0, tag=TAG_TASK)

    def send(self, message: Mapping[str, Any]) -> None:
        request = self._comm.isend(dict(message), dest=0, tag=TAG_RESULT)
        backoff = Backoff(high=WORKER_MAX_SLEEP)
        while not request.Test():
            backoff.sleep()
