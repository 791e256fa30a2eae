"""The HDF5 column store (menndl.library.columns): layout, rows to columns, appends, the front, ``/state``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from menndl.errors import UserError
from menndl.library.columns import (
    ColumnStore,
    columns_of,
    read_column,
    read_state,
    row_values,
    stored_value,
    validate_layout,
)
from menndl.library.schema import EVALUATION_FIELDS, FIELD_DESCRIPTIONS, FIELD_NAMES, MISSING
from menndl.library.state import SearchState

JOB = 'name = "j"\n'


def new_store(path: Path, **attrs: object) -> ColumnStore:
    store = ColumnStore.create(path, JOB, attrs)
    store.publish()
    return store


def rows(ids: range) -> list[tuple[object, ...]]:
    """Rows as the writer makes them: every field's stored value in the schema's order."""
    out = []
    for i in ids:
        record = {"id": i, "genome": f'{{"i":{i}}}', "status": "ok", "accuracy": i / 10, "params": 10 * i, "host": "n"}
        out.append(tuple(stored_value(name, kind, record.get(name)) for name, kind in EVALUATION_FIELDS))
    return out


def test_a_new_file_has_the_documented_layout(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    new_store(path, dataset_fingerprint="abc").close()
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "menndl-library" and f.attrs["format_version"] == 1 and f.attrs["job"] == JOB
        assert f.attrs["dataset_fingerprint"] == "abc" and "T" in f.attrs["created_at"]
        group = f["evaluations"]
        assert list(group) == sorted(FIELD_NAMES) and group.attrs["count"] == 0
        for name, kind in EVALUATION_FIELDS:
            ds = group[name]
            assert ds.shape == (0,) and ds.maxshape == (None,) and ds.attrs["kind"] == kind
            assert ds.attrs["description"] == FIELD_DESCRIPTIONS[name]
            assert (h5py.check_string_dtype(ds.dtype) is not None) if kind == "str" else ds.dtype.kind == kind[0]
        assert f["pareto"].dtype == np.int64 and f["pareto"].shape == (0,)
        assert f["state"].attrs["next_id"] == 0 and f["state"].attrs["pending"] == "[]"
        assert len(f["weights"]) == 0
    with h5py.File(path, "r") as f:
        assert validate_layout(path, f) == 0


def test_a_file_appears_at_its_path_only_when_published(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    store = ColumnStore.create(path, JOB, {})
    assert not path.exists() and [p.name.startswith(".lib.h5.") for p in tmp_path.iterdir()] == [True]
    store.discard()
    assert list(tmp_path.iterdir()) == []
    new_store(path).close()
    assert [p.name for p in tmp_path.iterdir()] == ["lib.h5"]
    with pytest.raises(UserError, match="already exists"):
        ColumnStore.create(path, JOB, {})


def test_rows_become_typed_columns(tmp_path: Path) -> None:
    columns = columns_of(rows(range(3)))
    assert list(columns) == list(FIELD_NAMES)
    assert columns["id"].dtype == np.int64 and columns["id"].tolist() == [0, 1, 2]
    assert columns["accuracy"].dtype == np.float64 and columns["genome"].dtype == object
    assert columns["loss"].tolist()[0] != columns["loss"].tolist()[0]  # NaN: missing
    assert columns["flops"].tolist() == [-1, -1, -1] and columns["error"].tolist() == ["", "", ""]
    empty = columns_of([])
    assert list(empty) == list(FIELD_NAMES) and all(len(column) == 0 for column in empty.values())
    assert empty["id"].dtype == np.int64 and empty["train_seconds"].dtype == np.float64


def test_journal_records_become_rows_with_missing_values() -> None:
    values = dict(zip(FIELD_NAMES, row_values({"id": 4, "genome": '{"g":1}', "accuracy": None, "params": 7})))
    assert values["id"] == 4 and values["genome"] == '{"g":1}' and values["params"] == 7
    assert math.isnan(values["accuracy"]) and values["status"] == MISSING["str"] and values["epochs"] == -1


def test_appends_one_slice_per_column_and_count_follows(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    with new_store(path) as store:
        store.append(columns_of(rows(range(5))))
        store.append(columns_of(rows(range(5, 8))))
        assert store.written == 8 and store.ids().tolist() == list(range(8))
    with h5py.File(path, "r") as f:
        assert f["evaluations"].attrs["count"] == 8 and all(f["evaluations"][n].shape == (8,) for n in FIELD_NAMES)
        assert read_column(f, "params", 8).tolist() == [10 * i for i in range(8)]
        assert read_column(f, "genome", 2).tolist() == ['{"i":0}', '{"i":1}']
        assert read_column(f, "host", 0).dtype == object


def test_a_half_written_batch_is_not_counted_and_is_overwritten(tmp_path: Path) -> None:
    """Rows past ``count`` (a crash between the columns and the count) are ignored, then replaced."""
    path = tmp_path / "lib.h5"
    with new_store(path) as store:
        store.append(columns_of(rows(range(4))))
    with h5py.File(path, "a") as f:  # a batch of 3 whose columns grew, but whose count never moved
        for name in FIELD_NAMES[:10]:
            f["evaluations"][name].resize((7,))
    with h5py.File(path, "r") as f:
        assert validate_layout(path, f) == 4
    with ColumnStore.open(path) as store:
        assert store.written == 4
        store.append(columns_of([]))  # no rows: count stays at what every column holds
        store.append(columns_of(rows(range(100, 102))))
        assert store.ids().tolist() == [0, 1, 2, 3, 100, 101]
    with h5py.File(path, "r") as f:
        assert validate_layout(path, f) == 6 and f["evaluations"].attrs["count"] == 6


def test_the_pareto_dataset_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    with new_store(path) as store:
        for front in ([3, 1, 2], [9], [], [4, 5, 6, 7]):
            store.set_pareto(front)
            assert store.file["pareto"][()].tolist() == front


def test_state_round_trip_and_partial_writes(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    task = {"id": 3, "genome": "{}", "hash": "h", "parents": [1], "operator": "mutate", "seed": 3, "submitted_at": 1.0}
    with new_store(path) as store:
        assert store.read_state() == SearchState()
        full = SearchState(4, "[1]", ({**task, "rng_state": "[0]", "next_id": 4, "search_seconds": 1.0},), "x", 2.0)
        store.write_state(full, pending=True)
        assert store.read_state() == SearchState(4, "[1]", (task,), "x", 2.0)  # state keys never stored
        store.write_state(SearchState(9, None, (), "y", 3.0), pending=False, session=False)
        assert store.read_state() == SearchState(9, "[1]", (task,), "x", 2.0)  # only the id counter changed
        store.file["state"].attrs["pending"] = "[{not json"
    with h5py.File(path, "r") as f, pytest.raises(UserError, match=r"lib\.h5: state\.pending is not valid JSON"):
        read_state(f, path)


def test_stored_models_and_root_attrs(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    with new_store(path, input_shape="[1, 8, 8]", num_classes=10) as store:
        group = store.weights.create_group("5")
        group.attrs["accuracy"] = 0.75
        assert store.stored_models() == {5: 0.75}
        attrs = store.root_attrs()
        assert attrs["input_shape"] == "[1, 8, 8]" and attrs["num_classes"] == 10 and type(attrs["num_classes"]) is int
        assert json.dumps(attrs)  # plain values: a journal header
