"""MPI transport: rank 0 is the master, every other rank a worker.

Static launch only (``mpiexec``/``srun``), never ``MPI_Comm_spawn``.  Idle
ranks poll with ``Iprobe`` and sleep with exponential backoff instead of
blocking in ``recv``: MPICH spins inside a blocking receive, and a spinning
idle rank steals the CPU from the rank that trains.

Where the MPI stack has ULFM (`menndl.transport.rank_death`), a rank that
dies is reported to the master as a ``lost`` worker, like a dead process in
local mode: every call that may meet a dead rank (probe, receive, send, the
test of a send) is guarded, and no collective is ever used.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, NoReturn

from menndl.transport.base import MasterTransport, Message, WorkerChannel
from menndl.transport.rank_death import RankDeathSupport, acknowledge_failed_ranks, is_rank_failure, rank_death_support

TAG_TASK = 1
TAG_RESULT = 2
TAG_HELLO = 3  # worker -> master at start: the worker's node name
TAG_BYE = 4  # worker -> master under ULFM: the stop message arrived (the master may leave without MPI_Finalize)
MIN_SLEEP = 0.0005
MASTER_MAX_SLEEP = 0.005  # a result is seen at most 5 ms late: well inside one queued task
WORKER_MAX_SLEEP = 0.01  # an idle worker: 100 probes a second, well under 1% of a core
CLOSE_TIMEOUT = 10.0
HELLO_WAIT = 600.0  # seconds start() waits for every worker's hello; a later one gets its setup when it says hello
QUICK_WAITS = 4  # yields before the first timed sleep


def end_rank(status: int, support: RankDeathSupport) -> int:
    """End this rank with ``status``: under ULFM at once, without ``MPI_Finalize``; elsewhere return ``status``.

    Open MPI 5's ``MPI_Finalize`` ends with a fence over every process of the job (PMIx), and with
    a dead rank among them that fence can wait for ever: measured here, 1 run in about 8 of the
    three-dead-ranks test hung there after the library was complete. Under ULFM an exit without
    finalize is not a failure: ``mpirun`` returns the ranks' own status (0 when all exit 0, 3 when
    rank 0 exits 3). Call it only when this rank has nothing left to write.
    """
    if not support.survives:
        return status
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


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


def node_layouts(hosts: Mapping[int, str]) -> dict[int, tuple[int, int]]:
    """Each worker's (index among its node's workers, workers on its node), from the workers' node names.

    Point to point through the master instead of ``Split_type``: MPICH spins
    inside blocking collectives, so at start-up every worker would spin there
    until the last rank arrived, starving the master.  Workers wait for their
    layout sleeping, and need no collective at all.
    """
    by_host: dict[str, list[int]] = {}
    for worker in sorted(hosts):
        by_host.setdefault(hosts[worker], []).append(worker)
    return {worker: (index, len(ranks)) for ranks in by_host.values() for index, worker in enumerate(ranks)}


class MPIMasterTransport(MasterTransport):
    """The master's end on rank 0 of ``comm``; the workers are ranks 1..size-1."""

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self._comm = comm
        comm.Set_errhandler(MPI.ERRORS_RETURN)  # a dead rank raises here instead of ending the job (where ULFM lets it)
        self.rank_death: RankDeathSupport = rank_death_support(MPI.Get_library_version())
        self._dead: set[int] = set()
        self._lost: deque[tuple[int, Message]] = deque()  # what a rank's death produced, for `receive` to hand on
        self._pending: list[tuple[int, Any]] = []  # (worker, isend request) not yet complete
        self._workers = list(range(1, comm.Get_size()))
        self._backoff = Backoff(high=MASTER_MAX_SLEEP)
        self._discarded: set[int] = set()
        self._closed = False
        self._hosts: dict[int, str] = {}  # worker -> node name, from its hello
        self._setup: dict[str, Any] = {}
        self._awaiting_setup: set[int] = set(self._workers)  # workers neither sent their setup nor dead
        self._layouts: dict[int, tuple[int, int]] = {}  # node_layouts of the hellos so far (recomputed on a new one)
        self._held: dict[int, list[Any]] = {}  # messages for a worker not heard from yet, sent after its setup

    @property
    def description(self) -> str:
        return f"mpi: {len(self._workers)} worker ranks"

    @property
    def worker_count_hint(self) -> int | None:
        return len(self._workers)

    @property
    def fault_note(self) -> str | None:
        return self.rank_death.line

    def _on_error(self, error: Exception) -> None:
        """An MPI call failed: if a rank died (and this stack survives that), note the dead; else re-raise.

        Each dead rank is reported once, as ``(rank, {"type": "lost", ...})`` from `receive`, after any
        result it had finished sending (a rank that dies with its result on the wire either delivered
        it whole or not at all).
        """
        if not (self.rank_death.survives and is_rank_failure(error, self._mpi)):
            raise error
        if error.Get_error_class() == getattr(self._mpi, "ERR_REVOKED", None):  # type: ignore[attr-defined]
            raise RuntimeError("the MPI communicator was revoked (by a program other than menndl): the search "
                               "cannot go on; --resume continues it") from error  # fmt: skip
        for rank in sorted(acknowledge_failed_ranks(self._comm, self._mpi) - self._dead):
            self._dead.add(rank)
            self._awaiting_setup.discard(rank)
            self._held.pop(rank, None)
            self._lost.extend(self._delivered_by(rank))
            self._lost.append((rank, {"type": "lost", "host": self._hosts.get(rank, "?"),
                                      "error": f"rank {rank} died (MPI_ERR_PROC_FAILED)"}))  # fmt: skip
        self._pending = [(worker, request) for worker, request in self._pending if worker not in self._dead]

    def _delivered_by(self, rank: int) -> list[tuple[int, Message]]:
        """The results a dead rank had sent whole before it died."""
        delivered = []
        try:
            while self._comm.Iprobe(source=rank, tag=TAG_RESULT):
                delivered.append((rank, self._comm.recv(source=rank, tag=TAG_RESULT)))
        except self._mpi.Exception:
            pass  # the rest died with it
        return delivered

    def start(self, setup: Mapping[str, Any]) -> list[int]:
        """Wait until every worker said hello; each gets its setup, with its node layout, before anything else.

        Workers send their node name as they start (`MPIWorkerChannel`); the
        layout (`node_layouts`) rides in the setup, so no collective is needed.
        A worker's setup goes out right before its first task (`send`), so the
        task is there when the worker has built its evaluator: sent in a pass
        of their own, the setups delayed every first task by a pass over all
        workers (measured at 128 ranks: 12 ms per worker, 60% of all the
        waits of a 20-task run).  A worker given no task gets its setup at the
        first `receive`.  One not heard from within `HELLO_WAIT` seconds gets
        its setup, and then what was sent to it meanwhile, when its hello comes.
        """
        self._setup = dict(setup)
        self._await_hellos(time.monotonic() + HELLO_WAIT)
        return list(self._workers)

    def _await_hellos(self, deadline: float) -> None:
        """Read hellos (sleeping between looks) until every worker has said hello or ``deadline`` passed."""
        backoff = Backoff(high=MASTER_MAX_SLEEP)
        while len(self._hosts.keys() | self._dead) < len(self._workers) and time.monotonic() < deadline:
            try:
                found = self._read_hellos()
            except self._mpi.Exception as error:
                self._on_error(error)
                continue
            if not found:
                backoff.sleep(deadline)

    def _read_hellos(self) -> bool:
        """Take every hello that has arrived; True if there was one."""
        status = self._mpi.Status()
        found = False
        while self._comm.Iprobe(source=self._mpi.ANY_SOURCE, tag=TAG_HELLO, status=status):
            source = status.Get_source()
            self._hosts[source] = str(self._comm.recv(source=source, tag=TAG_HELLO).get("host", "?"))
            found = True
        if found:
            self._layouts = {}
        return found

    def _send_setups(self) -> None:
        """Send the setup to every worker heard from and not yet set up (then what was held for it)."""
        for worker in sorted(self._awaiting_setup & self._hosts.keys()):
            self._send_setup(worker)

    def _send_setup(self, worker: int) -> None:
        """Send ``worker`` (heard from, not set up) the setup with its node layout, then the messages held for it."""
        if not self._layouts:
            self._layouts = node_layouts(self._hosts)
        self._awaiting_setup.discard(worker)
        self._isend(worker, {**self._setup, "node_layout": list(self._layouts[worker])})
        for payload in self._held.pop(worker, []):
            self._isend(worker, payload)

    def send(self, worker: int, message: Mapping[str, Any] | None) -> None:
        if worker in self._dead:
            return  # its death is reported (or about to be) by `receive`
        payload = None if message is None else dict(message)
        if worker in self._awaiting_setup:
            if payload is None:  # stopped before its setup: the stop is all it needs
                self._awaiting_setup.discard(worker)
                self._held.pop(worker, None)
            elif worker not in self._hosts:
                self._held.setdefault(worker, []).append(payload)  # not heard from: after its setup
                return
            else:
                self._send_setup(worker)
        self._isend(worker, payload)

    def _isend(self, worker: int, payload: Any) -> None:
        """Start sending ``payload`` to ``worker`` and give it one turn of progress."""
        if worker in self._dead:
            return
        try:
            request = self._comm.isend(payload, dest=worker, tag=TAG_TASK)
            if not request.Test():  # one turn of MPI progress: it also moves the sends queued before this one
                self._pending.append((worker, request))
        except self._mpi.Exception as error:
            self._on_error(error)

    def _progress_sends(self) -> None:
        """Test the sends not yet complete: that is what moves them.

        MPICH (ch4) pushes an ``isend`` out at once only when the way is free;
        the rest wait for the sender to make progress, which ``Iprobe`` does
        not do: untested, the first tasks of a start-up (sent right behind the
        setups) would wait for the master's first blocking ``recv``.
        """
        if not self._pending:
            return
        still = []
        for worker, request in self._pending:
            try:
                if not request.Test():
                    still.append((worker, request))
            except self._mpi.Exception as error:
                self._on_error(error)
        self._pending = [(worker, request) for worker, request in still if worker not in self._dead]

    def receive(self, timeout: float) -> tuple[int, Message] | None:
        status = self._mpi.Status()
        deadline = time.monotonic() + timeout
        while True:
            if self._lost:
                return self._lost.popleft()
            try:
                if self._awaiting_setup:  # a worker given no task yet, or a late one: set it up
                    self._read_hellos()
                    self._send_setups()
                self._progress_sends()
                if self._comm.Iprobe(source=self._mpi.ANY_SOURCE, tag=TAG_RESULT, status=status):
                    self._backoff.reset()
                    source = status.Get_source()
                    return source, self._comm.recv(source=source, tag=TAG_RESULT)
            except self._mpi.Exception as error:
                self._on_error(error)
                continue
            if time.monotonic() >= deadline:
                return None
            self._backoff.sleep(deadline)

    def discard(self, worker: int) -> None:
        self._discarded.add(worker)

    def close(self, abandon: bool = False) -> None:
        """Send every worker rank not discarded the stop message.

        Ranks cannot be stopped from here: a rank still training reads the
        message after its task.  Sends to a dead rank never complete, so the
        wait for them is bounded by CLOSE_TIMEOUT (under ULFM a rank known
        dead is sent nothing).
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + (0.0 if abandon else CLOSE_TIMEOUT)
        self._await_hellos(deadline)  # match every hello: a rank whose hello was never received can hang in Finalize
        for worker in self._workers:
            if worker not in self._discarded:
                self.send(worker, None)
        backoff = Backoff(high=MASTER_MAX_SLEEP)
        self._progress_sends()
        while self._pending and time.monotonic() < deadline:
            backoff.sleep(deadline)
            self._progress_sends()
        self._pending.clear()
        if self.rank_death.survives:
            self._await_byes(deadline)

    def _await_byes(self, deadline: float) -> None:
        """Wait (until ``deadline``) for each live worker to confirm the stop message.

        Under ULFM the master ends without ``MPI_Finalize`` (`end_rank`), and a message still on its way
        from a rank that has exited is dropped: a worker would see the master gone instead of its stop.
        """
        waiting = {w for w in self._workers if w not in self._discarded and w not in self._dead}
        backoff = Backoff(high=MASTER_MAX_SLEEP)
        while waiting and time.monotonic() < deadline:
            try:
                status = self._mpi.Status()
                if self._comm.Iprobe(source=self._mpi.ANY_SOURCE, tag=TAG_BYE, status=status):
                    self._comm.recv(source=status.Get_source(), tag=TAG_BYE)
                    waiting.discard(status.Get_source())
                    continue
            except self._mpi.Exception as error:
                self._on_error(error)
                waiting -= self._dead
                continue
            backoff.sleep(deadline)


class MPIWorkerChannel(WorkerChannel):
    """A worker rank's end: messages to and from rank 0."""

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self._comm = comm
        self._node: tuple[int, int] | None = None
        self._backoff = Backoff(high=WORKER_MAX_SLEEP)
        comm.Set_errhandler(MPI.ERRORS_RETURN)
        self.rank_death: RankDeathSupport = rank_death_support(MPI.Get_library_version())
        self._hello = comm.isend({"host": MPI.Get_processor_name()}, dest=0, tag=TAG_HELLO)

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
        """(index among this node's workers, workers on this node), from the setup message (`node_layouts`)."""
        if self._node is None:
            raise RuntimeError("the node layout comes with the setup message: receive it first")
        return self._node

    def _master_died(self, error: Exception) -> NoReturn:
        """Rank 0 is gone (under ULFM a worker sees it instead of being killed): stop this rank, status 1."""
        if not is_rank_failure(error, self._mpi):
            raise error
        print(f"menndl: worker rank {self.rank}: the master (rank 0) died; this rank stops (the library "
              "keeps every result it received: --resume continues)", file=sys.stderr, flush=True)  # fmt: skip
        end_rank(1, self.rank_death)
        raise SystemExit(1)

    def receive(self) -> Message | None:
        try:
            while not self._comm.Iprobe(source=0, tag=TAG_TASK):
                self._backoff.sleep()
            self._backoff.reset()
            message = self._comm.recv(source=0, tag=TAG_TASK)
        except self._mpi.Exception as error:
            self._master_died(error)
        if message is None and self.rank_death.survives:
            self._say_bye()
        if self._node is None and message is not None and "node_layout" in message:
            index, count = message["node_layout"]
            self._node = (int(index), int(count))
            self._hello.wait()
        return message

    def _say_bye(self) -> None:
        """Confirm the stop message to the master (under ULFM, before either leaves without MPI_Finalize)."""
        try:
            request = self._comm.isend(None, dest=0, tag=TAG_BYE)
            backoff = Backoff(high=WORKER_MAX_SLEEP)
            deadline = time.monotonic() + CLOSE_TIMEOUT
            while not request.Test() and time.monotonic() < deadline:
                backoff.sleep()
        except self._mpi.Exception:
            pass  # the master has gone already: nothing is lost, the search had ended

    def send(self, message: Mapping[str, Any]) -> None:
        try:
            request = self._comm.isend(dict(message), dest=0, tag=TAG_RESULT)
            backoff = Backoff(high=WORKER_MAX_SLEEP)
            while not request.Test():
                backoff.sleep()
        except self._mpi.Exception as error:
            self._master_died(error)
