"""Under mpiexec -n 2: how much CPU an idle worker rank and an idle master use (psutil); rank 0 prints JSON.

The worker runs the real worker loop over the real MPI channel and reports
ready; the master then sends nothing for MEASURE_SECONDS while it waits in
the real `MPIMasterTransport.receive`.  CPU time (not wall time) is measured,
so a loaded machine does not inflate the figures.
"""

from __future__ import annotations

import json
import sys
import time

import psutil
from mpi4py import MPI

from menndl.transport.mpi import MPIMasterTransport, MPIWorkerChannel
from menndl.worker.loop import run_worker

MEASURE_SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0

comm = MPI.COMM_WORLD
if comm.Get_rank() == 0:
    transport = MPIMasterTransport(comm)
    transport.start({"type": "setup", "evaluator": "sleep", "sleep": {"seconds": 0.01}})
    event = None
    deadline = time.monotonic() + 120
    while event is None and time.monotonic() < deadline:
        event = transport.receive(1.0)
    assert event is not None and event[1]["type"] == "ready", event
    worker = psutil.Process(event[1]["pid"])
    time.sleep(0.5)  # let the worker's backoff reach its longest sleep, as it does when idle for long
    worker_before, master_before, start = worker.cpu_times(), time.process_time(), time.monotonic()
    assert transport.receive(MEASURE_SECONDS) is None
    elapsed = time.monotonic() - start
    worker_after, master_after = worker.cpu_times(), time.process_time()
    worker_cpu = (worker_after.user + worker_after.system) - (worker_before.user + worker_before.system)
    master_cpu = master_after - master_before
    print(json.dumps({"worker_core_share": worker_cpu / elapsed, "master_core_share": master_cpu / elapsed,
                      "seconds": elapsed}))  # fmt: skip
    sys.stdout.flush()
    transport.close()
else:
    run_worker(MPIWorkerChannel(comm))
