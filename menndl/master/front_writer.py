"""Keeps the library's Pareto front current while the search runs, without rewriting it every result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

PARETO_INTERVAL = 5.0  # seconds between rewrites of the library's Pareto front while it changes


class FrontStore(Protocol):
    """Where the front goes (the library writer)."""

    def set_pareto(self, ids: Sequence[int]) -> None: ...


class FrontWriter:
    """Writes the ids of ``front()`` to the library when they changed, at most every `PARETO_INTERVAL` seconds."""

    def __init__(self, store: FrontStore, front: Callable[[], list[int]], clock: Callable[[], float]) -> None:
        """Read the front's ids from ``front`` and write them to ``store``."""
        self._store, self._front, self._clock = store, front, clock
        self._dirty = False  # results came since the front was last written
        self._ids: list[int] = []  # the front last written
        self._written = clock()

    def changed(self) -> None:
        """A result may have changed the front."""
        self._dirty = True

    def write(self, force: bool = False) -> None:
        """Write the front if due (``force``: now, whatever changed)."""
        if not (force or self._dirty):  # (most turns: no clock read)
            return
        now = self._clock()
        if force or now - self._written >= PARETO_INTERVAL:
            ids = self._front()
            if force or ids != self._ids:
                self._store.set_pareto(ids)
                self._ids = ids
            self._dirty, self._written = False, now
