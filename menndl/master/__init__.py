"""The master: evolution, scheduling and progress.  Never imports torch or MPI."""

from __future__ import annotations

from menndl.master.candidate import Candidate
from menndl.master.evolution import Evolution
from menndl.master.population import Member
from menndl.master.progress import Progress, Status
from menndl.master.search import Search, SearchResult

__all__ = ["Candidate", "Evolution", "Member", "Progress", "Search", "SearchResult", "Status"]
