"""Run a command and report the peak memory of its whole process tree, per process and in all.

    python benchmarks/peak_memory.py [--interval 0.2] [--json FILE] -- menndl run job.toml --workers 4

Every ``--interval`` seconds it walks the command's process tree (psutil) and reads each process's RSS,
USS and PSS (``memory_full_info``: smaps).  RSS counts every page a process maps, shared ones in full;
USS counts the pages only it maps; PSS shares each page among the processes mapping it (a ``/dev/shm``
segment mapped by 4 workers counts a quarter in each).  It also sums the size of the menndl segments in
``/dev/shm`` (``menndl-*``): a shared-memory file's pages belong to the file, not to any process's USS, so
the real footprint is about ``sum USS + shm`` (reported as ``total``); ``sum PSS`` counts mapped shm too.
Peaks of the sums are taken over time (at the same poll), not summed per-process peaks.

At the end it prints, per process, pid, name, a guessed role and the peak RSS, USS and PSS, then the
peak sums, and which processes ended by a signal: the command's own exit status (-9 is SIGKILL, what the
OOM killer sends), and for descendants the exit code read from ``/proc/PID/stat`` while they were zombies
(best effort: a child reaped between two polls is only reported as vanished).  It exits with the
command's exit status (128 + signal when killed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

SHM = Path("/dev/shm")
SHM_PATTERN = "menndl-*"


@dataclass
class ProcessPeak:
    """One process's peaks over the run.

    Attributes:
        pid: Process id.
        name: Short name (the executable, or ``menndl``/``python`` plus the script).
        role: A guess from the command line: master, worker (spawned), launcher, resource tracker, ...
        cmdline: The command line, cut to 200 characters.
        rss: Peak resident set size, bytes.
        uss: Peak unique set size, bytes.
        pss: Peak proportional set size, bytes.
        first_seen: Seconds after the start it was first seen.
        last_seen: Seconds after the start it was last seen alive.
        ended: ``exit N``, ``signal NAME`` (seen as a zombie), ``vanished`` (gone between polls) or ``running``.
    """

    pid: int
    name: str
    role: str
    cmdline: str
    rss: int = 0
    uss: int = 0
    pss: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    ended: str = "running"


@dataclass
class Figures:
    """What the run measured."""

    command: list[str]
    shm_pattern: str = SHM_PATTERN
    returncode: int | None = None
    killed_by: str = ""
    seconds: float = 0.0
    polls: int = 0
    peak_sum_rss: int = 0
    peak_sum_uss: int = 0
    peak_sum_pss: int = 0
    peak_shm: int = 0
    peak_total: int = 0
    peak_processes: int = 0
    processes: list[ProcessPeak] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The figures as plain JSON-able data."""
        return asdict(self)


def guess_role(cmdline: list[str], top: bool) -> str:
    """A role for the process from its command line (a guess; empty when nothing fits)."""
    text = " ".join(cmdline)
    if "resource_tracker" in text:
        return "resource tracker"
    if "spawn_main" in text or "forkserver" in text:
        return "spawned (worker, writer or fold)"
    base = os.path.basename(cmdline[0]) if cmdline else ""
    if base in ("mpiexec", "mpirun", "srun", "hydra_pmi_proxy", "orted", "prterun", "prted"):
        return "launcher"
    if "menndl" in text:
        words = [w for w in cmdline[1:] if not w.startswith("-")]
        sub = next((w for w in words if w in ("run", "bench", "train", "check", "simulate", "export")), "")
        if sub == "run":
            return "master" if top else "rank (master or worker)"
        if "menndl.bench" in text:
            return "bench child"
        return f"menndl {sub}".strip()
    return "command" if top else ""


def short_name(process: psutil.Process, cmdline: list[str]) -> str:
    """``menndl``, ``python script.py`` or the executable's name."""
    try:
        name = process.name()
    except psutil.Error:
        name = "?"
    if name.startswith("python") and len(cmdline) > 1:
        rest = [w for w in cmdline[1:] if not w.startswith("-")]
        if "-m" in cmdline:
            return f"python -m {cmdline[cmdline.index('-m') + 1]}" if cmdline.index("-m") + 1 < len(cmdline) else name
        if "-c" in cmdline:
            return "python -c"
        if rest:
            return f"python {os.path.basename(rest[0])}"
    return name


def zombie_exit(pid: int) -> str:
    """``exit N`` or ``signal NAME`` from ``/proc/PID/stat`` (its last field, a waitpid status); empty if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = int(fields[-1])
    except (OSError, ValueError, IndexError):
        return ""
    if status & 0x7F:
        return f"signal {_signal_name(status & 0x7F)}"
    return f"exit {(status >> 8) & 0xFF}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def shm_bytes(pattern: str = SHM_PATTERN) -> int:
    """Bytes allocated to the menndl files in ``/dev/shm`` (blocks actually held, not apparent sizes)."""
    total = 0
    try:
        for path in SHM.glob(pattern):
            try:
                total += path.stat().st_blocks * 512
            except OSError:
                pass
    except OSError:
        pass
    return total


def measure(command: list[str], interval: float, shm_pattern: str = SHM_PATTERN) -> Figures:
    """Run ``command`` to completion, polling its process tree every ``interval`` seconds."""
    figures = Figures(command=command, shm_pattern=shm_pattern)
    started = time.perf_counter()
    child = subprocess.Popen(command)
    forwarded = {}

    def forward(number: int, _frame: Any) -> None:
        try:
            child.send_signal(number)
        except OSError:
            pass

    for number in (signal.SIGINT, signal.SIGTERM):
        forwarded[number] = signal.signal(number, forward)
    peaks: dict[int, ProcessPeak] = {}
    handles: dict[int, psutil.Process] = {}
    try:
        top = psutil.Process(child.pid)
        handles[child.pid] = top
        while True:
            now = time.perf_counter() - started
            try:
                tree = [top, *top.children(recursive=True)]
            except psutil.Error:
                tree = [handles[pid] for pid in handles if pid != child.pid]
            seen: set[int] = set()
            sums = [0, 0, 0]
            for process in tree:
                pid = process.pid
                handles.setdefault(pid, process)
                try:
                    if process.status() == psutil.STATUS_ZOMBIE:
                        if pid in peaks and pid != child.pid:
                            peaks[pid].ended = zombie_exit(pid) or "zombie"
                        continue
                    if pid not in peaks:
                        cmdline = process.cmdline()
                        peaks[pid] = ProcessPeak(
                            pid, short_name(process, cmdline), guess_role(cmdline, pid == child.pid),
                            " ".join(cmdline)[:200], first_seen=now,
                        )  # fmt: skip
                    info = process.memory_full_info()
                except psutil.Error:
                    continue
                pss = int(getattr(info, "pss", 0))
                peak = peaks[pid]
                peak.rss, peak.uss, peak.pss = max(peak.rss, info.rss), max(peak.uss, info.uss), max(peak.pss, pss)
                peak.last_seen = now
                seen.add(pid)
                sums[0] += info.rss
                sums[1] += info.uss
                sums[2] += pss
            shm = shm_bytes(shm_pattern)
            figures.polls += 1
            figures.peak_sum_rss = max(figures.peak_sum_rss, sums[0])
            figures.peak_sum_uss = max(figures.peak_sum_uss, sums[1])
            figures.peak_sum_pss = max(figures.peak_sum_pss, sums[2])
            figures.peak_shm = max(figures.peak_shm, shm)
            figures.peak_total = max(figures.peak_total, sums[1] + shm)
            figures.peak_processes = max(figures.peak_processes, len(seen))
            for pid, peak in peaks.items():
                if pid not in seen and peak.ended == "running" and pid != child.pid:
                    peak.ended = "vanished"
            if child.poll() is not None:
                break
            time.sleep(interval)
    finally:
        returncode = child.wait()
        for number, previous in forwarded.items():
            signal.signal(number, previous)
    figures.seconds = time.perf_counter() - started
    figures.returncode = returncode
    if returncode < 0:
        figures.killed_by = _signal_name(-returncode)
    if child.pid in peaks:
        peaks[child.pid].ended = f"signal {figures.killed_by}" if returncode < 0 else f"exit {returncode}"
    for pid, peak in peaks.items():
        if peak.ended == "running":  # outlived the command (a daemon left behind) or was never seen gone
            peak.ended = "running at end" if psutil.pid_exists(pid) else "vanished"
    figures.processes = sorted(peaks.values(), key=lambda p: p.first_seen)
    return figures


def _mib(count: int) -> str:
    return f"{count / 2**20:,.1f}"


def report(figures: Figures) -> str:
    """The figures as a table."""
    lines = [
        f"{'pid':>8} {'name':<28} {'role':<32} {'RSS MiB':>10} {'USS MiB':>10} {'PSS MiB':>10}  ended",
    ]
    for p in figures.processes:
        lines.append(
            f"{p.pid:>8} {p.name[:28]:<28} {p.role[:32]:<32} {_mib(p.rss):>10} {_mib(p.uss):>10} {_mib(p.pss):>10}"
            f"  {p.ended}"
        )
    lines += [
        f"peak over time ({figures.polls} polls, {figures.seconds:.1f} s, up to {figures.peak_processes} processes):",
        f"  sum RSS {_mib(figures.peak_sum_rss)} MiB (shared pages counted in full by every process)",
        f"  sum USS {_mib(figures.peak_sum_uss)} MiB",
        f"  sum PSS {_mib(figures.peak_sum_pss)} MiB (mapped shared memory shared fairly)",
        f"  /dev/shm/{figures.shm_pattern} {_mib(figures.peak_shm)} MiB (in no process's USS)",
        f"  total = sum USS + shm {_mib(figures.peak_total)} MiB",
    ]
    ended = [p for p in figures.processes if p.ended.startswith("signal")]
    vanished = [p for p in figures.processes if p.ended == "vanished"]
    status = f"signal {figures.killed_by}" if figures.killed_by else f"exit {figures.returncode}"
    lines.append(f"command: {status}" + (" (SIGKILL: the OOM killer?)" if figures.killed_by == "SIGKILL" else ""))
    for p in ended:
        if p.pid != (figures.processes[0].pid if figures.processes else -1):
            lines.append(f"  child {p.pid} ({p.name}, {p.role or '?'}) ended by {p.ended}")
    if vanished:
        gone = ", ".join(f"{p.pid} ({p.name})" for p in vanished)
        lines.append(f"  gone between polls (exit status unknown): {gone}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse ``[options] -- command ...``, run it, print the table (on stderr); return the command's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], usage="%(prog)s [options] -- COMMAND ...")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between polls (default 0.2)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--shm-pattern", default=SHM_PATTERN, help=f"files of /dev/shm counted (default {SHM_PATTERN})")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    try:
        figures = measure(command, max(0.01, args.interval), args.shm_pattern)
    except FileNotFoundError as exc:
        print(f"peak_memory: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        return 127
    print(report(figures), file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(figures.as_dict(), indent=1))
    code = figures.returncode or 0
    return 128 + (-code) if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
