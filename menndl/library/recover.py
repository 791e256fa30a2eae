"""Replay a library's journal into its HDF5 file after a crash (``menndl run --resume``).

After :func:`recover` the library is one closed, consistent HDF5 file that holds
every evaluation that reached the journal, the random state and the tasks that
were in flight; the journal and the ``.base`` copy are gone.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from menndl.errors import UserError
from menndl.library.columns import ColumnStore, columns_of, create_layout, readable, row_values
from menndl.library.journal import JOURNAL_FORMAT, base_path, journal_path, read_journal, remove_companions
from menndl.library.kept_weights import merge_weights_files, weights_dir
from menndl.library.schema import FORMAT_NAME, RESERVED_ROOT_ATTRS
from menndl.library.state import search_state

__all__ = ["KILLED", "RecoveryReport", "recover"]

KILLED = "killed (recovered from the journal)"
"""The stop reason recovery notes for a run whose journal has its search time (it never closed)."""


@dataclass
class RecoveryReport:
    """What :func:`recover` did."""

    replayed_rows: int = 0
    pending: int = 0
    rebuilt: bool = False  # the HDF5 file could not be read and was rebuilt from base + journal
    torn_lines: int = 0
    moved_aside: Path | None = None
    weights: int = 0  # kept models merged from their own files


def recover(path: str | Path) -> RecoveryReport:
    """Fold ``LIB.journal`` into ``LIB``; a no-op (besides removing a stale base) without a journal.

    The rows the file lacks are appended, the search state becomes the file's advanced by the
    journal (:func:`menndl.library.state.search_state`), the journal's Pareto front replaces the
    file's, and the kept models left beside the library join ``/weights``.

    Raises:
        UserError: The journal has no header and the HDF5 file is unreadable
            (nothing to rebuild from), or the file cannot be opened for writing.
    """
    p = Path(path)
    jpath, bpath = journal_path(p), base_path(p)
    report = RecoveryReport()
    if not jpath.exists():  # (a close that stopped after removing the journal had written the weights)
        remove_companions(p)
        return report
    contents = read_journal(jpath)
    report.torn_lines = contents.torn_lines
    if not readable(p):
        if contents.attrs is None or contents.attrs.get("format") != FORMAT_NAME:
            raise UserError(f"library {p} is unreadable and its journal {jpath} has no {JOURNAL_FORMAT} header")
        report.rebuilt = True
        if p.exists():
            report.moved_aside = p.with_name(f"{p.name}.corrupt-{int(time.time())}")
            p.rename(report.moved_aside)
        if bpath.exists():
            shutil.copy2(bpath, p)
        else:
            with h5py.File(p, "x") as f:
                attrs = contents.attrs
                extra = {k: v for k, v in attrs.items() if k not in RESERVED_ROOT_ATTRS}
                create_layout(f, str(attrs.get("job", "")), extra, created_at=str(attrs.get("created_at", "")))
    try:
        store = ColumnStore.open(p)
    except OSError as exc:
        raise UserError(
            f"cannot open library {p} for writing ({str(exc).splitlines()[0]}); is its search still running?"
        ) from None
    with store:
        present = set(store.ids().tolist())
        rows = []
        for row in contents.rows:
            if int(row["id"]) not in present:
                present.add(int(row["id"]))
                rows.append(row_values(row))
        store.append(columns_of(rows))  # also moves `count` back to the rows every column holds
        report.replayed_rows = len(rows)
        state = search_state(store.read_state(), contents, np.fromiter(present, dtype=np.int64, count=len(present)))
        if contents.search_seconds is not None:  # the killed run's search time, as last journaled
            state = dataclasses.replace(state, stop_reason=KILLED)
        store.write_state(state, pending=True)
        report.pending = len(state.pending)
        if contents.pareto is not None:
            store.set_pareto(contents.pareto)
        report.weights = merge_weights_files(store.weights, weights_dir(p))
    remove_companions(p)
    return report
