"""menndl: MENNDL-style neural architecture search for HPC clusters.

Importing the package is cheap: it pulls in neither torch nor MPI.
"""

from __future__ import annotations

from menndl.errors import UserError

__version__ = "0.1.0"

__all__ = ["UserError", "__version__"]
