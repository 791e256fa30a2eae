"""``menndl library merge A B -o C``: one library from several of the same problem."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from menndl.errors import UserError
from menndl.library.reader import Library
from menndl.library.schema import FIELD_NAMES, RESERVED_ROOT_ATTRS
from menndl.library.stored import stored_parents
from menndl.library.writer import LibraryWriter


def merge_libraries(inputs: Sequence[str | Path], output: str | Path) -> int:
    """Write the rows of every input into a new library; returns the row count.

    Ids are renumbered (each input's ids shifted past the previous ones) and parent lists
    follow; the first input's job and attributes are kept, the sources are listed in the
    ``merged_from`` attribute, and the Pareto front is recomputed over the merged rows.
    Kept weights are copied under their new ids.

    Raises:
        UserError: An input is unreadable, or the inputs have different input shapes or class counts.
    """
    from menndl.library.query import library_score, pareto_front

    libraries = [Library.open(p) for p in inputs]
    try:
        shapes = {(lib.attrs.get("input_shape"), lib.attrs.get("num_classes"), _task(lib)) for lib in libraries}
        if len(shapes) > 1:
            raise UserError(
                "merge: the libraries are for different problems (input shape, outputs, task): "
                + "; ".join(
                    f"{lib.path}: {lib.attrs.get('input_shape')}, {lib.attrs.get('num_classes')}, {_task(lib)}"
                    for lib in libraries
                )
            )
        first = libraries[0]
        attrs = {
            k: v for k, v in first.attrs.items() if k not in RESERVED_ROOT_ATTRS and isinstance(v, (str, int, float))
        }
        attrs["merged_from"] = json.dumps([str(lib.path) for lib in libraries])
        offset = 0
        keep = sum(len(lib.weight_ids()) for lib in libraries)
        with LibraryWriter(output, job_text=first.job_text, attrs=attrs, journal=False, keep_weights=keep) as writer:
            for lib in libraries:
                columns = {name: lib.column(name) for name in FIELD_NAMES}
                columns["id"] = columns["id"] + offset
                columns["parents"] = np.asarray(
                    [
                        json.dumps([p + offset for p in stored_parents(lib.path, {"id": i, "parents": text})])
                        for i, text in zip(columns["id"] - offset, columns["parents"])
                    ],  # fmt: skip
                    dtype=object,
                )
                writer.write_columns(columns)
                for eval_id in lib.weight_ids():
                    arrays = lib.weights(eval_id)
                    if arrays is not None:
                        score = float(lib.record(eval_id)[library_score(lib)])
                        writer.offer_weights(eval_id + offset, score, arrays)
                offset = int(columns["id"].max()) + 1 if len(columns["id"]) else offset
            writer.flush()
        with Library.open(output) as merged:
            front = merged.column("id")[pareto_front(merged)].tolist()
            count = len(merged)
        with LibraryWriter.reopen(output) as writer:
            writer.set_pareto(front)
        return count
    finally:
        for lib in libraries:
            lib.close()


def _task(lib: Library) -> str:
    """The task the library's search was on (libraries written before tasks are classification)."""
    return str(lib.attrs.get("task", "classification"))
