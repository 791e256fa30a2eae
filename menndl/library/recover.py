"""Rebuild a library from its journal after a crash (``menndl run --resume``).

The HDF5 file of a running search is only a checkpoint of its journal: a process killed while
HDF5 writes can leave it in any state (a ``count`` that covers a row whose chunk never reached the
file, a global heap that breaks the next string write), and a file that reads is not a file that
can be written.  So recovery never writes into it.  It builds the library anew under a scratch
name from what a crash cannot damage: the closed ``LIB.base`` copy a resumed run started from (or,
for a first run, an empty layout made from the journal header), every row of the journal, the
search state, the Pareto front and the kept models left beside the library.  Then it renames the
result over the library and removes the journal.  A recovery killed at any moment leaves the
library, its base and its journal as they were, so the next ``--resume`` recovers again.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from menndl.errors import UserError
from menndl.library.columns import (
    ColumnStore,
    columns_of,
    create_layout,
    failure_reason,
    readable,
    row_values,
    temporary_path,
)
from menndl.library.journal import (
    JOURNAL_FORMAT,
    JournalContents,
    base_path,
    journal_path,
    read_journal,
    remove_companions,
)
from menndl.library.kept_weights import merge_weights_files, weights_dir
from menndl.library.schema import FORMAT_NAME, RESERVED_ROOT_ATTRS
from menndl.library.state import search_state

__all__ = ["KILLED", "RecoveryReport", "recover"]

KILLED = "killed (recovered from the journal)"
"""The stop reason recovery notes for a run whose journal has its search time (it never closed)."""


@dataclass
class RecoveryReport:
    """What :func:`recover` did."""

    replayed_rows: int = 0  # journal rows written over the starting point (the base, or an empty layout)
    pending: int = 0
    rebuilt: bool = False  # the crashed HDF5 file did not even read (it is kept as `moved_aside`)
    torn_lines: int = 0
    moved_aside: Path | None = None
    weights: int = 0  # kept models merged from their own files


def recover(path: str | Path) -> RecoveryReport:
    """Rebuild ``LIB`` from ``LIB.base`` (or the journal header) and ``LIB.journal``; a no-op
    (besides removing a stale base) without a journal.

    The rows are the base's plus the journal's, the search state is the base's advanced by the
    journal (:func:`menndl.library.state.search_state`), the journal's Pareto front replaces the
    base's, and the kept models left beside the library join ``/weights``.  A crashed file that
    does not read is kept beside the library as ``LIB.corrupt-<time>``; one that reads is replaced.

    Raises:
        UserError: A search still holds the library open for writing, the journal has no header
            and there is neither a base nor a readable file to start from, or the rebuilt file
            cannot be written (disk full, folder not writable).
    """
    p = Path(path)
    jpath, bpath = journal_path(p), base_path(p)
    report = RecoveryReport()
    if not jpath.exists():  # (a close that stopped after removing the journal had written the weights)
        remove_companions(p)
        return report
    _refuse_if_written(p)
    contents = read_journal(jpath)
    report.torn_lines = contents.torn_lines
    crashed_reads = readable(p)
    tmp = temporary_path(p)
    try:
        _start(tmp, p, bpath, contents, crashed_reads)
        _fold(tmp, weights_dir(p), contents, report)
        fsync_path(tmp)
        if p.exists() and not crashed_reads:
            report.rebuilt = True
            report.moved_aside = p.with_name(f"{p.name}.corrupt-{int(time.time())}")
            os.link(p, report.moved_aside)
        os.replace(tmp, p)
        fsync_path(p.parent)
    except OSError as exc:
        raise UserError(f"cannot rebuild library {p} from its journal {jpath}: {failure_reason(exc)}") from None
    finally:
        tmp.unlink(missing_ok=True)
    remove_companions(p)
    return report


def _refuse_if_written(p: Path) -> None:
    """Refuse to rebuild a library that a running search holds open (HDF5's file lock says so)."""
    if not p.exists():
        return
    try:
        with h5py.File(p, "r"):  # a shared lock: refused while a writer holds the exclusive one
            pass
    except OSError as exc:
        if "unable to lock file" in str(exc).lower():
            raise UserError(
                f"cannot recover library {p} ({str(exc).splitlines()[0]}); is its search still running?"
            ) from None
    except Exception:  # noqa: BLE001, S110 - a damaged file is what recovery replaces
        pass


def _start(tmp: Path, p: Path, bpath: Path, contents: JournalContents, crashed_reads: bool) -> None:
    """Write the starting point of the rebuild at ``tmp``.

    The base when there is one (a resumed run's closed copy), else an empty layout from the journal
    header (a first run), else (a journal whose header was torn) a copy of the crashed file if it reads.
    """
    attrs = contents.attrs
    if bpath.exists():
        shutil.copyfile(bpath, tmp)
    elif attrs is not None and attrs.get("format") == FORMAT_NAME:
        with h5py.File(tmp, "w") as f:
            extra = {k: v for k, v in attrs.items() if k not in RESERVED_ROOT_ATTRS}
            create_layout(f, str(attrs.get("job", "")), extra, created_at=str(attrs.get("created_at", "")))
    elif crashed_reads:
        shutil.copyfile(p, tmp)
    else:
        raise UserError(f"library {p} is unreadable and its journal {journal_path(p)} has no {JOURNAL_FORMAT} header")


def _fold(tmp: Path, weights: Path, contents: JournalContents, report: RecoveryReport) -> None:
    """Append the journal's rows that ``tmp`` lacks, then its state, front and the kept models of ``weights``."""
    with ColumnStore.open(tmp) as store:
        present = set(store.ids().tolist())
        rows = []
        for row in contents.rows:
            if int(row["id"]) not in present:
                present.add(int(row["id"]))
                rows.append(row_values(row))
        store.append(columns_of(rows))
        report.replayed_rows = len(rows)
        ids = np.fromiter(present, dtype=np.int64, count=len(present))
        state = search_state(store.read_state(), contents, ids)
        if contents.search_seconds is not None:  # the killed run's search time, as last journaled
            state = dataclasses.replace(state, stop_reason=KILLED)
        store.write_state(state, pending=True)
        report.pending = len(state.pending)
        if contents.pareto is not None:
            store.set_pareto(contents.pareto)
        report.weights = merge_weights_files(store.weights, weights)


def fsync_path(path: Path) -> None:
    """``fsync`` a file or folder, so the rename that follows cannot outrun its contents."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
