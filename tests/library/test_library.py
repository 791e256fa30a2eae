"""Tests of the HDF5 architecture library (menndl.library)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from menndl.errors import UserError
from menndl.library import EVALUATION_FIELDS, FORMAT_NAME, FORMAT_VERSION, MISSING
from menndl.library.reader import Library
from menndl.library.writer import LibraryWriter

REPO_ROOT = Path(__file__).resolve().parents[2]
JOB = 'name = "tiny"\n[search]\npopulation = 4  # ünïcödé comment\n'


def make_record(i: int) -> dict[str, Any]:
    """A complete record with every field set."""
    return {
        "id": i,
        "genome": json.dumps({"layers": [{"type": "conv", "filters": 8 * (i + 1)}]}),
        "hash": f"{i:064x}",
        "parents": json.dumps([i - 1] if i else []),
        "operator": "mutate" if i else "random",
        "status": "ok" if i % 3 else "failed",
        "error": "" if i % 3 else f"Traceback (most recent call last):\n  boom {i} — ✗ 日本語",
        "accuracy": 0.5 + i / 100 if i % 3 else math.nan,
        "loss": 1.0 / (i + 1),
        "params": 1000 * i + 7,
        "flops": 2**40 + i,
        "train_seconds": 12.25 * i,
        "epochs": i % 5,
        "worker_rank": i % 4 + 1,
        "host": f"node{i:03d}.clüster",
        "device": "cuda:0",
        "seed": 1234 + i,
        "submitted_at": 1_700_000_000.5 + i,
        "finished_at": 1_700_000_100.25 + i,
    }


def assert_same(got: Any, want: Any) -> None:
    if isinstance(want, float) and math.isnan(want):
        assert isinstance(got, float) and math.isnan(got)
    else:
        assert got == want
        assert type(got) is type(want)


def write_library(path: Path, n: int = 3, **kwargs: Any) -> list[dict[str, Any]]:
    records = [make_record(i) for i in range(n)]
    with LibraryWriter(path, job_text=JOB, **kwargs) as writer:
        for record in records:
            writer.append(record)
    return records


def one_line_naming(exc: pytest.ExceptionInfo[UserError], path: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert path.name in message
    return message


# ------------------------------------------------------------------ roundtrip


def test_roundtrip_exact_values(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    records = write_library(
        path, n=6, attrs={"menndl_version": "0.1.0", "dataset_rows": 60000, "ratio": 0.25}
    )
    with Library.open(path) as lib:
        assert len(lib) == 6
        assert lib.job_text == JOB
        assert lib.attrs["format"] == FORMAT_NAME
        assert lib.attrs["format_version"] == FORMAT_VERSION
        assert lib.attrs["menndl_version"] == "0.1.0"
        assert lib.attrs["dataset_rows"] == 60000 and type(lib.attrs["dataset_rows"]) is int
        assert lib.attrs["ratio"] == 0.25 and type(lib.attrs["ratio"]) is float
        assert lib.attrs["created_at"].endswith("+00:00")
        got = lib.records()
        assert len(got) == len(records)
        for g, w in zip(got, records):
            assert set(g) == {name for name, _ in EVALUATION_FIELDS}
            for name in w:
                assert_same(g[name], w[name])
        for w in records:
            g = lib.record(w["id"])
            for name in w:
                assert_same(g[name], w[name])
        accuracy = lib.column("accuracy")
        assert accuracy.dtype == np.float64 and np.isnan(accuracy[0])
        hosts = lib.column("host")
        assert hosts.dtype == object and hosts.tolist() == [r["host"] for r in records]
        assert lib.column("flops").dtype == np.int64
        assert lib.column("id").tolist() == list(range(6))
    # records from a cold reader (nothing cached) equal those from a warm one
    with Library.open(path) as lib:
        g = lib.record(2)
        assert g["error"] == "" and g["genome"] == records[2]["genome"]


def test_absent_fields_read_as_missing(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    with LibraryWriter(path, job_text=JOB) as writer:
        writer.append({"id": 7, "status": "failed", "error": "oom", "params": None})
    with Library.open(path) as lib:
        rec = lib.record(7)
    assert rec["status"] == "failed" and rec["error"] == "oom"
    for name, kind in EVALUATION_FIELDS:
        if name in ("id", "status", "error"):
            continue
        assert_same(rec[name], MISSING[kind])


def test_json_fields_accept_python_values(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    with LibraryWriter(path, job_text=JOB) as writer:
        writer.append({"id": 1, "parents": [0, 3], "genome": {"a": "ü"}})
    with Library.open(path) as lib:
        rec = lib.record(1)
    assert json.loads(rec["parents"]) == [0, 3]
    assert json.loads(rec["genome"]) == {"a": "ü"}


def test_set_pareto_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    with LibraryWriter(path, job_text=JOB) as writer:
        for i in range(4):
            writer.append(make_record(i))
        writer.set_pareto([3, 1, np.int64(2)])
    with Library.open(path) as lib:
        assert lib.pareto_ids() == [3, 1, 2]
        assert all(type(i) is int for i in lib.pareto_ids())
    # replacing with a shorter list and with an empty one
    path2 = tmp_path / "lib2.h5"
    with LibraryWriter(path2, job_text=JOB) as writer:
        writer.set_pareto([5, 6, 7])
        writer.set_pareto([9])
    with Library.open(path2) as lib:
        assert lib.pareto_ids() == [9]
    path3 = tmp_path / "lib3.h5"
    with LibraryWriter(path3, job_text=JOB) as writer:
        writer.set_pareto([1, 2])
        writer.set_pareto([])
    with Library.open(path3) as lib:
        assert lib.pareto_ids() == []


def test_flush_every_buffers_and_close_writes_rest(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    writer = LibraryWriter(path, job_text=JOB, flush_every=5)
    for i in range(7):
        writer.append(make_record(i))
    assert len(writer) == 7
    with h5py.File(path, "r") as f:  # only the first batch of 5 is in the HDF5 file
        assert int(f["evaluations"].attrs["count"]) == 5
    with Library.open(path) as lib:  # ... and a reader sees those the journal has: 5 until the next commit
        assert len(lib) == 5 and lib.live
    writer.commit()
    with Library.open(path) as lib:  # ... then all 7 through the journal
        assert len(lib) == 7 and lib.live
    writer.close()
    assert not Path(str(path) + ".journal").exists()
    writer.close()  # idempotent
    assert len(writer) == 7
    with Library.open(path) as lib:
        assert len(lib) == 7
        assert lib.column("id").tolist() == list(range(7))
    with pytest.raises(ValueError):
        writer.append(make_record(8))


def test_strings_with_nul_and_surrogates_are_stored(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    with LibraryWriter(path, job_text=JOB) as writer:
        writer.append({"id": 0, "error": "a\x00b\udcffc"})
    with Library.open(path) as lib:
        assert lib.record(0)["error"] == "a\ufffdb\ufffdc"


# ------------------------------------------------------ programming errors


def test_writer_rejects_bad_records_and_arguments(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    with LibraryWriter(path, job_text=JOB) as writer:
        with pytest.raises(ValueError, match="accuracyy"):
            writer.append({"id": 1, "accuracyy": 0.5})
        with pytest.raises(TypeError, match="params"):
            writer.append({"id": 1, "params": "many"})
        with pytest.raises(TypeError, match="accuracy"):
            writer.append({"id": 1, "accuracy": "0.5"})
        with pytest.raises(TypeError, match="host"):
            writer.append({"id": 1, "host": 3})
        assert len(writer) == 0
    with pytest.raises(ValueError, match="reserved"):
        LibraryWriter(tmp_path / "b.h5", job_text=JOB, attrs={"format": "x"})
    with pytest.raises(TypeError):
        LibraryWriter(tmp_path / "c.h5", job_text=JOB, attrs={"x": [1, 2]})
    with pytest.raises(ValueError):
        LibraryWriter(tmp_path / "d.h5", job_text=JOB, flush_every=0)
    assert not any((tmp_path / n).exists() for n in ("b.h5", "c.h5", "d.h5"))


# ------------------------------------------------------------ user errors


def test_existing_path_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "taken.h5"
    write_library(path, n=2)
    before = path.read_bytes()
    with pytest.raises(UserError) as exc:
        LibraryWriter(path, job_text=JOB)
    assert "already exists" in one_line_naming(exc, path)
    assert "--library" in str(exc.value)
    assert path.read_bytes() == before

    text = tmp_path / "notes.txt"
    text.write_text("precious\n")
    with pytest.raises(UserError):
        LibraryWriter(text, job_text=JOB)
    assert text.read_text() == "precious\n"


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "lib.h5"
    with pytest.raises(UserError) as exc:
        LibraryWriter(path, job_text=JOB)
    one_line_naming(exc, path)
    assert "does not exist" in str(exc.value)
    assert not path.parent.exists()


def _text_file(path: Path) -> None:
    path.write_text("this is not HDF5\n" * 100)


def _truncated(path: Path) -> None:
    write_library(path, n=20)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _no_format_attr(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(3))
        f.attrs["something"] = "else"


def _wrong_format_attr(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "some-other-format"


def _newer_version(path: Path) -> None:
    write_library(path, n=1)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = np.int64(99)


def _empty_file(path: Path) -> None:
    path.write_bytes(b"")


def _missing_column(path: Path) -> None:
    write_library(path, n=1)
    with h5py.File(path, "r+") as f:
        del f["evaluations/loss"]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_text_file, "not an HDF5 file"),
        (_empty_file, "not an HDF5 file"),
        (_truncated, "truncated or corrupt"),
        (_no_format_attr, "is not a menndl library"),
        (_wrong_format_attr, "is not a menndl library"),
        (_newer_version, "newer menndl (format 99); this menndl reads up to 1"),
        (_missing_column, "/evaluations/loss"),
    ],
    ids=["text", "empty", "truncated", "no-format", "wrong-format", "version-99", "no-column"],
)
def test_open_refuses_bad_files(tmp_path: Path, make: Any, expected: str) -> None:
    path = tmp_path / "bad-library.h5"
    make(path)
    with pytest.raises(UserError) as exc:
        Library.open(path)
    assert expected in one_line_naming(exc, path)


def test_open_missing_file_and_folder(tmp_path: Path) -> None:
    path = tmp_path / "nope.h5"
    with pytest.raises(UserError) as exc:
        Library.open(path)
    assert "does not exist" in one_line_naming(exc, path)
    with pytest.raises(UserError) as exc:
        Library.open(tmp_path)
    one_line_naming(exc, tmp_path)


def test_unknown_column_and_id(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    write_library(path, n=2)
    with Library.open(path) as lib:
        with pytest.raises(UserError) as exc:
            lib.column("acc")
        message = one_line_naming(exc, path)
        assert "'acc'" in message and "accuracy" in message and "finished_at" in message
        with pytest.raises(UserError) as exc:
            lib.record(42)
        assert "42" in one_line_naming(exc, path)


# ---------------------------------------------------------- data, not code


def test_no_object_opaque_or_pickle_dtypes(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    with LibraryWriter(path, job_text=JOB, attrs={"v": "1", "n": 3, "x": 1.5, "b": True}) as w:
        for i in range(3):
            w.append(make_record(i))
        w.set_pareto([1, 2])

    allowed = {h5py.h5t.INTEGER, h5py.h5t.FLOAT, h5py.h5t.STRING}
    seen: list[str] = []

    def check_type(where: str, tid: h5py.h5t.TypeID) -> None:
        cls = tid.get_class()
        assert cls in allowed, f"{where}: HDF5 type class {cls} is not numeric or string"
        if cls == h5py.h5t.STRING:
            assert tid.is_variable_str(), f"{where}: fixed-length string"
            assert tid.get_cset() == h5py.h5t.CSET_UTF8, f"{where}: not UTF-8"
        seen.append(where)

    def check_attrs(obj: h5py.HLObject, where: str) -> None:
        for name in obj.attrs:
            check_type(f"{where}@{name}", obj.attrs.get_id(name).get_type())

    def visit(name: str, obj: h5py.HLObject) -> None:
        check_attrs(obj, name)
        if isinstance(obj, h5py.Dataset):
            assert obj.dtype.kind in "iufO", f"{name}: dtype {obj.dtype}"
            if obj.dtype.kind == "O":
                assert h5py.check_string_dtype(obj.dtype) is not None, f"{name}: object dtype"
            check_type(name, obj.id.get_type())

    with h5py.File(path, "r") as f:
        check_attrs(f, "/")
        f.visititems(visit)
    assert "evaluations/genome" in seen and "pareto" in seen and "/@job" in seen


# ------------------------------------------------------------ live reading


def test_second_process_reads_while_writer_open(tmp_path: Path) -> None:
    path = tmp_path / "live.h5"
    script = textwrap.dedent(
        """
        import json, sys
        from menndl.library.reader import Library
        with Library.open(sys.argv[1]) as lib:
            recs = lib.records()
            print(json.dumps({"n": len(lib), "ids": [r["id"] for r in recs],
                              "host": recs[-1]["host"], "pareto": lib.pareto_ids(),
                              "job": lib.job_text}))
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with LibraryWriter(path, job_text=JOB, flush_every=2) as writer:
        for i in range(4):
            writer.append(make_record(i))
        writer.set_pareto([1, 3])
        result = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=REPO_ROOT,
        )
        assert result.returncode == 0, result.stderr
        seen = json.loads(result.stdout)
        assert seen == {
            "n": 4,
            "ids": [0, 1, 2, 3],
            "host": make_record(3)["host"],
            "pareto": [1, 3],
            "job": JOB,
        }
        # the writer keeps working after the reader is done
        writer.append(make_record(4))
    with Library.open(path) as lib:
        assert len(lib) == 5
