"""The HDF5 architecture library: one file per search, one row per evaluation.

* :class:`LibraryWriter` (master only) creates a library and appends records
  (:mod:`~menndl.library.writer`; its HDF5 batches: :mod:`~menndl.library.batches`, or a fold
  process: :mod:`~menndl.library.folding_writer` and :mod:`~menndl.library.fold_process`).
* :class:`Library` opens a library read-only and validates it (:mod:`~menndl.library.reader`).
* :mod:`menndl.library.schema` lists the fields and format constants.
* :mod:`menndl.library.columns` is the HDF5 column store: the file's layout, its columns, its
  Pareto dataset and its ``/state``; every writer of a library file goes through it.
* :mod:`menndl.library.state` computes the search state (next id, tasks in flight, random state,
  session) from the HDF5 file and the journal, in one function.
* :mod:`menndl.library.journal` is the crash-safety journal beside a library being written;
  :mod:`menndl.library.recover` folds it in after a crash; :mod:`menndl.library.kept_weights`
  keeps the top models; :mod:`menndl.library.stored` reads genomes and JSON fields back.

The writer and reader are imported lazily, so ``import menndl.library`` (and
``menndl.library.schema``) does not pull in h5py.  File layout:
``docs/library-format.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from menndl.library.schema import EVALUATION_FIELDS, FORMAT_NAME, FORMAT_VERSION, MISSING

if TYPE_CHECKING:
    from menndl.library.reader import Library
    from menndl.library.writer import LibraryWriter

__all__ = [
    "EVALUATION_FIELDS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MISSING",
    "Library",
    "LibraryWriter",
]


def __getattr__(name: str) -> Any:
    """Import :class:`Library` and :class:`LibraryWriter` on first use."""
    if name == "Library":
        from menndl.library.reader import Library

        return Library
    if name == "LibraryWriter":
        from menndl.library.writer import LibraryWriter

        return LibraryWriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
