"""Transports between the master and its workers: local processes and MPI."""

from __future__ import annotations

from menndl.transport.base import MasterTransport, Message, WorkerChannel

__all__ = ["MasterTransport", "Message", "WorkerChannel"]
