"""Fuzzing job files and dataset files: no input ends in a traceback, only exit 0 or 2 (one line).

Hypothesis with a fixed seed and bounded example counts (a few seconds each). Job texts are built
from the real tables and keys with values of every TOML type (and some random keys), and also by
mutating a valid job's text; datasets are arrays of random shapes, dtypes and values under random
keys in HDF5, .npz or .npy files, and byte-level damage to valid files. Job files go through the real
command-line entry (``menndl check``); dataset files through what the master does with them, opening and
then scanning them (`corpus.open_and_scan`): accepted, or one line naming the file. The corpus' data cases
run the same way here, independent of the commands.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from corpus import CASES, Case, open_and_scan, write_files
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from menndl.cli import main
from menndl.errors import UserError
from menndl.job import _SECTIONS

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))  # fmt: skip

KEYS = {name: [f.name for f in dataclasses.fields(cls)] for name, cls in _SECTIONS.items()}
DEFAULTS = {
    (name, f.name): f.default
    for name, cls in _SECTIONS.items()
    for f in dataclasses.fields(cls)
    if f.default is not dataclasses.MISSING and f.default is not None
}


def plausible(default):
    """Values near a key's default: the default itself, scaled, negated, zero, or of a neighbouring type."""
    if isinstance(default, bool):
        return st.sampled_from([default, not default])
    if isinstance(default, (int, float)):
        return st.sampled_from([default, default * 2, default / 2 if isinstance(default, float) else default // 2,
                                0, -default, type(default)(1)])  # fmt: skip
    if isinstance(default, tuple):
        return st.sampled_from([list(default), list(default[:1]), list(reversed(default)), []])
    return st.just(default)
VALID_JOB = """name = "fuzz"
seed = 1
[data]
source = "digits"
[search]
population = 4
evaluations = 4
[space]
max_features = 2
filters = [4, 16]
[training]
epochs = 1
max_seconds = 5
"""


def toml_value(value) -> str:
    """A Python value as TOML text (floats with TOML's nan/inf spelling)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + "}"


scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70).filter(lambda n: -(2**63) <= n < 2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, 3, 8, 64, 1e-4, 0.5, 0.99, 1.0, -1, "digits", "auto", "cpu", "relu", "conv", "adam"]),
    st.text(max_size=12),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(st.text(max_size=5), scalars, max_size=2))


@st.composite
def job_texts(draw) -> str:
    """A job built from the real tables and keys (plus unknown ones), every value of any TOML type."""
    hostile = draw(st.integers(0, 9)) == 0  # mostly plausible jobs, so that the later checks are reached
    lines = [f"seed = {toml_value(draw(values if hostile else st.integers(0, 10)))}"]
    for section, keys in KEYS.items():
        if section != "search" and draw(st.booleans()):
            continue
        lines.append(f"[{section}]")
        chosen = draw(st.lists(st.sampled_from(keys + ["bogus"] * hostile), max_size=4, unique=True))
        if section == "data":
            lines.append('source = "digits"')  # keep the data the built-in one: the job is being fuzzed
            chosen = [key for key in chosen if key != "source"]
        if section == "search" and draw(st.integers(0, 4)) > 0:
            lines.append("evaluations = 3")
            chosen = [key for key in chosen if key != "evaluations"]
        for key in chosen:
            default = DEFAULTS.get((section, key))
            near = draw(st.integers(0, 5)) > 0 and default is not None
            lines.append(f"{key} = {toml_value(draw(plausible(default) if near else values))}")
    return "\n".join(lines) + "\n"


@st.composite
def mutated_jobs(draw) -> str:
    """The valid job with a few characters deleted, inserted or replaced."""
    text = VALID_JOB
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["delete", "insert", "replace"]))
        piece = draw(st.text(alphabet='=[]"\'\n #.,-0123456789abcdefnux{}\\', min_size=1, max_size=3))
        if action == "delete":
            text = text[:at] + text[at + len(piece):]
        elif action == "insert":
            text = text[:at] + piece + text[at:]
        else:
            text = text[:at] + piece + text[at + len(piece):]
    return text


def check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> int:
    """Run ``menndl ARGV``: exit 0, or 2 with one error line; never a traceback."""
    try:
        status = main(argv)
    except SystemExit as exc:
        status = int(exc.code or 0)
    out = capsys.readouterr()
    assert status in (0, 2), out.err
    if status == 2:
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("menndl: error: "), out.err
    return status


@seed(20261129)
@FUZZ
@given(text=st.one_of(job_texts(), mutated_jobs()))
def test_fuzzed_job_files(text: str, tmp_path_factory: pytest.TempPathFactory,
                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    job = tmp_path_factory.mktemp("job") / "job.toml"
    job.write_text(text, encoding="utf-8")
    check(["check", str(job)], capsys)


DTYPES = ["float32", "float64", "float16", "int8", "int64", "uint8", "bool", "complex64", "S3", "U2"]
KEYS_DATA = ["x", "y", "x_val", "y_val", "x_test", "y_test", "z"]


@st.composite
def arrays(draw) -> np.ndarray:
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=0, max_size=6)))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    size = int(np.prod(shape)) if shape else 1
    if dtype.kind in "SU":
        flat = np.array(draw(st.lists(st.text("ab", max_size=2), min_size=size, max_size=size)) or [""], dtype=dtype)
    else:
        pool = st.sampled_from([0, 1, 2, 3, -1, 0.5, 2**31, 1e300, float("nan"), float("inf")])
        with np.errstate(all="ignore"):
            flat = np.array(draw(st.lists(pool, min_size=size, max_size=size)) or [0], dtype=np.float64)
            flat = flat.astype(dtype) if dtype.kind in "fc" else np.nan_to_num(flat).clip(-100, 100).astype(dtype)
    return flat[:size].reshape(shape) if size else np.zeros(shape, dtype=dtype)


@st.composite
def dataset_files(draw) -> tuple[str, dict[str, np.ndarray]]:
    suffix = draw(st.sampled_from([".h5", ".npz", ".npy"]))
    keys = draw(st.lists(st.sampled_from(KEYS_DATA), max_size=5, unique=True))
    if draw(st.booleans()):  # mostly well-formed x and y, so that the later checks are reached
        n = draw(st.integers(0, 12))
        keys = [key for key in keys if key not in ("x", "y")]
        base = {"x": np.random.default_rng(n).normal(size=(n, 1, 3, 3)), "y": np.arange(n) % draw(st.integers(1, 3))}
    else:
        base = {}
    return suffix, {**base, **{key: draw(arrays()) for key in keys}}


def write(path: Path, arrays_by_key: dict[str, np.ndarray]) -> None:
    """The arrays as an .npz archive, an HDF5 file, or ``<key>.npy`` files beside each other (``x.npy`` named)."""
    if path.suffix == ".npz":
        with open(path, "wb") as handle:
            np.savez(handle, **arrays_by_key)
    elif path.suffix == ".npy":
        for key, value in arrays_by_key.items():
            np.save(path.with_name(f"{key}.npy"), value, allow_pickle=False)
    else:
        with h5py.File(path, "w") as f:
            for key, value in arrays_by_key.items():
                f[key] = value.astype("S") if value.dtype.kind == "U" else value


def job_for(folder: Path, source: str) -> Path:
    job = folder / "job.toml"
    job.write_text(VALID_JOB.replace('source = "digits"', f'source = "{source}"'))
    return job


def check_data(job: Path, source: str) -> None:
    """Open and scan the job's data: accepted, or a one-line UserError naming the file; never another error."""
    try:
        open_and_scan(job)
    except UserError as exc:
        message = str(exc)
        named = source in message or (source.endswith(".npy") and ".npy:" in message)  # or a file beside it
        assert "\n" not in message and named, message


@seed(20261129)
@FUZZ
@given(case=dataset_files())
def test_fuzzed_dataset_files(case, tmp_path_factory: pytest.TempPathFactory) -> None:
    suffix, content = case
    folder = tmp_path_factory.mktemp("data")
    source = "x.npy" if suffix == ".npy" else f"data{suffix}"
    write(folder / source, content)
    if not (folder / source).exists():  # no 'x' among the .npy files: the file named is missing
        (folder / source).write_bytes(b"")
    check_data(job_for(folder, source), source)


def valid_file(suffix: str) -> bytes:
    x = np.random.default_rng(0).normal(size=(30, 1, 4, 4)).astype(np.float32)
    y = np.arange(30) % 3
    buffer = io.BytesIO()
    if suffix == ".npz":
        np.savez(buffer, x=x, y=y)
    elif suffix == ".npy":
        np.save(buffer, x)
    else:
        with h5py.File(buffer, "w") as f:
            f.create_dataset("x", data=x, chunks=(5, 1, 4, 4), compression="gzip")
            f["y"] = y
    return buffer.getvalue()


VALID = {suffix: valid_file(suffix) for suffix in (".h5", ".npz", ".npy")}


@seed(20261129)
@FUZZ
@given(suffix=st.sampled_from([".h5", ".npz", ".npy"]),
       damage=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.floats(0.05, 1.0))
def test_damaged_dataset_files(suffix: str, damage, cut: float, tmp_path_factory: pytest.TempPathFactory) -> None:
    data = bytearray(VALID[suffix])
    for where, byte in damage:
        data[min(int(where * len(data)), len(data) - 1)] = byte
    folder = tmp_path_factory.mktemp("damaged")
    source = "x.npy" if suffix == ".npy" else f"data{suffix}"
    (folder / source).write_bytes(bytes(data[: max(1, int(cut * len(data)))]))
    if suffix == ".npy":
        np.save(folder / "y.npy", np.arange(30) % 3)
    check_data(job_for(folder, source), source)


DATA_CASES = [case for case in CASES if case.kind == "data"]


@pytest.mark.parametrize("case", DATA_CASES, ids=[case.id for case in DATA_CASES])
def test_data_corpus_through_the_data_layer(case: Case, tmp_path: Path) -> None:
    """Every bad data file of the corpus: one line naming what is at fault, from opening or from the scan."""
    write_files(case, tmp_path)
    with pytest.raises(UserError) as info:
        open_and_scan(tmp_path / "job.toml")
    message = str(info.value)
    assert "\n" not in message, message
    assert case.fragment in message, f"{case.fragment!r} not named in: {message}"
