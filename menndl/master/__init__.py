"""The master: evolution, scheduling and progress.  Never imports torch or MPI."""

from __future__ import annotations

from menndl.master.evolution import Candidate, Evolution, Member
from menndl.master.progress import Progress, Status
from menndl.master.search import Search, SearchResult

__all__ = ["Candidate", "Evolution", "Member", "Progress", "Search", "SearchResult", "Status"]
