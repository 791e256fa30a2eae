"""Run one transport-suite scenario under mpiexec: ``transport_suite_mpi.py NAME SUMMARY.json``.

Rank 0 runs the master and writes the summary as JSON; every other rank runs
the worker's entry point, as ``menndl run`` does.  Workers retired at their
deadline (or abandoned at the end of a stop's grace period) are still
sleeping at the end, so rank 0 then ends the job with MPI_Abort after writing
the summary (as ``menndl run`` does when ranks may still be running).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from mpi4py import MPI

from menndl.transport.mpi import MPIMasterTransport, MPIWorkerChannel
from menndl.worker.loop import worker_main

comm = MPI.COMM_WORLD
if comm.Get_rank() == 0:
    from transport_suite import run_scenario

    with tempfile.TemporaryDirectory() as folder:
        summary = run_scenario(sys.argv[1], MPIMasterTransport(comm), Path(folder))
    Path(sys.argv[2]).write_text(json.dumps(summary))
    sys.stdout.flush()
    if summary["stragglers"]:
        comm.Abort(0)
else:
    worker_main(MPIWorkerChannel(comm))
