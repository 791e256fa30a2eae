"""A worker's channel fed from a list of messages, for running the real worker loop in the test's process."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from menndl.transport.base import Message, WorkerChannel


class MemoryChannel(WorkerChannel):
    """A worker's channel fed from a list of messages; what it sends is kept."""

    def __init__(self, messages: list[Message | None], rank: int = 1) -> None:
        self.inbox: deque[Message | None] = deque(messages)
        self.sent: list[Message] = []
        self._rank = rank

    def receive(self) -> Message | None:
        return self.inbox.popleft() if self.inbox else None

    def send(self, message: Mapping[str, Any]) -> None:
        self.sent.append(dict(message))

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def local_rank(self) -> int:
        return 0

    @property
    def local_size(self) -> int:
        return 1
