"""Genomes and JSON fields read back from a library: a bad one is the library's fault, said in one line."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from menndl.errors import UserError
from menndl.genome import Genome, InputSpec, count_params


def stored_json(library: str | Path, what: str, text: str, default: Any = None) -> Any:
    """A JSON field of a library (``parents``, the ``pending`` state, ...): parsed, never evaluated.

    Raises:
        UserError: it is not JSON (names the library and the field).
    """
    if not text:
        return default
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UserError(f"library {library}: {what} is not valid JSON ({' '.join(str(exc).split())[:200]})") from None


def stored_parents(library: str | Path, row: Mapping[str, Any]) -> list[int]:
    """A row's parent ids (its ``parents`` JSON list).

    Raises:
        UserError: it is not a JSON list of integers.
    """
    parents = stored_json(library, f"evaluation {row.get('id')}: parents", row.get("parents") or "", [])
    if not isinstance(parents, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in parents):
        raise UserError(f"library {library}: evaluation {row.get('id')}: parents is not a list of ids")
    return parents


def stored_genome(library: str | Path, row: Mapping[str, Any], spec: InputSpec | None = None) -> Genome:
    """The genome of one library row (JSON text, or a dict from a journal), checked like any input.

    With ``spec`` it must also fit that input (every block's output keeps a size of at least 1).

    Reading runs no code: the text is parsed as JSON and every key and value checked against fixed
    lists (`Genome.from_json`).

    Raises:
        UserError: the row has no genome, or it is not a valid one (names the library and the id).
    """
    text = row.get("genome")
    if not text:
        raise UserError(f"library {library}: evaluation {row.get('id')} has no genome")
    try:
        genome = Genome.from_json(text) if isinstance(text, str) else Genome.from_dict(text)
    except (ValueError, TypeError, RecursionError) as exc:
        reason = " ".join(str(exc).split())[:300]
        where = f"library {library}: evaluation {row.get('id')}"
        raise UserError(f"{where}: stored genome is not valid ({reason})") from None
    if spec is not None:
        try:
            count_params(genome, spec)  # walks the shapes through every block
        except ValueError as exc:
            reason = " ".join(str(exc).split())[:300]
            raise UserError(
                f"library {library}: evaluation {row.get('id')}: stored genome does not fit the input "
                f"{tuple(spec.shape)} ({reason})"
            ) from None
    return genome
