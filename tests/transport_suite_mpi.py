"""Run the transport suite's scenario under mpiexec: rank 0 writes the summary as JSON to argv[1].

Workers retired at their deadline are still sleeping at the end, so rank 0
ends the job with MPI_Abort after writing the summary (as ``menndl run`` does
when ranks may still be running).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from mpi4py import MPI

from menndl.transport.mpi import MPIMasterTransport, MPIWorkerChannel
from menndl.worker.loop import run_worker

comm = MPI.COMM_WORLD
if comm.Get_rank() == 0:
    from transport_suite import run_scenario

    with tempfile.TemporaryDirectory() as folder:
        summary = run_scenario(MPIMasterTransport(comm), Path(folder))
    Path(sys.argv[1]).write_text(json.dumps(summary))
    sys.stdout.flush()
    if summary["stragglers"]:
        comm.Abort(0)
else:
    run_worker(MPIWorkerChannel(comm))
