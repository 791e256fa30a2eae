"""Under mpiexec -n 4: what each worker rank receives first, and in which order (``mpi_setup_order_probe.py OUT``).

Rank 0 drives `MPIMasterTransport` by hand: worker 1 gets a task, worker 2
none, and worker 3 says hello only after the master's hello wait has passed,
so its task is sent before anything was heard from it.  Each worker echoes
every message it receives as ``setup`` or ``task N``; rank 0 writes what each
echoed, in order, as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mpi4py import MPI

import menndl.transport.mpi as mpi_transport

LATE_RANK, LATE_SECONDS = 3, 3.0
comm = MPI.COMM_WORLD
if comm.Get_rank() == 0:
    mpi_transport.HELLO_WAIT = 1.0  # rank 3 says hello after it
    transport = mpi_transport.MPIMasterTransport(comm)
    workers = transport.start({"evaluator": "none"})
    transport.send(1, {"task": 1})
    transport.send(LATE_RANK, {"task": LATE_RANK})
    echoed: dict[int, list[str]] = {worker: [] for worker in workers}
    deadline = time.monotonic() + 30
    while sum(map(len, echoed.values())) < 5 and time.monotonic() < deadline:
        event = transport.receive(0.5)
        if event is not None:
            echoed[event[0]].append(str(event[1]["got"]))
    transport.close()
    Path(sys.argv[1]).write_text(json.dumps(echoed))
else:
    if comm.Get_rank() == LATE_RANK:
        time.sleep(LATE_SECONDS)
    channel = mpi_transport.MPIWorkerChannel(comm)  # says hello
    while (message := channel.receive()) is not None:
        channel.send({"got": "setup" if "node_layout" in message else f"task {message['task']}"})
