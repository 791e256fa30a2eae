"""Would a library writer in its own process lighten the master?  Measured side by side in one run.

Runs ``menndl simulate benchmarks/scale.toml --workers 27648 --eval-time lognormal:60`` three ways,
alternately, and prints the master's CPU per result for each and its ratio to the first:

* ``inline``: the real `LibraryWriter` in the master's process (what ``menndl run`` does);
* ``process``: the same writer in a child process; the master pickles each commit's calls (the
  record and the next task) and writes them to a pipe, without waiting;
* ``acked``: as ``process``, but every commit waits for the child's acknowledgement that the
  journal has the lines, which the crash guarantee needs (no task reaches a worker before the
  journal has it).

A prototype, not menndl's writer: weights are not kept, and errors in the child are not reported.

    python benchmarks/writer_process.py [--evaluations 100000] [--repeat 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

JOB = Path(__file__).with_name("scale.toml")
SIDES = ("inline", "process", "acked")


def _read_exact(fd: int, count: int) -> bytes | None:
    data = bytearray()
    while len(data) < count:
        chunk = os.read(fd, count - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def serve_writer(acknowledge: bool) -> None:
    """The child: apply framed, pickled call batches from stdin to a real LibraryWriter."""
    from menndl.library import LibraryWriter

    writer: Any = None
    while (head := _read_exact(0, 4)) is not None:
        body = _read_exact(0, struct.unpack("<I", head)[0])
        for name, *arguments in pickle.loads(body or b""):
            if name == "open":
                writer = LibraryWriter(Path(arguments[0]), **arguments[1])
            else:
                getattr(writer, name)(*arguments)
        if acknowledge:
            os.write(1, b"a")


class ProcessWriter:
    """The master's end: queues calls, sends them at each commit (waiting for the ack if asked)."""

    acknowledge = False

    def __init__(self, path: Path, **policy: Any) -> None:
        self.path = Path(path)
        command = [sys.executable, __file__, "--serve", "acked" if self.acknowledge else "process"]
        self._child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._calls: list[tuple[Any, ...]] = [("open", str(path), policy)]
        self.commit()

    def _send(self) -> None:
        data = pickle.dumps(self._calls, protocol=5)
        self._calls = []
        assert self._child.stdin is not None and self._child.stdout is not None
        os.write(self._child.stdin.fileno(), struct.pack("<I", len(data)) + data)
        if self.acknowledge:
            os.read(self._child.stdout.fileno(), 1)

    def append(self, record: dict[str, Any]) -> None:
        self._calls.append(("append", record))

    def task_started(self, task: dict[str, Any]) -> None:
        self._calls.append(("task_started", task))

    def commit(self) -> None:
        if self._calls:
            self._calls.append(("commit",))
            self._send()

    def tick(self) -> None:
        self.commit()

    def offer_weights(self, *_: Any) -> bool:
        return False

    def set_pareto(self, ids: Any) -> None:
        self._calls.append(("set_pareto", list(ids)))

    def set_session(self, *arguments: Any) -> None:
        self._calls.append(("set_session", *arguments))

    def close(self) -> None:
        self._calls.append(("close",))
        self._send()
        assert self._child.stdin is not None and self._child.stdout is not None
        self._child.stdin.close()
        self._child.stdout.read()
        self._child.wait()


class AckedProcessWriter(ProcessWriter):
    acknowledge = True


def simulate(side: str, evaluations: int) -> None:
    """One side: `menndl simulate` with the writer this side names; prints its JSON figures."""
    import menndl.library

    if side != "inline":
        menndl.library.LibraryWriter = AckedProcessWriter if side == "acked" else ProcessWriter  # type: ignore[misc]
    from menndl.cli import main

    sys.argv = ["menndl", "simulate", str(JOB), "--workers", "27648", "--eval-time", "lognormal:60",
                "--evaluations", str(evaluations), "--json"]  # fmt: skip
    main()


def main() -> None:
    """Run the sides alternately in fresh interpreters; print every run, the medians and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", choices=("process", "acked"), help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_writer(args.serve == "acked")
        return
    if args.side:
        simulate(args.side, args.evaluations)
        return
    runs: dict[str, list[float]] = {side: [] for side in SIDES}
    for index in range(args.repeat):
        for side in SIDES:
            command = [sys.executable, __file__, "--side", side, "--evaluations", str(args.evaluations)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            runs[side].append(1e3 * figures["master_seconds_per_result"])
            if not args.json:
                print(f"run {index + 1} {side:8s}: master {runs[side][-1]:.4f} ms/result", flush=True)
    medians = {side: statistics.median(values) for side, values in runs.items()}
    summary = {
        "evaluations": args.evaluations,
        "master_ms_per_result": {side: [round(v, 4) for v in values] for side, values in runs.items()},
        "median_master_ms_per_result": {side: round(value, 4) for side, value in medians.items()},
        "ratio_to_inline": {side: round(value / medians["inline"], 3) for side, value in medians.items()},
    }
    print(json.dumps(summary, indent=None if args.json else 1))


if __name__ == "__main__":
    main()
