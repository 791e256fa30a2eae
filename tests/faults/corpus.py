"""A corpus of malformed inputs: job files, datasets, libraries, seed genomes, command lines.

Each `Case` names the files it writes into its own folder and the ``menndl`` arguments to run;
``{d}`` is that folder and ``{keep}`` a real library that exists before the case runs (it must be
byte-identical afterwards). Every case must end as one line ``menndl: error: ...`` and exit status 2.
`CASES` holds them all (over 200); `test_bad_input.py` runs them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

Writer = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """One malformed input and the command that reads it."""

    kind: str
    name: str
    argv: tuple[str, ...]
    files: dict[str, bytes | str | Writer] = field(default_factory=dict)
    fragment: str = ""  # a piece of text the error line must contain (the file, key or value at fault)

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.name}"


GOOD_JOB = """\
name = "bad-input"
seed = 1
[data]
source = "{source}"
[search]
population = 4
evaluations = 4
[space]
max_features = 2
max_head = 1
[training]
epochs = 1
max_seconds = 5
"""

# ------------------------------------------------------------------------------------------ job files


def _job_with(section: str, key: str, value: str, source: str = "digits") -> str:
    """The good job with ``key = value`` set in ``[section]`` (replacing it if present)."""
    lines = GOOD_JOB.format(source=source).splitlines()
    header = f"[{section}]" if section else None
    out, placed, current = [], False, None
    for line in lines:
        if line.startswith("["):
            if current == header and not placed:
                out.append(f"{key} = {value}")
                placed = True
            current = line
        elif current == header and line.split("=")[0].strip() == key:
            continue
        out.append(line)
    if not placed:
        if current == header:
            out.append(f"{key} = {value}")
        elif header is None:
            out.insert(0, f"{key} = {value}")
        else:
            out += [header, f"{key} = {value}"]
    return "\n".join(out) + "\n"


def _run_job(text: str, kind: str, name: str, fragment: str, resume: bool) -> Case:
    argv = ("run", "{d}/job.toml", "--library", "{keep}", "--resume") if resume else (
        "run", "{d}/job.toml", "--library", "{d}/new.h5")
    return Case(kind, name, argv, {"job.toml": text}, fragment)


SYNTAX = {
    "unclosed-table": "[search\nevaluations = 3\n",
    "missing-value": "[search]\nevaluations =\n",
    "unterminated-string": '[data]\nsource = "digits\n',
    "duplicate-key": "[search]\nevaluations = 3\nevaluations = 4\n",
    "duplicate-table": "[search]\nevaluations = 3\n[search]\npopulation = 4\n",
    "bare-word": "[search]\nevaluations = three\n",
    "binary-garbage": "\x00\x01\x02 = \x03",
    "python-not-toml": "search = dict(evaluations=3)\n",
    "json-not-toml": '{"search": {"evaluations": 3}}',
    "yaml-not-toml": "search:\n  evaluations: 3\n",
    "bad-escape": '[data]\nsource = "dig\\qits"\n',
    "array-unclosed": "[search]\nobjectives = ['accuracy', 'params'\n",
}

# (section, key, value, fragment): wrong types for every kind of field
WRONG_TYPES = [
    ("", "name", "3", "name"), ("", "seed", "'one'", "seed"), ("", "seed", "1.5", "seed"),
    ("", "description", "[1]", "description"), ("", "library", "3", "library"), ("", "name", "true", "name"),
    ("data", "source", "3", "data.source"), ("data", "validation_fraction", "'half'", "data.validation_fraction"),
    ("data", "test_fraction", "true", "data.test_fraction"), ("data", "split_seed", "0.5", "data.split_seed"),
    ("search", "population", "'ten'", "search.population"), ("search", "population", "4.0", "search.population"),
    ("search", "evaluations", "[4]", "search.evaluations"), ("search", "time_limit", "'1h'", "search.time_limit"),
    ("search", "objectives", "'accuracy'", "search.objectives"), ("search", "objectives", "[1, 2]", "objectives"),
    ("search", "crossover_probability", "'0.3'", "search.crossover_probability"),
    ("search", "max_params", "1e5", "search.max_params"), ("search", "aging", "1", "search.aging"),
    ("search", "task_deadline", "'60s'", "search.task_deadline"), ("search", "prefetch", "true", "search.prefetch"),
    ("search", "rerank_interval", "{}", "search.rerank_interval"),
    ("space", "max_features", "'six'", "space.max_features"), ("space", "max_head", "1.5", "space.max_head"),
    ("space", "filters", "8", "space.filters"), ("space", "filters", "['a', 'b']", "space.filters"),
    ("space", "kernels", "3", "space.kernels"), ("space", "activations", "'relu'", "space.activations"),
    ("space", "learning_rate", "0.01", "space.learning_rate"), ("space", "batch_sizes", "[32.5]", "batch_sizes"),
    ("space", "optimizers", "[1]", "space.optimizers"), ("space", "block_types", "'conv'", "space.block_types"),
    ("space", "budget", "1", "space.budget"), ("space", "max_dropout", "'0.5'", "space.max_dropout"),
    ("space", "mutation_add_block", "'1'", "space.mutation_add_block"),
    ("training", "epochs", "'ten'", "training.epochs"), ("training", "max_seconds", "'30s'", "training.max_seconds"),
    ("training", "precision", "16", "training.precision"), ("training", "device", "0", "training.device"),
    ("training", "early_stopping", "'yes'", "training.early_stopping"),
    ("training", "early_stopping_fractions", "0.5", "training.early_stopping_fractions"),
    ("training", "channels_last", "true", "training.channels_last"),
    ("library", "flush_records", "'many'", "library.flush_records"),
    ("library", "flush_seconds", "[1]", "library.flush_seconds"), ("library", "keep_weights", "true", "keep_weights"),
    ("library", "seed_from", "'old.h5'", "library.seed_from"), ("library", "seed_top", "2.5", "library.seed_top"),
    ("library", "seed_by", "1", "library.seed_by"), ("library", "fold", "true", "library.fold"),
]

UNKNOWN_KEYS = [
    ("", "turbo", "true", "turbo"), ("search", "generations", "10", "search.generations"),
    ("data", "path", "'x.h5'", "data.path"), ("training", "lr", "0.1", "training.lr"),
    ("space", "layers", "5", "space.layers"), ("library", "path", "'x.h5'", "library.path"),
    ("model", "depth", "3", "model"), ("Search", "evaluations", "3", "Search"),
]

OUT_OF_RANGE = [
    ("", "seed", "-1", "seed"), ("", "seed", "9223372036854775808", "seed"),
    ("data", "validation_fraction", "0", "data.validation_fraction"),
    ("data", "validation_fraction", "1.5", "data.validation_fraction"),
    ("data", "test_fraction", "-0.1", "data.test_fraction"), ("data", "test_fraction", "1", "data.test_fraction"),
    ("data", "source", "''", "data.source"), ("data", "source", "'imagenet'", "imagenet"),
    ("data", "source", "'data.csv'", "data.csv"), ("data", "validation_fraction", "nan", "validation_fraction"),
    ("search", "population", "1", "search.population"), ("search", "population", "-4", "search.population"),
    ("search", "evaluations", "0", "search.evaluations"), ("search", "time_limit", "-5", "search.time_limit"),
    ("search", "time_limit", "inf", "search.time_limit"), ("search", "objectives", "[]", "search.objectives"),
    ("search", "objectives", "['speed']", "speed"), ("search", "objectives", "['params', 'params']", "objectives"),
    ("search", "crossover_probability", "1.5", "search.crossover_probability"),
    ("search", "max_params", "0", "search.max_params"), ("search", "max_flops", "-1", "search.max_flops"),
    ("search", "task_deadline", "0", "search.task_deadline"), ("search", "prefetch", "-1", "search.prefetch"),
    ("search", "rerank_interval", "0", "search.rerank_interval"),
    ("space", "max_features", "0", "space.max_features"), ("space", "max_head", "-1", "space.max_head"),
    ("space", "filters", "[0, 8]", "space.filters"), ("space", "kernels", "[2, 4]", "space.kernels"),
    ("space", "strides", "[0]", "space.strides"), ("space", "dilations", "[-1]", "space.dilations"),
    ("space", "pool_sizes", "[1]", "space.pool_sizes"), ("space", "dense_units", "[0, 4]", "space.dense_units"),
    ("space", "activations", "['sigmoidish']", "sigmoidish"), ("space", "activations", "[]", "space.activations"),
    ("space", "max_dropout", "0.95", "space.max_dropout"), ("space", "learning_rate", "[0, 1e-2]", "learning_rate"),
    ("space", "batch_sizes", "[0]", "space.batch_sizes"), ("space", "optimizers", "['lbfgs']", "lbfgs"),
    ("space", "weight_decay", "[-1, 0]", "space.weight_decay"), ("space", "momentum", "[0.5, 1.5]", "momentum"),
    ("space", "schedules", "['exponential']", "exponential"), ("space", "budget", "[0, 1]", "space.budget"),
    ("space", "block_types", "['conv', 'lstm']", "lstm"), ("space", "mutation_add_block", "-1", "mutation_add_block"),
    ("space", "max_skips", "-1", "space.max_skips"),
    ("training", "epochs", "0", "training.epochs"), ("training", "max_seconds", "0", "training.max_seconds"),
    ("training", "max_seconds", "1e12", "training.max_seconds"), ("training", "precision", "'fp8'", "fp8"),
    ("training", "device", "'tpu'", "tpu"), ("training", "channels_last", "'maybe'", "maybe"),
    ("training", "early_stopping_fractions", "[0.5, 1.5]", "early_stopping_fractions"),
    ("training", "early_stopping_quantile", "2", "early_stopping_quantile"),
    ("training", "early_stopping_min_results", "0", "early_stopping_min_results"),
    ("library", "flush_records", "0", "library.flush_records"), ("library", "flush_seconds", "-1", "flush_seconds"),
    ("library", "keep_weights", "-3", "library.keep_weights"), ("library", "seed_top", "0", "library.seed_top"),
    ("library", "seed_by", "'luck'", "luck"), ("library", "seed_from", "['missing-old.h5']", "missing-old.h5"),
    ("library", "fold", "'thread'", "library.fold"),
]
FRESH_ONLY = {"seed_from"}  # read when a search starts, not when it resumes

CONTRADICTIONS = [
    ("split-fractions-leave-no-training", "[data]\nsource = 'digits'\nvalidation_fraction = 0.6\ntest_fraction = 0.5\n"
     "[search]\nevaluations = 3\n", "validation_fraction"),
    ("filters-min-above-max", "[search]\nevaluations = 3\n[space]\nfilters = [64, 8]\n", "space.filters"),
    ("dense-min-above-max", "[search]\nevaluations = 3\n[space]\ndense_units = [64, 8]\n", "space.dense_units"),
    ("learning-rate-reversed", "[search]\nevaluations = 3\n[space]\nlearning_rate = [0.1, 0.001]\n", "learning_rate"),
    ("budget-reversed", "[search]\nevaluations = 3\n[space]\nbudget = [1.0, 0.5]\n", "space.budget"),
    ("no-conv-blocks", "[search]\nevaluations = 3\n[space]\nblock_types = ['dense']\n", "conv"),
    ("all-mutations-zero", "[search]\nevaluations = 3\n[space]\nmutation_add_block = 0\nmutation_remove_block = 0\n"
     "mutation_alter_block = 0\nmutation_add_skip = 0\nmutation_remove_skip = 0\nmutation_alter_training = 0\n",
     "mutation"),
    ("no-budget", "[search]\npopulation = 4\n", "budget"),
    ("early-stopping-fractions-repeated", "[search]\nevaluations = 3\n[training]\nearly_stopping = true\n"
     "early_stopping_fractions = [0.5, 0.5]\n", "early_stopping_fractions"),
    ("seed-from-itself", "[search]\nevaluations = 3\n[library]\nseed_from = ['job.toml']\n", "job.toml"),
    ("validation-fraction-and-test-sum-to-1", "[search]\nevaluations = 3\n[data]\nvalidation_fraction = 0.5\n"
     "test_fraction = 0.5\n", "leave no training data"),
]


def job_cases() -> list[Case]:
    """Syntax errors, wrong types, unknown keys, values out of range, contradictory settings."""
    cases = []
    for i, (name, text) in enumerate(SYNTAX.items()):
        cases.append(_run_job(text, "job-syntax", name, "job.toml", resume=i % 2 == 1))
    for i, (section, key, value, fragment) in enumerate(WRONG_TYPES):
        name = f"{section or 'top'}.{key}={value}"
        cases.append(_run_job(_job_with(section, key, value), "job-type", name, fragment, resume=i % 2 == 1))
    for i, (section, key, value, fragment) in enumerate(UNKNOWN_KEYS):
        name = f"{section or 'top'}.{key}"
        cases.append(_run_job(_job_with(section, key, value), "job-unknown", name, fragment, resume=i % 2 == 1))
    for i, (section, key, value, fragment) in enumerate(OUT_OF_RANGE):
        name = f"{section or 'top'}.{key}={value}"
        resume = i % 2 == 1 and key not in FRESH_ONLY
        cases.append(_run_job(_job_with(section, key, value), "job-range", name, fragment, resume=resume))
    for i, (name, text, fragment) in enumerate(CONTRADICTIONS):
        cases.append(_run_job(text, "job-contradiction", name, fragment, resume=i % 2 == 1 and "seed" not in name))
    cases.append(Case("job-file", "missing", ("run", "{d}/nope.toml", "--library", "{d}/new.h5"), {}, "nope.toml"))
    cases.append(Case("job-file", "directory", ("check", "{d}"), {}, "directory"))
    cases.append(Case("job-file", "not-utf8", ("check", "{d}/job.toml"), {"job.toml": b"\xff\xfe[search]"},
                      "job.toml"))  # fmt: skip
    cases.append(Case("job-file", "empty", ("check", "{d}/job.toml"), {"job.toml": ""}, "budget"))
    return cases


# ------------------------------------------------------------------------------------------- datasets

_RNG = np.random.default_rng(0)
X = _RNG.normal(size=(40, 1, 4, 4)).astype(np.float32)
Y = np.arange(40) % 3


def _arrays(**arrays: np.ndarray) -> dict[str, np.ndarray]:
    out = {"x": X, "y": Y}
    out.update(arrays)
    return {k: v for k, v in out.items() if v is not None}


DATA_VARIANTS: dict[str, tuple[dict, str]] = {
    "missing-x": (_arrays(x=None), "missing 'x'"),
    "missing-y": (_arrays(y=None), "missing 'y'"),
    "lengths-differ": (_arrays(y=Y[:30]), "samples"),
    "x-1d": (_arrays(x=np.zeros(40, np.float32)), "'x' has shape"),
    "x-2d": (_arrays(x=np.zeros((40, 16), np.float32)), "channel axis"),
    "x-6d": (_arrays(x=np.zeros((40, 1, 2, 2, 2, 2), np.float32)), "'x' has shape"),
    "x-nan": (_arrays(x=np.where(np.arange(640).reshape(40, 1, 4, 4) == 7, np.nan, X)), "NaN"),
    "x-inf": (_arrays(x=np.where(np.arange(640).reshape(40, 1, 4, 4) == 9, np.inf, X)), "infinite"),
    "x-too-big-for-float32": (_arrays(x=np.full((40, 1, 4, 4), 1e300)), "float32"),
    "x-strings": (_arrays(x=np.array([["a"]] * 40, dtype="S1").reshape(40, 1, 1)), "'x' has dtype"),
    "x-complex": (_arrays(x=X.astype(np.complex64)), "'x' has dtype"),
    "x-empty-samples": (_arrays(x=np.zeros((40, 1, 0, 4), np.float32)), "must not be empty"),
    "no-samples": (_arrays(x=np.zeros((0, 1, 4, 4), np.float32), y=np.zeros(0, np.int64)), "no samples"),
    "y-2d": (_arrays(y=Y.reshape(20, 2)), "'y' has shape"),
    "y-negative": (_arrays(y=Y - 1), "negative"),
    # fractional labels are regression targets (data.task = "auto"): a NaN among them is refused as such
    "y-fractional-nan": (_arrays(y=np.where(Y == 1, np.nan, Y + 0.5)), "NaN or infinite targets"),
    "y-nan": (_arrays(y=np.where(Y == 1, np.nan, Y)), "NaN"),
    "y-huge": (_arrays(y=np.where(Y == 1, 2**40, Y)), "label"),
    "y-one-class": (_arrays(y=np.zeros(40, np.int64)), "one class"),
    "y-strings": (_arrays(y=np.array([b"cat"] * 40)), "'y' has dtype"),
    "x-val-without-y-val": (_arrays(x_val=X[:5]), "'y_val' is missing"),
    "x-val-shape-differs": (_arrays(x_val=np.zeros((5, 1, 3, 3), np.float32), y_val=Y[:5]), "'x_val'"),
    "y-test-length-differs": (_arrays(x_test=X[:5], y_test=Y[:3]), "y_test"),
    "too-few-for-splits": (_arrays(x=X[:2], y=np.array([0, 1])), ""),
}


def _write_h5(arrays: dict[str, np.ndarray]) -> Writer:
    def write(path: Path) -> None:
        with h5py.File(path, "w") as f:
            for key, value in arrays.items():
                f[key] = value
    return write


def _write_npz(arrays: dict[str, np.ndarray]) -> Writer:
    def write(path: Path) -> None:
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
    return write


def _write_npz_objects(path: Path) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, x=np.array([object()] * 40, dtype=object), y=Y)


def _data_case(name: str, filename: str, content: bytes | str | Writer, fragment: str, i: int,
               settings: str = "") -> Case:  # fmt: skip
    resume = i % 3 == 2
    argv = ("run", "{d}/job.toml", "--library", "{keep}", "--resume") if resume else (
        ("check", "{d}/job.toml") if i % 3 == 1 else ("run", "{d}/job.toml", "--library", "{d}/new.h5"))
    job = GOOD_JOB.format(source=filename).replace("[search]", f"{settings}[search]")
    files = {"job.toml": job, filename: content}
    return Case("data", name, argv, files, fragment or filename)


def _write_npy_without_labels(path: Path) -> None:
    np.save(path, X)


def _write_shards(missing: int | None) -> Writer:
    """A file whose virtual 'x' and 'y' join three shard files beside it; shard ``missing`` is then removed."""
    def write(path: Path) -> None:
        x_layout = h5py.VirtualLayout(shape=X.shape, dtype=X.dtype)
        y_layout = h5py.VirtualLayout(shape=Y.shape, dtype=Y.dtype)
        for i, (start, stop) in enumerate(((0, 10), (10, 25), (25, 40))):
            shard = path.with_name(f"shard{i}.h5")
            with h5py.File(shard, "w") as f:
                f["x"], f["y"] = X[start:stop], Y[start:stop]
            x_layout[start:stop] = h5py.VirtualSource(shard.name, "x", shape=(stop - start, *X.shape[1:]))
            y_layout[start:stop] = h5py.VirtualSource(shard.name, "y", shape=(stop - start,))
        with h5py.File(path, "w") as f:
            f.create_virtual_dataset("x", x_layout)
            f.create_virtual_dataset("y", y_layout)
        if missing is not None:
            path.with_name(f"shard{missing}.h5").unlink()
    return write


def _write_external_link(target: str) -> Writer:
    def write(path: Path) -> None:
        with h5py.File(path, "w") as f:
            f["x"] = h5py.ExternalLink(target, "/samples")
            f["y"] = Y
    return write


def _write_nan_in_last_chunk(path: Path) -> None:
    x = X.copy()
    x[37, 0, 2, 1] = np.nan
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x, chunks=(8, 1, 4, 4), compression="gzip")
        f["y"] = Y


def _write_nested(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f["images/train"], f["labels/train"] = X, Y


#: Cases of the data layer's newer inputs: (name, file, writer, fragment, ``[data]`` settings).
NEW_FORMAT_CASES: list[tuple[str, str, Writer, str, str]] = [
    ("npy-without-labels", "images.npy", _write_npy_without_labels, "missing 'y'", ""),
    ("npy-labels-key-missing", "images.npy", _write_npy_without_labels, "'labels'", 'y_key = "labels"\n'),
    ("virtual-shard-missing", "joined.h5", _write_shards(1), "shard1.h5", ""),
    ("external-link-dangling", "index.h5", _write_external_link("gone.h5"), "gone.h5", ""),
    ("nan-in-last-chunk", "chunked.h5", _write_nan_in_last_chunk, "sample 37", ""),
    ("label-above-num-classes", "data.h5", _write_h5(_arrays()), "sample 2", "num_classes = 2\n"),
    ("custom-key-missing", "nested.h5", _write_nested, "'images/val'",
     'x_key = "images/train"\ny_key = "labels/train"\nx_val_key = "images/val"\ny_val_key = "labels/train"\n'),
    ("custom-key-absent", "nested.h5", _write_nested, "missing 'imgs'", 'x_key = "imgs"\n'),
]


def write_files(case: Case, folder: Path) -> None:
    """Write the case's files into ``folder``."""
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def open_and_scan(job_path: Path) -> None:
    """What the master does with a job's data before a search: open it (metadata, labels), then scan it.

    Raises:
        UserError: the job or its data is at fault (one line).
    """
    from menndl.data import load_dataset
    from menndl.data.scan import scan_dataset
    from menndl.job import load_job

    data = load_job(job_path).data
    with load_dataset(
        data.source,
        base_dir=job_path.parent,
        validation_fraction=data.validation_fraction,
        test_fraction=data.test_fraction,
        split_seed=data.split_seed,
        keys=data.keys(),
        num_classes=data.num_classes,
    ) as opened:
        scan_dataset(opened)


def data_cases() -> list[Case]:
    """Missing files, wrong containers, missing keys, bad shapes, values and labels; in HDF5 and .npz."""
    cases = []
    i = 0
    for name, (arrays, fragment) in DATA_VARIANTS.items():
        for suffix, writer in ((".h5", _write_h5), (".npz", _write_npz)):
            cases.append(_data_case(f"{name}{suffix}", f"data{suffix}", writer(arrays), fragment, i))
            i += 1
    others = [
        ("empty-h5", "data.h5", b"", "data.h5"), ("empty-npz", "data.npz", b"", "empty"),
        ("text-as-h5", "data.h5", "x,y\n1,2\n", "not an HDF5"), ("text-as-npz", "data.npz", "x,y\n", "npz"),
        ("npz-named-h5", "data.h5", _write_npz(_arrays()), "rename it"),
        ("h5-named-npz", "data.npz", _write_h5(_arrays()), "HDF5"),
        ("npy-not-npz", "data.npz", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
         "single .npy"),
        ("truncated-h5", "data.h5", lambda p: (_write_h5(_arrays())(p), p.write_bytes(p.read_bytes()[:3000])), ""),
        ("truncated-npz", "data.npz", lambda p: (_write_npz(_arrays())(p), p.write_bytes(p.read_bytes()[:900])), ""),
        ("object-array-npz", "data.npz", _write_npz_objects, "Python objects"),
        ("group-not-dataset", "data.h5", lambda p: h5py.File(p, "w").create_group("x").file.close(), "group"),
    ]
    for name, filename, content, fragment in others:
        cases.append(_data_case(name, filename, content, fragment, i))
        i += 1
    for name, filename, content, fragment, settings in NEW_FORMAT_CASES:
        cases.append(_data_case(name, filename, content, fragment, i, settings))
        i += 1
    cases.append(Case("data", "missing-file", ("check", "{d}/job.toml"),
                      {"job.toml": GOOD_JOB.format(source="nowhere.h5")}, "nowhere.h5"))  # fmt: skip
    cases.append(Case("data", "directory", ("check", "{d}/job.toml"),
                      {"job.toml": GOOD_JOB.format(source="folder.h5"), "folder.h5/x": "x"}, "directory"))  # fmt: skip
    return cases


# ------------------------------------------------------------------------------------------ libraries


def _copy_keep_then(edit: Callable[[h5py.File], None]) -> Writer:
    """A copy of the good library (path in the KEEP_SOURCE variable at run time), edited."""
    def write(path: Path) -> None:
        import shutil

        shutil.copyfile(KEEP_SOURCE[0], path)
        with h5py.File(path, "r+") as f:
            edit(f)
    return write


KEEP_SOURCE: list[Path] = []  # set by the test before the cases run


def _truncate(fraction: float) -> Writer:
    def write(path: Path) -> None:
        data = Path(KEEP_SOURCE[0]).read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])
    return write


def _set_attr(name: str, value) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        f.attrs[name] = value
    return edit


def _drop(name: str) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f[name]
    return edit


def _replace_column(name: str, values) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        n = f["evaluations"][name].shape[0]
        del f["evaluations"][name]
        f["evaluations"][name] = np.resize(np.asarray(values), n)
    return edit


BAD_LIBRARIES: dict[str, tuple[bytes | str | Writer, str]] = {
    "text": ("just text\n", "lib.h5"),
    "empty": (b"", "lib.h5"),
    "npz": (_write_npz(_arrays()), "lib.h5"),
    "dataset-not-library": (_write_h5(_arrays()), "lib.h5"),
    "truncated-half": (_truncate(0.5), "lib.h5"),
    "truncated-header": (_truncate(0.01), "lib.h5"),
    "newer-version": (_copy_keep_then(_set_attr("format_version", 99)), "99"),
    "other-format": (_copy_keep_then(_set_attr("format", "keras-model")), "keras-model"),
    "no-evaluations": (_copy_keep_then(_drop("evaluations")), "evaluations"),
    "status-is-numbers": (_copy_keep_then(_replace_column("status", [1.0])), "status"),
}

LIBRARY_COMMANDS: list[tuple[str, tuple[str, ...]]] = [
    ("stats", ("library", "{d}/lib.h5", "stats")),
    ("top", ("library", "{d}/lib.h5", "top", "--json")),
    ("show", ("library", "{d}/lib.h5", "show", "0")),
    ("export", ("export", "{d}/lib.h5", "0", "--format", "python", "-o", "{d}/model.py")),
    ("resume", ("run", "{d}/job.toml", "--library", "{d}/lib.h5", "--resume")),
    ("seed-from", ("run", "{d}/seeded.toml", "--library", "{d}/new.h5")),
    ("merge", ("library", "merge", "{d}/lib.h5", "{keep}", "-o", "{d}/merged.h5")),
    ("plot", ("plot", "{d}/lib.h5", "-o", "{d}/plots")),
]


ATTRIBUTE_DAMAGE = {
    "input-shape-not-json": ("input_shape", "[1, 8"),
    "input-shape-strings": ("input_shape", '["a", "b"]'),
    "input-shape-object": ("input_shape", '{"a": 1}'),
    "num-classes-word": ("num_classes", "ten"),
    "num-classes-zero": ("num_classes", 0),
}


def library_cases() -> list[Case]:
    """Files that are not libraries, or damaged or foreign ones, read by every command that reads one."""
    cases = []
    for name, (attr, value) in ATTRIBUTE_DAMAGE.items():
        files = {"lib.h5": _copy_keep_then(_set_attr(attr, value))}
        for command, argv in (("train", ("train", "{d}/lib.h5", "0", "-o", "{d}/w.pt")),
                              ("export", ("export", "{d}/lib.h5", "0", "--format", "python", "-o", "{d}/m.py"))):
            cases.append(Case("library", f"{name}-{command}", argv, files, "input"))
    seeded = GOOD_JOB.format(source="digits") + "[library]\nseed_from = ['lib.h5']\n"
    for name, (content, fragment) in BAD_LIBRARIES.items():
        for command, argv in LIBRARY_COMMANDS:
            files = {"lib.h5": content, "job.toml": GOOD_JOB.format(source="digits"), "seeded.toml": seeded}
            cases.append(Case("library", f"{name}-{command}", argv, files, fragment))
    return cases


# ------------------------------------------------------------------------------------- seed genomes

def _good_genome() -> dict:
    import random

    from menndl.genome import InputSpec, SearchSpace, random_genome

    genome = random_genome(random.Random(3), SearchSpace(max_features=2), InputSpec((1, 8, 8), 10)).to_dict()
    genome["features"] = [{"type": "conv", "filters": 8, "kernel": 3, "stride": 1, "dilation": 1,
                           "activation": "relu", "batch_norm": False, "dropout": 0.0}]  # fmt: skip
    return genome


GOOD_GENOME = _good_genome()

BAD_GENOMES = {
    "not-json": "{features: [",
    "json-list": "[1, 2, 3]",
    "json-number": "42",
    "empty-text": "",
    "unknown-block": json.dumps({**GOOD_GENOME, "features": [{"type": "lstm", "units": 8}]}),
    "unknown-key": json.dumps({**GOOD_GENOME, "pickle": "cos\nsystem\n(S'echo hi'\ntR."}),
    "filters-string": json.dumps({**GOOD_GENOME, "features": [{**GOOD_GENOME["features"][0], "filters": "8"}]}),
    "kernel-even": json.dumps({**GOOD_GENOME, "features": [{**GOOD_GENOME["features"][0], "kernel": 4}]}),
    "newer-format": json.dumps({**GOOD_GENOME, "format": 99}),
    "too-deep": "[" * 100000 + "]" * 100000,
}


def _library_with_genome(text: str) -> Writer:
    def edit(f: h5py.File) -> None:
        column = f["evaluations"]["genome"]
        column[0] = text
    return _copy_keep_then(edit)


def seed_cases() -> list[Case]:
    """Seed libraries (``library.seed_from``) whose stored genomes are malformed or hostile."""
    cases = []
    seeded = GOOD_JOB.format(source="digits") + "[library]\nseed_from = ['seeds.h5']\nseed_top = 100\n"
    for name, text in BAD_GENOMES.items():
        files = {"seeds.h5": _library_with_genome(text), "seeded.toml": seeded}
        cases.append(Case("seed", name, ("run", "{d}/seeded.toml", "--library", "{d}/new.h5"), files, "seeds.h5"))
        if text:  # a row without a genome is shown as it is
            cases.append(Case("seed", f"{name}-show", ("library", "{d}/seeds.h5", "show", "0"), files, "seeds.h5"))
            job = {"seeds.h5": files["seeds.h5"], "job.toml": GOOD_JOB.format(source="digits")}
            resume = ("run", "{d}/job.toml", "--library", "{d}/seeds.h5", "--resume")
            cases.append(Case("seed", f"{name}-resume", resume, job, "seeds.h5"))
    pool = {"type": "pool", "kind": "max", "size": 2}
    misfit = json.dumps({**GOOD_GENOME, "features": [*GOOD_GENOME["features"], *[pool] * 5]})
    files = {"seeds.h5": _library_with_genome(misfit)}
    for command, argv in (("show", ("library", "{d}/seeds.h5", "show", "0")),
                          ("export", ("export", "{d}/seeds.h5", "0", "--format", "python", "-o", "{d}/m.py")),
                          ("train", ("train", "{d}/seeds.h5", "0", "-o", "{d}/w.pt"))):
        cases.append(Case("seed", f"shape-cannot-fit-{command}", argv, files, "does not fit the input"))
    return cases


# --------------------------------------------------------------------------------------- command lines

CLI = [
    ("show-unknown-id", ("library", "{keep}", "show", "99999"), "99999"),
    ("show-negative-id", ("library", "{keep}", "show", "-5"), "-5"),
    ("lineage-unknown-id", ("library", "{keep}", "lineage", "4242"), "4242"),
    ("export-unknown-id", ("export", "{keep}", "777", "--format", "onnx", "-o", "{d}/m.onnx"), "777"),
    ("export-unknown-format", ("export", "{keep}", "0", "--format", "keras", "-o", "{d}/m"), "keras"),
    ("export-missing-library", ("export", "{d}/none.h5", "0", "--format", "python", "-o", "{d}/m.py"), "none.h5"),
    ("export-output-folder-missing", ("export", "{keep}", "0", "--format", "python", "-o", "{d}/a/b/m.py"), "a/b"),
    ("export-weights-missing", ("export", "{keep}", "0", "--format", "python", "-o", "{d}/m.py", "--weights",
                                "{d}/w.pt"), "w.pt"),  # fmt: skip
    ("export-weights-not-torch", ("export", "{keep}", "0", "--format", "state-dict", "-o", "{d}/m.pt", "--weights",
                                  "{d}/job.toml"), "job.toml"),  # fmt: skip
    ("train-unknown-id", ("train", "{keep}", "31337"), "31337"),
    ("train-zero-epochs", ("train", "{keep}", "0", "--epochs", "0"), "--epochs"),
    ("train-negative-seed", ("train", "{keep}", "0", "--seed", "-1"), "--seed"),
    ("top-bad-by", ("library", "{keep}", "top", "--by", "luck"), "luck"),
    ("top-bad-limit", ("library", "{keep}", "top", "--limit", "0"), "--limit"),
    ("top-where-unknown-field", ("library", "{keep}", "top", "--where", "colour<3"), "colour"),
    ("top-where-python", ("library", "{keep}", "top", "--where", "__import__('os').system('id')"), "--where"),
    ("top-where-no-number", ("library", "{keep}", "top", "--where", "params<lots"), "lots"),
    ("top-where-bad-op", ("library", "{keep}", "top", "--where", "params=~3"), "--where"),
    ("top-where-dangling-and", ("library", "{keep}", "top", "--where", "params<3 and"), "--where"),
    ("library-unknown-action", ("library", "{keep}", "explode"), "explode"),
    ("library-no-action", ("library", "{keep}"), "action"),
    ("library-missing", ("library", "{d}/none.h5", "stats"), "none.h5"),
    ("merge-output-exists", ("library", "merge", "{keep}", "{keep}", "-o", "{keep}"), "exists"),
    ("unknown-command", ("explode",), "explode"),
    ("unknown-option", ("run", "{d}/job.toml", "--turbo"), "--turbo"),
    ("evaluations-not-int", ("run", "{d}/job.toml", "--evaluations", "many"), "many"),
    ("evaluations-negative", ("run", "{d}/job.toml", "--evaluations", "-3"), "--evaluations"),
    ("time-limit-nan", ("run", "{d}/job.toml", "--time-limit", "nan"), "--time-limit"),
    ("time-limit-negative", ("run", "{d}/job.toml", "--time-limit", "-1"), "--time-limit"),
    ("seed-negative", ("run", "{d}/job.toml", "--seed", "-1"), "--seed"),
    ("workers-zero", ("run", "{d}/job.toml", "--workers", "0"), "--workers"),
    ("resume-without-library", ("run", "{d}/job.toml", "--resume"), "--library"),
    ("resume-missing-library", ("run", "{d}/job.toml", "--library", "{d}/none.h5", "--resume"), "none.h5"),
    ("resume-other-data", ("run", "{d}/other.toml", "--library", "{keep}", "--resume"), "other data"),
    ("existing-library", ("run", "{d}/job.toml", "--library", "{keep}"), "already exists"),
    ("simulate-zero-workers", ("simulate", "{d}/job.toml", "--workers", "0", "--eval-time", "fixed:1"), "--workers"),
    ("simulate-bad-model", ("simulate", "{d}/job.toml", "--workers", "2", "--eval-time", "gamma:1"), "gamma"),
    ("simulate-negative-time", ("simulate", "{d}/job.toml", "--workers", "2", "--eval-time", "fixed:-1"), "-1"),
    ("simulate-bad-number", ("simulate", "{d}/job.toml", "--workers", "2", "--eval-time", "lognormal:abc"), "abc"),
    ("simulate-missing-library", ("simulate", "{d}/job.toml", "--workers", "2", "--eval-time",
                                  "library:{d}/none.h5"), "none.h5"),  # fmt: skip
    ("bench-unknown", ("bench", "warp-drive"), "warp-drive"),
    ("check-missing-job", ("check", "{d}/none.toml"), "none.toml"),
    ("plot-missing-library", ("plot", "{d}/none.h5", "-o", "{d}/plots"), "none.h5"),
]


def cli_cases() -> list[Case]:
    """Unknown ids, unknown formats and commands, bad numbers and options."""
    other = GOOD_JOB.format(source="data.npz")
    files = {"job.toml": GOOD_JOB.format(source="digits"), "other.toml": other,
             "data.npz": _write_npz(_arrays())}  # fmt: skip
    return [Case("cli", name, argv, files, fragment) for name, argv, fragment in CLI]


CASES: list[Case] = [*job_cases(), *data_cases(), *library_cases(), *seed_cases(), *cli_cases()]
