"""Local mode: worker processes on this machine, one pipe each.

The master waits on every pipe and every process sentinel at once
(`multiprocessing.connection.wait`), so it sleeps in the OS while workers
train and notices a worker that died (killed, segfault, OOM) immediately.

A worker that dies is replaced at once by a new process with a new id
(counting up past the first ones) on the same local slot; the ``lost``
message names it (``replaced_by``) and the master adds it to its pool when it
reports ``ready``.  A broken install would have every replacement die before
``ready``: after `RESPAWN_LIMIT` such deaths in a row no more are started, and
the ``lost`` message says why.

The transport knows nothing of what a worker does: the command that starts it
hands it the worker's entry point (``menndl run`` passes
`menndl.worker.loop.worker_main`), a top-level function that the ``spawn``ed
process imports by name and calls with its `PipeChannel`.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection, wait
from typing import Any

from menndl.transport.base import MasterTransport, Message, WorkerChannel

RESPAWN_LIMIT = 3  # replacements that died before "ready", in a row, after which no more are started

WorkerMain = Callable[[WorkerChannel], None]  # a worker process's entry point, given its channel


class LocalTransport(MasterTransport):
    """Runs ``num_workers`` worker processes started with the ``spawn`` method, each running ``worker_main``."""

    def __init__(
        self, num_workers: int, worker_main: WorkerMain, respawn: bool = True, respawn_limit: int = RESPAWN_LIMIT
    ) -> None:
        """Args:
        num_workers: worker processes to run at once.
        worker_main: what each worker process runs with its channel (e.g.
            `menndl.worker.loop.worker_main`): a top-level function, since the
            spawned process imports it by its module and name.
        respawn: start a replacement for every worker that dies (not for one discarded by the master
            after a deadline: that one is killed and replaced too, as it may only be slow).
        respawn_limit: stop replacing after this many workers in a row died before reporting ready.

        Raises:
            ValueError: a count is below 1, or ``worker_main`` is not a top-level function.
        """
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if respawn_limit < 1:
            raise ValueError(f"respawn_limit must be >= 1, got {respawn_limit}")
        _check_importable(worker_main)
        self._num_workers = num_workers
        self._worker_main = worker_main
        self._respawn, self._respawn_limit = respawn, respawn_limit
        self._setup: dict[str, Any] = {}
        self._next_worker = num_workers + 1
        self._slots: dict[int, int] = {}  # worker -> its local slot (0..num_workers-1: device binding)
        self._ready: set[int] = set()  # workers that reported ready
        self._early_deaths = 0  # workers that died before "ready", in a row
        self._closing = False
        self.respawned = 0  # replacements started
        self._context = multiprocessing.get_context("spawn")
        self._connections: dict[int, Connection] = {}
        self._processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self._handles: dict[Any, int] = {}  # every pipe and process sentinel -> its worker, for wait()

    @property
    def description(self) -> str:
        return f"local: {self._num_workers} worker processes"

    def start(self, setup: Mapping[str, Any]) -> list[int]:
        self._setup = dict(setup)
        for worker in range(1, self._num_workers + 1):
            self._spawn(worker, worker - 1)
        return list(self._connections)

    def _spawn(self, worker: int, slot: int) -> None:
        """Start worker process ``worker`` on local slot ``slot`` and send it the setup."""
        master_end, worker_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_process_main,
            args=(self._worker_main, worker_end, worker, slot, self._num_workers),
            name=f"menndl-worker-{worker}",
            daemon=True,
        )
        process.start()
        worker_end.close()
        self._connections[worker] = master_end
        self._processes[worker] = process
        self._slots[worker] = slot
        self._handles[master_end] = self._handles[process.sentinel] = worker
        try:
            master_end.send(self._setup)
        except OSError:
            pass  # it died already: its sentinel reports it

    def _replace(self, worker: int, lost: Message) -> Message:
        """Start a replacement for ``worker``, which ended; say so (or why not) in its ``lost`` message."""
        slot = self._slots.pop(worker)
        if worker in self._ready:
            self._ready.discard(worker)
            self._early_deaths = 0
        else:
            self._early_deaths += 1
        if not self._respawn or self._closing:
            return lost
        if self._early_deaths >= self._respawn_limit:
            lost["error"] += (
                f"; not replaced: {self._early_deaths} workers in a row died before reporting ready "
                "(a broken install or environment?)"
            )
            return lost
        replacement = self._next_worker
        self._next_worker += 1
        self._spawn(replacement, slot)
        self.respawned += 1
        lost["replaced_by"] = replacement
        return lost

    def send(self, worker: int, message: Mapping[str, Any] | None) -> None:
        try:
            self._connections[worker].send(None if message is None else dict(message))
        except (OSError, KeyError):
            pass  # the worker is gone; receive() reports it as lost

    def receive(self, timeout: float) -> tuple[int, Message] | None:
        if not self._connections:
            return None
        for ready in wait(list(self._handles), timeout):
            worker = self._handles[ready]
            connection = self._connections[worker]
            if connection.poll():
                try:
                    message = connection.recv()
                except (EOFError, OSError):
                    pass
                else:
                    if isinstance(message, dict) and message.get("type") == "ready":
                        self._ready.add(worker)
                    return worker, message
            return worker, self._replace(worker, self._forget(worker))
        return None

    def discard(self, worker: int) -> int | None:
        """Kill a worker hung past its deadline; start a replacement on its slot (its id is returned)."""
        process = self._processes.get(worker)
        if process is None:
            return None
        process.kill()
        self._forget(worker)
        self._ready.add(worker)  # hung, not broken: no count towards the respawn limit
        replacement = self._replace(worker, {"error": ""})
        return replacement.get("replaced_by")

    def _forget(self, worker: int) -> Message:
        """Drop a worker whose process ended; describe how it ended."""
        process = self._processes.pop(worker)
        connection = self._connections.pop(worker)
        del self._handles[connection], self._handles[process.sentinel]
        connection.close()
        process.join(timeout=5)
        code = process.exitcode
        if code is not None and code < 0:
            how = f"killed by signal {signal.Signals(-code).name}"
        else:
            how = f"exited with status {code}"
        return {"type": "lost", "error": f"worker process {process.pid} {how}", "host": socket.gethostname()}

    def close(self, abandon: bool = False) -> None:
        self._closing = True
        for connection in self._connections.values():
            try:
                connection.send(None)
            except OSError:
                pass
        for process in self._processes.values():
            process.join(timeout=0 if abandon else 10)
            if process.is_alive():  # still evaluating (or hung): workers ignore SIGTERM, so end it outright
                process.kill()
                process.join(timeout=5)
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()
        self._processes.clear()
        self._handles.clear()


class PipeChannel(WorkerChannel):
    """A local worker's end of its pipe."""

    def __init__(self, connection: Connection, rank: int, local_rank: int, local_size: int) -> None:
        self._connection = connection
        self._rank = rank
        self._local_rank = local_rank
        self._local_size = local_size

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def local_rank(self) -> int:
        return self._local_rank

    @property
    def local_size(self) -> int:
        return self._local_size

    def receive(self) -> Message | None:
        try:
            return self._connection.recv()
        except (EOFError, OSError):
            return None  # the master is gone: stop

    def send(self, message: Mapping[str, Any]) -> None:
        self._connection.send(dict(message))


def _check_importable(function: object) -> None:
    """``function`` can be named to a spawned process: a function its module holds under its own name.

    Raises:
        ValueError: it is not (a lambda, a nested function, a bound method, ...).
    """
    name, module = getattr(function, "__qualname__", None), getattr(function, "__module__", None)
    found = getattr(sys.modules.get(module or ""), name or "", None) if name and "." not in name else None
    if not callable(function) or found is not function:
        raise ValueError(
            f"worker_main must be a top-level function that a spawned process can import by name, got {function!r}"
        )


def _process_main(worker_main: WorkerMain, connection: Connection, rank: int, local_rank: int, local_size: int) -> None:
    """Entry point of a local worker process: run ``worker_main`` on this process's end of its pipe."""
    try:
        worker_main(PipeChannel(connection, rank, local_rank, local_size))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the master is gone (killed) while this worker sent a result: nobody is left to tell
