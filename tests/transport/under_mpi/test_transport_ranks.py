"""The MPI transport's unit tests, run on every rank by pytest-mpi: ``mpiexec -n 3 python -m pytest --with-mpi``.

Each test runs on all ranks at once, over its own duplicate of ``COMM_WORLD``: rank 0 drives the master's end
(`MPIMasterTransport`), the other ranks a worker's (`MPIWorkerChannel`) that echoes what it receives.  Without
``--with-mpi`` pytest-mpi skips them; tests/transport/test_under_pytest_mpi.py runs them under mpiexec with a
hard timeout, so a rank that hangs fails the suite instead of stalling it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

MPI = pytest.importorskip("mpi4py.MPI")

from menndl.transport.mpi import MPIMasterTransport, MPIWorkerChannel  # noqa: E402

pytestmark = [pytest.mark.mpi(min_size=3), pytest.mark.timeout(60)]


@pytest.fixture
def comm() -> Iterator[Any]:
    """A communicator of this test's own (every rank duplicates COMM_WORLD together)."""
    duplicate = MPI.COMM_WORLD.Dup()
    yield duplicate
    duplicate.Free()


def _echo_worker(comm: Any, reply) -> None:
    """A worker rank: answer every message until the stop message (``reply(channel, message)`` -> dict)."""
    channel = MPIWorkerChannel(comm)
    while (message := channel.receive()) is not None:
        channel.send(reply(channel, message))


def _collect(transport: MPIMasterTransport, count: int, seconds: float = 30) -> list[tuple[int, dict]]:
    """The next ``count`` messages from the workers (fails after ``seconds``)."""
    got: list[tuple[int, dict]] = []
    deadline = time.monotonic() + seconds
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} of {count} messages within {seconds}s: {got}"
        event = transport.receive(0.5)
        if event is not None:
            got.append((event[0], dict(event[1])))
    return got


def test_each_worker_gets_its_setup_then_its_tasks_in_order(comm: Any) -> None:
    if comm.Get_rank() != 0:
        _echo_worker(comm, lambda _, m: {"got": "setup" if "node_layout" in m else f"task {m['task']}"})
        return
    transport = MPIMasterTransport(comm)
    workers = transport.start({"evaluator": "none"})
    for worker in workers:
        for task in (worker, 100 + worker, 200 + worker):
            transport.send(worker, {"task": task})
    got = _collect(transport, 4 * len(workers))
    transport.close()
    for worker in workers:
        echoed = [m["got"] for source, m in got if source == worker]
        assert echoed == ["setup", f"task {worker}", f"task {100 + worker}", f"task {200 + worker}"]


def test_the_node_layout_comes_with_the_setup(comm: Any) -> None:
    if comm.Get_rank() != 0:
        _echo_worker(comm, lambda channel, m: {"layout": [channel.local_rank, channel.local_size],
                                               "rank": channel.rank})  # fmt: skip
        return
    transport = MPIMasterTransport(comm)
    workers = transport.start({"evaluator": "none"})
    got = _collect(transport, len(workers))  # each worker answers its setup
    transport.close()
    assert sorted(source for source, _ in got) == workers
    assert all(m["rank"] == source for source, m in got)
    # every rank on this one machine: worker k is the (k-1)-th of its node's len(workers) workers
    assert sorted(tuple(m["layout"]) for _, m in got) == [(k, len(workers)) for k in range(len(workers))]


def test_a_large_message_arrives_whole_both_ways(comm: Any) -> None:
    payload = "x" * (4 << 20)  # 4 MiB: past every eager limit
    if comm.Get_rank() != 0:
        _echo_worker(comm, lambda _, m: {"size": len(m.get("blob", "")), "back": m.get("blob", "")[:16] * 2**18})
        return
    transport = MPIMasterTransport(comm)
    workers = transport.start({"evaluator": "none"})
    for worker in workers:
        transport.send(worker, {"task": worker, "blob": payload})
    got = [m for _, m in _collect(transport, 2 * len(workers)) if m["size"]]
    transport.close()
    assert [m["size"] for m in got] == [len(payload)] * len(workers)
    assert all(m["back"] == "x" * (16 * 2**18) for m in got)
