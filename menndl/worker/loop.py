"""The worker loop: receive the setup, build the evaluator it names once, then evaluate task after task.

The evaluator (`menndl.worker.evaluator.Evaluator`) is the trainer by
default, which loads the data once and trains each candidate.

A worker never exits because of a candidate: every exception while decoding
or training becomes a result (``failed``, ``nan``, ``oom``, ``timeout``) with
its traceback.  Only a setup that cannot be honoured (the data cannot be
loaded, CUDA asked for and absent) or a device that stopped working (a CUDA
error that poisons the context) ends it, with a ``fatal`` message so the
master knows why.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any

from menndl.data.arrays import DataUnavailable
from menndl.transport.base import WorkerChannel
from menndl.worker.devices import resolve_local_rank
from menndl.worker.evaluator import Evaluator, build_evaluator

WORKER_NICENESS = 5  # workers below the master on a shared core (MENNDL_WORKER_NICE overrides; 0 = off)

EvaluatorFactory = Callable[..., Evaluator]  # (setup, *, rank, local_rank, threads) -> Evaluator


def worker_main(channel: WorkerChannel) -> None:
    """A worker process's entry point: leave the stop signals to the master, then serve `channel`.

    ``menndl run`` runs it on every MPI rank but 0 and hands it to the local
    transport, which runs it in each worker process it starts.
    """
    ignore_stop_signals()
    run_worker(channel)


def run_worker(channel: WorkerChannel, make_evaluator: EvaluatorFactory | None = None) -> None:
    """Serve tasks from ``channel`` until the master says stop (``None``).

    Args:
        channel: this worker's end of the transport.
        make_evaluator: builds the evaluator from the setup message (default
            `build_evaluator`, which picks it by ``setup["evaluator"]``; tests
            pass one that injects faults).
    """
    setup = channel.receive()
    if setup is None:
        return
    host = socket.gethostname()
    _lower_priority()
    threads = _threads_per_worker(channel.local_size)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # before torch is imported
    try:
        local_rank = resolve_local_rank(channel.local_rank)
        build = build_evaluator if make_evaluator is None else make_evaluator
        evaluator = build(setup, rank=channel.rank, local_rank=local_rank, threads=threads)
    except Exception as exc:  # the master reports it and stops using this worker
        channel.send(_fatal(channel, host, exc))
        _drain(channel)
        return
    identity = {"rank": channel.rank, "host": host, "device": evaluator.device_name, "local_rank": local_rank}
    channel.send({"type": "ready", **identity, "threads": threads, "precision": evaluator.precision,
                  "pid": os.getpid()})  # fmt: skip
    try:
        _serve(channel, evaluator, host, identity)
    finally:
        evaluator.close()  # the last worker of a node removes its shared copy


def _serve(channel: WorkerChannel, evaluator: Evaluator, host: str, identity: dict[str, Any]) -> None:
    """Evaluate tasks until the stop message (or until the worker cannot go on)."""
    waiting_since = time.monotonic()
    while True:
        task = channel.receive()
        if task is None:
            return
        started = time.monotonic()
        try:
            result: dict[str, Any] = evaluator.evaluate(task)
        except Exception as exc:  # evaluate() reports candidate failures itself: this is the worker breaking
            channel.send(_fatal(channel, host, exc))
            _drain(channel)
            return
        finished = time.monotonic()
        # this rank's time: evaluating, and waiting for this task since the last one ended (send included)
        usage = {"busy_seconds": finished - started, "idle_seconds": started - waiting_since}
        waiting_since = finished
        channel.send({"type": "result", "task": task["task"], **identity, **result, **usage})
        if result["status"] != "ok" and not evaluator.device_ok():
            error = RuntimeError(f"{evaluator.device_name} stopped working after task {task['task']}")
            channel.send(_fatal(channel, host, error))
            _drain(channel)
            return


def _fatal(channel: WorkerChannel, host: str, exc: BaseException) -> dict[str, object]:
    """The message that tells the master this worker cannot go on, and why."""
    return {
        "type": "fatal",
        "rank": channel.rank,
        "host": host,
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc)),
        "data_unavailable": isinstance(exc, DataUnavailable),  # the master stops the search, keeping its tasks
    }


def ignore_stop_signals() -> None:
    """Workers leave SIGINT/SIGTERM/SIGUSR2 to the master, which stops them once their results are in.

    ``mpiexec`` forwards Ctrl-C to every rank and SLURM signals every task; a
    worker that died on it would lose the evaluation it was running.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # the batch system's checkpoint signal (its default action kills)


def _lower_priority() -> None:
    """Run below the master: a niceness of ``MENNDL_WORKER_NICE`` (default `WORKER_NICENESS`; 0 keeps it).

    Every worker waits for the master between tasks.  Where the master shares
    cores with workers (rank 0 beside the workers of node 0, or an
    oversubscribed node), workers waking up must not delay it; a worker that
    trains on a GPU loses nothing, and one on CPU only yields to the master.
    """
    text = os.environ.get("MENNDL_WORKER_NICE", "")
    niceness = int(text) if text.lstrip("-").isdigit() else WORKER_NICENESS
    if niceness > 0:
        try:
            os.nice(niceness)
        except OSError:  # pragma: no cover - not allowed here: run at the same priority
            pass


def _drain(channel: WorkerChannel) -> None:
    """Wait for the stop message so the master's close() completes cleanly."""
    while channel.receive() is not None:
        pass


def _threads_per_worker(workers_on_node: int) -> int:
    """CPU threads for one worker: ``MENNDL_THREADS``, else its share of the node's cores.

    A process already bound to a subset of the cores (``srun --cpus-per-task``,
    ``mpiexec --bind-to``) owns that subset; an unbound one shares the node's
    cores evenly with the other workers there.
    """
    configured = os.environ.get("MENNDL_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    usable = usable_cores()
    if usable < (os.cpu_count() or usable):
        return usable
    return max(1, usable // max(1, workers_on_node))


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
