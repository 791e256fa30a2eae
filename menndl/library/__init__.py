"""The HDF5 architecture library: one file per search, one row per evaluation.

* :class:`LibraryWriter` (master only) creates a library and appends records.
* :class:`Library` opens a library read-only and validates it.
* :mod:`menndl.library.schema` lists the fields and format constants.

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
