"""The fold process: copies a running search's journal into its HDF5 file, beside the master.

The master must journal every result and task before it sends the next task; writing the same
rows into HDF5 columns is extra work on top, done in batches that stall the master's loop while
every worker that finishes waits.  With ``library.fold = "process"`` (see
:class:`menndl.library.folding_writer.FoldingWriter`, which starts it) the master writes only the
journal and this process follows the journal as it grows and appends its rows to the HDF5 file in
batches through the column store (:mod:`menndl.library.columns`): the write-ahead log and
checkpointer of databases.

It owns the HDF5 file while it runs (the master opens it again only after this process ended).
It stops when its standard input closes (the master's close, after its last journal line), or
when the master is gone (its parent process changes), after folding every complete line; like
the workers it ignores SIGINT and SIGTERM, which a terminal or the batch system sends to every
process of the job: the master decides when the search ends.  A
crash of either loses nothing: the journal keeps every line until a clean close, and
:func:`menndl.library.recover` appends whatever the file lacks.

    python -m menndl.library.fold_process LIB.h5 [--rows N] [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from menndl.library.journal import JournalParser, journal_path

if TYPE_CHECKING:
    from menndl.library.columns import ColumnStore
    from menndl.library.state import SearchState

# h5py and numpy (the column store) are imported once the signal handlers are in place (see `main`): a Ctrl-C
# during the half second of imports would otherwise end the process.

POLL_SECONDS = 0.5  # how often the journal is read (the process sleeps in between: no spinning)


class JournalTail:
    """The complete lines appended to a file since the last call (a line being written waits)."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - open as long as the fold process runs
        self._rest = b""

    def lines(self) -> list[bytes]:
        """New complete lines, without their newlines."""
        data = self._file.read()
        if not data:
            return []
        data = self._rest + data
        end = data.rfind(b"\n")
        self._rest = data[end + 1 :]
        return data[:end].split(b"\n") if end >= 0 else []

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class Folder:
    """Appends a journal's rows (and its random state, next id and Pareto front) to an open library.

    Args:
        store: The library file, which this process owns while it runs.
    """

    def __init__(self, store: ColumnStore) -> None:
        self._store = store
        self._parser = JournalParser(forget_finished=True)
        self._state: SearchState = store.read_state()
        self.folded = 0

    def feed(self, lines: list[bytes]) -> None:
        """Parse journal lines (their rows wait for `write`)."""
        for line in lines:
            self._parser.feed(line)

    @property
    def waiting(self) -> int:
        """Rows parsed and not yet written."""
        return len(self._parser.contents.rows)

    def write(self) -> None:
        """Append the waiting rows (the count moves last), then the state and the front; flush the file.

        The state is the file's advanced by the journal (:func:`menndl.library.state.search_state`); only
        its random state and id counter are written: the master writes the in-flight list and the
        session at close.
        """
        from menndl.library.columns import columns_of, row_values
        from menndl.library.state import search_state

        contents = self._parser.contents
        rows, contents.rows = contents.rows, []
        self._store.append(columns_of([row_values(row) for row in rows]))
        self.folded += len(rows)
        self._state = search_state(self._state, contents, [int(row["id"]) for row in rows])
        self._store.write_state(self._state, pending=False, session=False)
        if contents.pareto is not None:
            self._store.set_pareto(contents.pareto)
            contents.pareto = None
        self._store.flush()


def _input_closed(timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for standard input; True once it is closed (the master's signal)."""
    ready, _, _ = select.select([sys.stdin.buffer], [], [], timeout)
    return bool(ready) and not os.read(sys.stdin.buffer.fileno(), 4096)


def fold(path: Path, batch_rows: int, batch_seconds: float, poll: float = POLL_SECONDS) -> int:
    """Follow ``path``'s journal until told to stop; return the number of rows folded."""
    from menndl.library.columns import ColumnStore

    parent = os.getppid()
    tail = JournalTail(journal_path(path))
    try:
        with ColumnStore.open(path) as store:
            folder = Folder(store)
            written_at = time.monotonic()
            while True:
                stop = _input_closed(poll) or os.getppid() != parent
                folder.feed(tail.lines())
                due = folder.waiting >= batch_rows or time.monotonic() - written_at >= batch_seconds
                if folder.waiting and (due or stop):
                    folder.write()
                    written_at = time.monotonic()
                if stop:
                    return folder.folded
    finally:
        tail.close()


def main(argv: list[str] | None = None) -> int:
    """Run the fold process (started by the library writer, not by users)."""
    parser = argparse.ArgumentParser(prog="python -m menndl.library.fold_process", description=__doc__.splitlines()[0])
    parser.add_argument("library", type=Path)
    parser.add_argument("--rows", type=int, default=4096, help="rows per HDF5 batch")
    parser.add_argument("--seconds", type=float, default=60.0, help="longest wait of a row for its batch")
    args = parser.parse_args(argv)
    for name in ("SIGINT", "SIGTERM"):  # sent to every process of a job or terminal: the master decides when to end
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    try:
        fold(args.library, max(1, args.rows), max(0.0, args.seconds))
    except Exception as exc:  # noqa: BLE001 - one line for the master, which falls back to folding itself
        print(f"menndl fold process: {args.library}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
