"""Local mode: worker processes on this machine, one pipe each.

The master waits on every pipe and every process sentinel at once
(`multiprocessing.connection.wait`), so it sleeps in the OS while workers
train and notices a worker that died (killed, segfault, OOM) immediately.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Mapping
from multiprocessing.connection import Connection, wait
from typing import Any

from menndl.transport.base import MasterTransport, Message, WorkerChannel


class LocalTransport(MasterTransport):
    """Runs ``num_workers`` worker processes started with the ``spawn`` method."""

    def __init__(self, num_workers: int) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self._num_workers = num_workers
        self._context = multiprocessing.get_context("spawn")
        self._connections: dict[int, Connection] = {}
        self._processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self._handles: dict[Any, int] = {}  # every pipe and process sentinel -> its worker, for wait()

    @property
    def description(self) -> str:
        return f"local: {self._num_workers} worker processes"

    def start(self, setup: Mapping[str, Any]) -> list[int]:
        for worker in range(1, self._num_workers + 1):
            master_end, worker_end = self._context.Pipe(duplex=True)
            process = self._context.Process(
                target=_worker_main,
                args=(worker_end, worker, worker - 1, self._num_workers),
                name=f"menndl-worker-{worker}",
                daemon=True,
            )
            process.start()
            worker_end.close()
            self._connections[worker] = master_end
            self._processes[worker] = process
            self._handles[master_end] = self._handles[process.sentinel] = worker
            master_end.send(dict(setup))
        return list(self._connections)

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
                    return worker, connection.recv()
                except (EOFError, OSError):
                    pass
            return worker, self._forget(worker)
        return None

    def discard(self, worker: int) -> None:
        process = self._processes.get(worker)
        if process is not None:
            process.kill()  # hung past its deadline: a replacement is the master's choice, not ours
            self._forget(worker)

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
        return {"type": "lost", "error": f"worker process {process.pid} {how}"}

    def close(self, abandon: bool = False) -> None:
        for connection in self._connections.values():
            try:
                connection.send(None)
            except OSError:
                pass
        for process in self._processes.values():
            process.join(timeout=0 if abandon else 10)
            if process.is_alive():
                process.terminate()
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


def _worker_main(connection: Connection, rank: int, local_rank: int, local_size: int) -> None:
    """Entry point of a local worker process."""
    from menndl.worker.loop import ignore_stop_signals, run_worker

    ignore_stop_signals()

    run_worker(PipeChannel(connection, rank, local_rank, local_size))
