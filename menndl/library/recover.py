"""Replay a library's journal into its HDF5 file after a crash (``menndl run --resume``).

After :func:`recover` the library is one closed, consistent HDF5 file that holds
every evaluation that reached the journal, the random state and the tasks that
were in flight; the journal and the ``.base`` copy are gone.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from menndl.errors import UserError
from menndl.library.journal import JOURNAL_FORMAT, base_path, journal_path, read_journal
from menndl.library.kept_weights import merge_weights_files, weights_dir
from menndl.library.schema import (
    COUNT_ATTR,
    EVALUATION_FIELDS,
    EVALUATIONS_GROUP,
    FIELD_NAMES,
    FORMAT_NAME,
    MISSING,
    NUMPY_DTYPES,
    PARETO_DATASET,
    RESERVED_ROOT_ATTRS,
    STATE_GROUP,
    WEIGHTS_GROUP,
)

__all__ = ["RecoveryReport", "record_arrays", "recover"]


@dataclass
class RecoveryReport:
    """What :func:`recover` did."""

    replayed_rows: int = 0
    pending: int = 0
    rebuilt: bool = False  # the HDF5 file could not be read and was rebuilt from base + journal
    torn_lines: int = 0
    moved_aside: Path | None = None
    weights: int = 0  # kept models merged from their own files


def _plain(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


def _readable(path: Path) -> bool:
    """Whether ``path`` opens as a library whose every column reads."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            group = f[EVALUATIONS_GROUP]
            for name in FIELD_NAMES:
                group[name][...]
            f[PARETO_DATASET][...]
            return str(f.attrs["format"]) == FORMAT_NAME
    except Exception:  # noqa: BLE001 - any failure means "rebuild it"
        return False


def record_arrays(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Journal records (field -> stored value) as one column per library field; absent values are missing."""
    arrays = {}
    for name, kind in EVALUATION_FIELDS:
        values = [row.get(name) for row in rows]
        if kind == "str":
            data = np.empty(len(rows), dtype=object)
            data[:] = ["" if v is None else str(v) for v in values]
        else:
            data = np.asarray([MISSING[kind] if v is None else v for v in values], dtype=NUMPY_DTYPES[kind])
        arrays[name] = data
    return arrays


def recover(path: str | Path) -> RecoveryReport:
    """Fold ``LIB.journal`` into ``LIB``; a no-op (besides removing a stale base) without a journal.

    Raises:
        UserError: The journal has no header and the HDF5 file is unreadable
            (nothing to rebuild from).
    """
    from menndl.library.writer import LibraryWriter, _create_layout, remove_companions

    p = Path(path)
    jpath, bpath = journal_path(p), base_path(p)
    report = RecoveryReport()
    if not jpath.exists():  # (a close that stopped after removing the journal had written the weights)
        remove_companions(p)
        return report
    contents = read_journal(jpath)
    report.torn_lines = contents.torn_lines
    if not _readable(p):
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
                _create_layout(f, str(attrs.get("job", "")), extra)
                f.attrs["created_at"] = str(attrs.get("created_at", ""))
    writer = LibraryWriter.__new__(LibraryWriter)
    writer._setup_policy(p, 1, None, 0)
    try:
        f = h5py.File(p, "a")
    except OSError as exc:
        raise UserError(
            f"cannot open library {p} for writing ({str(exc).splitlines()[0]}); is its search still running?"
        ) from None
    with f:
        writer._bind(f)
        present = set(f[EVALUATIONS_GROUP]["id"][: writer.written].tolist())
        rows = []
        for row in contents.rows:
            if int(row["id"]) not in present:
                present.add(int(row["id"]))
                rows.append(row)
        writer._write_arrays(record_arrays(rows), len(rows))
        report.replayed_rows = len(rows)
        state = f.require_group(STATE_GROUP).attrs
        earlier = json.loads(str(_plain(state["pending"]))) if "pending" in state else []
        by_id = {int(t["id"]): t for t in [*earlier, *contents.tasks.values()]}
        pending = [task for task_id, task in sorted(by_id.items()) if task_id not in present]
        if contents.last_task is not None:
            if contents.rng_state is not None:
                state["rng_state"] = contents.rng_state
            next_id = max(int(contents.last_task.get("next_id") or 0), max(contents.tasks) + 1)
            state["next_id"] = np.int64(max(next_id, int(state.get("next_id", 0))))
        if contents.search_seconds is not None:  # the killed run's search time, as last journaled
            before = float(state["search_seconds"]) if "search_seconds" in state else 0.0
            state["search_seconds"] = np.float64(max(before, contents.search_seconds))
            state["stop_reason"] = "killed (recovered from the journal)"
        clean = [{k: v for k, v in t.items() if k not in ("rng_state", "next_id")} for t in pending]
        state["pending"] = json.dumps(clean, separators=(",", ":"))
        report.pending = len(pending)
        if contents.pareto is not None:
            ds = f[PARETO_DATASET]
            ds.resize((len(contents.pareto),))
            if contents.pareto:
                ds[:] = np.asarray(contents.pareto, dtype="<i8")
        f[EVALUATIONS_GROUP].attrs[COUNT_ATTR] = np.int64(writer.written)
        report.weights = merge_weights_files(f.require_group(WEIGHTS_GROUP), weights_dir(p))
        writer._file = None
    remove_companions(p)
    return report
