"""The worker loop: receive setup, load the data once, then train task after task.

A worker never exits because of a candidate: every exception while decoding
or training becomes a ``failed`` result with its traceback.  Only a setup that
cannot be honoured (the data cannot be loaded) ends it, with a ``fatal``
message so the master knows why.
"""

from __future__ import annotations

import os
import socket
import traceback
from menndl.transport.base import WorkerChannel


def run_worker(channel: WorkerChannel) -> None:
    """Serve tasks from ``channel`` until the master says stop (``None``)."""
    setup = channel.receive()
    if setup is None:
        return
    host = socket.gethostname()
    threads = _threads_per_worker(channel.local_size)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # before torch is imported
    try:
        from menndl.worker.trainer import Trainer

        trainer = Trainer.from_setup(setup, local_rank=channel.local_rank, threads=threads)
    except Exception as exc:  # the master reports it and stops using this worker
        channel.send(
            {
                "type": "fatal",
                "rank": channel.rank,
                "host": host,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        )
        _drain(channel)
        return
    identity = {"rank": channel.rank, "host": host, "device": trainer.device_name}
    while True:
        task = channel.receive()
        if task is None:
            return
        channel.send({"type": "result", "task": task["task"], **identity, **trainer.evaluate(task)})


def _drain(channel: WorkerChannel) -> None:
    """Wait for the stop message so the master's close() completes cleanly."""
    while channel.receive() is not None:
        pass


def _threads_per_worker(workers_on_node: int) -> int:
    """Share this node's usable cores evenly between its workers (at least one each)."""
    configured = os.environ.get("MENNDL_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return max(1, usable_cores() // max(1, workers_on_node))


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1

