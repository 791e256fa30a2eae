"""The transport interface: how the master and its workers exchange messages.

A transport moves small dicts of plain data (str, int, float, bool, lists,
dicts) and knows nothing of evolution.  The master talks to a
`MasterTransport`; each worker talks to a `WorkerChannel`.  ``None`` sent to a
worker means "stop".

Besides the worker's own messages, ``MasterTransport.receive`` may report a
worker that is gone as ``(worker, {"type": "lost", "error": ...})``, with
``"replaced_by": id`` when the transport started a replacement (local mode),
which joins the pool when it reports ``ready``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

Message = dict[str, Any]


class MasterTransport(ABC):
    """The master's end: start workers, send them tasks, receive their results."""

    @abstractmethod
    def start(self, setup: Mapping[str, Any]) -> list[int]:
        """Start (or attach to) the workers; each gets the setup message before any other.

        A transport may send a worker's setup with its first message (`send`) instead of at once.

        Returns:
            The ids of the workers, used as addresses for `send`.
        """

    @abstractmethod
    def send(self, worker: int, message: Mapping[str, Any] | None) -> None:
        """Send a message to one worker without waiting for it to be read."""

    @abstractmethod
    def receive(self, timeout: float) -> tuple[int, Message] | None:
        """Wait up to ``timeout`` seconds for the next message from any worker.

        Waiting must not busy-spin: block in the OS or sleep with backoff.

        Returns:
            ``(worker, message)``, or ``None`` when nothing arrived in time.
        """

    def discard(self, worker: int) -> int | None:
        """Stop using a worker presumed hung or dead: send it nothing more, end it if possible.

        Returns:
            The id of a replacement worker started in its place (it reports ``ready`` when it can
            serve), or None.
        """
        return None

    @abstractmethod
    def close(self, abandon: bool = False) -> None:
        """Tell every live worker to stop and release resources; idempotent.

        Args:
            abandon: do not wait for work still running (stop it where the
                transport can).
        """

    @property
    def worker_count_hint(self) -> int | None:
        """How many workers `start` will report, when known before it (the master proposes their first tasks early)."""
        return None

    @property
    def fault_note(self) -> str | None:
        """One line for the start of a run: what a worker that dies costs with this transport, and why."""
        return None

    @property
    @abstractmethod
    def description(self) -> str:
        """One line for logs, e.g. ``local: 2 worker processes``."""


class WorkerChannel(ABC):
    """A worker's end: receive tasks from the master, send results back."""

    @abstractmethod
    def receive(self) -> Message | None:
        """Block (without spinning) until the next message; ``None`` means stop."""

    @abstractmethod
    def send(self, message: Mapping[str, Any]) -> None:
        """Send a message to the master."""

    @property
    @abstractmethod
    def rank(self) -> int:
        """This worker's id, as the master addresses it."""

    @property
    @abstractmethod
    def local_rank(self) -> int:
        """This worker's index among the workers on its node (for device binding)."""

    @property
    @abstractmethod
    def local_size(self) -> int:
        """How many workers share this node (for sharing CPU threads)."""
