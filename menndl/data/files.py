"""Opening user datasets: HDF5 files, ``.npz`` archives and ``.npy`` files, checked from their metadata.

A dataset has samples (``(N, C, *spatial)`` with 1 to 3 spatial dimensions) and labels: integer class
labels ``(N,)`` for classification, real-valued targets ``(N,)`` or ``(N, T)`` for regression, integer
masks ``(N, *spatial)`` (one class per pixel, the samples' spatial shape) for segmentation (the task is
``data.task``, inferred from the training labels when ``auto``), and optionally given validation and test
splits.  Their names are `DataKeys`: HDF5 dataset
paths (``"x"``, ``"images/train"``, ...), or for ``.npy`` the stems of files beside the samples file
(``images.npy`` with ``y_key = "labels"`` reads ``labels.npy``).  Samples stay on disk (`SampleArray`);
labels are read whole (masks too, kept in the smallest integer type that holds them).  NaN,
infinities and values too large for float32 are found later by the streaming check
(`menndl.data.scan`), never by loading the samples.  Every mistake is a one-line :class:`UserError`
naming the file and the key at fault.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from menndl.data.arrays import H5Array, MemoryArray, NpyArray, SampleArray, human_bytes, one_line
from menndl.data.keys import DataKeys
from menndl.data.splits import RawSplits
from menndl.errors import UserError

#: File suffixes (lower case) accepted as dataset files.
FILE_SUFFIXES = (".h5", ".hdf5", ".npz", ".npy")

_LAYOUT = "(samples, channels, *spatial) with 1 to 3 spatial dimensions"
#: Largest accepted class label (keeps num_classes sane and int64-safe).
_MAX_LABEL = 2**31 - 1
#: Largest accepted magnitude of a regression target (finite in float32, standardisable).
_MAX_TARGET = 1e30


def open_dataset_file(path: Path, display: str, keys: DataKeys | None = None, task: str = "auto") -> RawSplits:
    """Open and check a dataset file without reading its samples.

    Args:
        path: Resolved path of a ``.h5``, ``.hdf5``, ``.npz`` or ``.npy`` file.
        display: How the file is named in error messages (as the user wrote it).
        keys: Where the arrays are (the defaults ``x``, ``y``, ``x_val``, ... when None).
        task: ``data.task``: ``classification``, ``regression`` or ``auto`` (inferred from ``y``).

    Returns:
        The samples as `SampleArray` objects (open: close them with `RawSplits.close`) and the checked
        labels (int64 class labels, or float32 targets).

    Raises:
        UserError: If the file is missing, unreadable, malformed, or its arrays break any of the rules in
            this module's docstring.
    """
    keys = keys or DataKeys()
    _check_path(path, display)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        samples, labels, found = _open_npz(path, display, keys)
    elif suffix == ".npy":
        samples, labels, found = _open_npy(path, display, keys)
    else:
        samples, labels, found = _open_hdf5(path, display, keys)
    try:
        return check_arrays(samples, labels, found, display, keys, task)
    except BaseException:
        for array in samples.values():
            array.close()
        raise


def _fail(display: str, message: str) -> UserError:
    """Build a one-line UserError prefixed with the file name."""
    return UserError(" ".join(f"{display}: {message}".split()))


def _check_path(path: Path, display: str) -> None:
    """Reject missing files, directories and unreadable files."""
    try:
        exists = path.exists()
        is_dir = path.is_dir()
    except OSError as exc:
        raise _fail(display, f"cannot access the file ({one_line(exc)})") from exc
    if not exists:
        where = "" if str(path) == display else f" (looked for {path})"
        raise _fail(display, f"no such file{where}; expected a dataset file")
    if is_dir:
        raise _fail(display, "is a directory, expected a dataset file")
    if not os.access(path, os.R_OK):
        raise _fail(display, "cannot be read (permission denied)")


def _open_hdf5(
    path: Path, display: str, keys: DataKeys
) -> tuple[dict[str, SampleArray], dict[str, np.ndarray], list[str]]:
    """Open the samples and read the labels named by ``keys`` in an HDF5 file."""
    try:
        if not h5py.is_hdf5(path):
            hint = " (it is a .npz archive: rename it to .npz)" if _sniff(path) == "zip" else ""
            raise _fail(
                display,
                f"is not an HDF5 file{hint}; expected an HDF5 file with datasets '{keys.x}' and '{keys.y}'",
            )
        handle = h5py.File(path, "r")
    except UserError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, RuntimeError, ...
        raise _fail(display, f"cannot be read as HDF5 ({one_line(exc)})") from exc
    samples: dict[str, SampleArray] = {}
    labels: dict[str, np.ndarray] = {}
    try:
        found = sorted(handle.keys())
        for x_key, y_key in keys.pairs():
            if _h5_has(handle, x_key):
                samples[x_key] = H5Array(handle, _h5_dataset(handle, x_key, path, display), path, display, x_key)
            if _h5_has(handle, y_key):
                labels[y_key] = _h5_labels(_h5_dataset(handle, y_key, path, display), y_key, display)
    except BaseException:
        handle.close()
        raise
    if not samples:
        handle.close()
    return samples, labels, found


def _h5_has(handle: h5py.File, key: str) -> bool:
    """Whether ``key`` names something in the file (a dangling external link counts: it fails on open)."""
    try:
        return key in handle or handle.get(key, getlink=True) is not None
    except Exception:
        return False


def _h5_dataset(handle: h5py.File, key: str, path: Path, display: str) -> h5py.Dataset:
    """The dataset ``key``, its links resolved and a virtual dataset's shard files checked."""
    try:
        obj = handle[key]
    except Exception as exc:
        link = handle.get(key, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise _fail(
                display,
                f"'{key}' links to '{link.path}' in file {link.filename}, which cannot be opened ({one_line(exc)})",
            ) from None
        raise _fail(display, f"'{key}' cannot be opened ({one_line(exc)})") from None
    if not isinstance(obj, h5py.Dataset):
        raise _fail(display, f"'{key}' is an HDF5 group, expected a dataset (array)")
    if obj.shape is None:
        raise _fail(display, f"dataset '{key}' is a null (empty) dataset, expected an array")
    if obj.is_virtual:
        for source in obj.virtual_sources():
            shard = Path(source.file_name)
            if source.file_name != "." and not shard.is_absolute():
                shard = path.parent / shard
            if source.file_name != "." and not shard.exists():
                raise _fail(
                    display,
                    f"virtual dataset '{key}' maps rows to shard file {source.file_name}, which does not exist "
                    "(HDF5 would read its rows as zeros)",
                )
    return obj


#: Labels may take at most this share of the memory free when they are read (they are read whole).
LABEL_MEMORY_SHARE = 0.25


def free_memory() -> int:
    """Bytes of memory this machine has available now (psutil's ``available``)."""
    import psutil

    return int(psutil.virtual_memory().available)


def _check_label_bytes(nbytes: int, key: str, display: str) -> None:
    """Refuse, in one line, labels too large to read whole (segmentation masks are not streamed yet)."""
    free = free_memory()
    if nbytes > LABEL_MEMORY_SHARE * free:
        raise _fail(display, f"'{key}' holds {human_bytes(nbytes)} of labels, more than a quarter of the "
                    f"{human_bytes(free)} of memory free here; labels (segmentation masks too, unlike the "
                    "samples) are read whole into every process: store masks as uint8, or use fewer or "
                    "smaller samples")  # fmt: skip


def _h5_labels(dataset: h5py.Dataset, key: str, display: str) -> np.ndarray:
    """Read a labels dataset whole (class labels and targets are small; masks are kept compact)."""
    if not 1 <= dataset.ndim <= 4:
        raise _fail(
            display,
            f"'{key}' has shape {dataset.shape}, expected class labels (samples,), regression targets "
            "(samples,) or (samples, targets), or segmentation masks (samples, *spatial)",
        )
    _check_label_bytes(int(dataset.size) * dataset.dtype.itemsize, key, display)
    try:
        return np.asarray(dataset[()])
    except Exception as exc:
        raise _fail(display, f"dataset '{key}' cannot be read ({one_line(exc)})") from exc


def _open_npy(
    path: Path, display: str, keys: DataKeys
) -> tuple[dict[str, SampleArray], dict[str, np.ndarray], list[str]]:
    """Map ``path`` as the samples and the ``<key>.npy`` files beside it as labels and splits."""
    if _sniff(path) != "npy":
        raise _fail(display, "is not a .npy file (written by numpy.save)")
    folder = path.parent
    found = sorted(p.stem for p in folder.glob("*.npy"))
    samples: dict[str, SampleArray] = {keys.x: NpyArray(path, display)}
    labels: dict[str, np.ndarray] = {}
    for x_key, y_key in keys.pairs():
        if x_key != keys.x and (folder / f"{x_key}.npy").exists():
            samples[x_key] = NpyArray(folder / f"{x_key}.npy", _beside(display, x_key))
        label_path = folder / f"{y_key}.npy"
        if label_path.exists():
            mapped = NpyArray(label_path, _beside(display, y_key))
            _check_label_bytes(int(mapped.array.nbytes), y_key, _beside(display, y_key))
            labels[y_key] = np.array(mapped.array)  # read whole (labels are small); the map is closed
            mapped.close()
    return samples, labels, found


def _beside(display: str, key: str) -> str:
    """How the file ``<key>.npy`` beside ``display`` is named in messages."""
    return str(Path(display).with_name(f"{key}.npy"))


def _open_npz(
    path: Path, display: str, keys: DataKeys
) -> tuple[dict[str, SampleArray], dict[str, np.ndarray], list[str]]:
    """Read the arrays of an ``.npz`` archive (a small-data format: zip members are read whole, never unpickled)."""
    kind = _sniff(path)
    if kind == "npy":
        raise _fail(
            display,
            "holds a single .npy array, expected an .npz archive with arrays 'x' and 'y' "
            "(written by numpy.savez); name a .npy file of samples with the suffix .npy",
        )
    if kind != "zip":
        what = {"empty": "it is empty", "hdf5": "it is an HDF5 file: rename it to .h5"}
        raise _fail(
            display,
            f"is not a valid .npz archive ({what.get(kind, 'not a zip archive')}); "
            "expected a file written by numpy.savez with arrays 'x' and 'y'",
        )
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError, OSError, EOFError, zipfile.BadZipFile
        raise _fail(
            display,
            f"is not a valid .npz archive (truncated or corrupt: {one_line(exc)}); expected "
            "a file written by numpy.savez with arrays 'x' and 'y'",
        ) from exc
    samples: dict[str, SampleArray] = {}
    labels: dict[str, np.ndarray] = {}
    with loaded:
        found = sorted(loaded.files)
        for x_key, y_key in keys.pairs():
            for key in (x_key, y_key):
                if key not in loaded.files:
                    continue
                try:
                    array = loaded[key]
                except ValueError as exc:
                    if "pickle" in str(exc):
                        raise _fail(display, f"array '{key}' holds Python objects, expected a numeric array") from exc
                    raise _fail(display, f"array '{key}' cannot be read ({one_line(exc)})") from exc
                except Exception as exc:  # zlib.error, EOFError, BadZipFile, OSError
                    raise _fail(display, f"array '{key}' cannot be read ({one_line(exc)})") from exc
                if key == x_key:
                    samples[key] = MemoryArray(array, display, key)
                else:
                    labels[key] = array
    return samples, labels, found


def _sniff(path: Path) -> str:
    """Guess a file's format from its first bytes.

    Returns:
        One of "zip", "npy", "hdf5", "empty" or "unknown".
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return "unknown"
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head == b"\x89HDF\r\n\x1a\n":
        return "hdf5"
    return "unknown"


def check_arrays(
    samples: dict[str, SampleArray],
    labels: dict[str, np.ndarray],
    found: list[str],
    display: str,
    keys: DataKeys | None = None,
    task: str = "auto",
) -> RawSplits:
    """Check the arrays of a dataset file from their metadata and labels.

    Args:
        samples: The sample arrays present, by key.
        labels: The label arrays present, by key, as read.
        found: All keys in the file, for the "missing key" message.
        display: How the file is named in error messages.
        keys: The key names (defaults when None).
        task: ``data.task`` (`menndl.tasks.TASKS`, or ``auto``: `infer_task` of the training labels).

    Returns:
        The samples and their labels per split (int64 class labels or float32 targets), and the task.

    Raises:
        UserError: If any rule in this module's docstring is broken.
    """
    keys = keys or DataKeys()
    listing = ", ".join(f"'{k}'" for k in found) if found else "none"
    for key, present in ((keys.x, keys.x in samples), (keys.y, keys.y in labels)):
        if not present:
            raise _fail(
                display,
                f"missing '{key}' (keys found: {listing}); expected '{keys.x}' (samples) and "
                f"'{keys.y}' (labels), optionally '{keys.x_val}'/'{keys.y_val}' and '{keys.x_test}'/'{keys.y_test}'",
            )
    for x_key, y_key in keys.pairs()[1:]:
        if (x_key in samples) != (y_key in labels):
            have, lack = (x_key, y_key) if x_key in samples else (y_key, x_key)
            raise _fail(display, f"'{have}' is present but '{lack}' is missing; give both or neither")

    if task == "auto":
        task = infer_task(np.asarray(labels[keys.y]), keys.y, display, tuple(samples[keys.x].shape[2:]))
    out: dict[str, object] = {"task": task}
    targets = None
    for (x_key, y_key), (x_name, y_name) in zip(keys.pairs(), (("x", "y"), ("x_val", "y_val"), ("x_test", "y_test"))):
        if x_key not in samples:
            continue
        x = _check_samples(samples[x_key], x_key, display, test=x_name == "x_test")
        if task == "segmentation":
            y = _check_masks(labels[y_key], y_key, display, x.shape[2:], x_key)
        elif task == "regression":
            y = _check_targets(labels[y_key], y_key, display)
            if targets is not None and len(y) and y.shape[1:] != targets:
                raise _fail(display, f"'{y_key}' has {_target_count(y.shape[1:])} but '{keys.y}' has "
                            f"{_target_count(targets)}")  # fmt: skip
            targets = y.shape[1:] if targets is None else targets
        else:
            y = _check_labels(labels[y_key], y_key, display)
        if len(y) != len(x):
            raise _fail(display, f"'{y_key}' has {len(y)} samples but '{x_key}' has {len(x)}")
        if x_name != "x":
            first = samples[keys.x]
            if x.shape[1:] != first.shape[1:]:
                raise _fail(
                    display,
                    f"'{x_key}' samples have shape {x.shape[1:]} but '{keys.x}' samples have shape "
                    f"{first.shape[1:]}; all splits need the same sample shape",
                )
        out[x_name], out[y_name] = x, y

    if task != "classification":  # (a segmentation's classes are checked with its ignore label: load_dataset)
        return RawSplits(**out)  # type: ignore[arg-type]
    train_classes = np.unique(out["y"])  # type: ignore[call-overload]
    if len(train_classes) < 2:
        raise _fail(
            display,
            f"'{keys.y}' has only one class ({int(train_classes[0])}); at least 2 distinct "
            "classes are needed to train a classifier",
        )
    return RawSplits(**out)  # type: ignore[arg-type]


def _check_samples(arr: SampleArray, key: str, display: str, *, test: bool) -> SampleArray:
    """Check one samples array from its metadata."""
    if arr.dtype.kind not in "iuf":
        raise _fail(
            display,
            f"'{key}' has dtype {_dtype_name(arr.dtype)}, expected real numbers (integer or floating point)",
        )
    ndim = len(arr.shape)
    if not 3 <= ndim <= 5:
        hint = "; add a channel axis, e.g. x[:, None]" if ndim == 2 else ""
        raise _fail(
            display,
            f"'{key}' has shape {arr.shape} ({ndim} dimensions), expected {_LAYOUT}, i.e. 3 to 5 dimensions{hint}",
        )
    if any(size == 0 for size in arr.shape[1:]):
        raise _fail(display, f"'{key}' has shape {arr.shape}: samples must not be empty")
    if arr.shape[0] == 0 and not test:
        raise _fail(display, f"'{key}' has no samples (shape {arr.shape})")
    return arr


def infer_task(y: np.ndarray, key: str, display: str, spatial: tuple[int, ...] = ()) -> str:
    """The task the training labels ``y`` say (``data.task = "auto"``), for samples of spatial shape ``spatial``.

    Integer (or boolean) labels of shape ``(samples, *spatial)`` are segmentation masks; floating-point
    labels that are not all whole numbers, and floating-point labels of shape ``(samples, targets)``, are
    regression targets; 1-D whole numbers are class labels.

    Raises:
        UserError: the labels fit no task unambiguously (the message says to set ``data.task``).
    """
    if y.dtype.kind in "iub" and y.ndim >= 2 and spatial and tuple(y.shape[1:]) == tuple(spatial):
        return "segmentation"
    if y.dtype.kind == "f" and (y.ndim == 2 or bool(np.any(np.isfinite(y) & (y != np.floor(y))))):
        return "regression"
    if y.ndim >= 2 and y.dtype.kind in "iub":
        where = f" (samples have spatial shape {tuple(spatial)})" if spatial else ""
        raise _fail(
            display,
            f"'{key}' has shape {y.shape} of integers{where}: give masks (samples, *spatial) for segmentation, "
            "1-D class labels, or set data.task = \"regression\" to regress integer targets",
        )
    return "classification"


def mask_pixel(flat: int, spatial: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """The sample and the pixel position of flat index ``flat`` into masks of spatial shape ``spatial``."""
    sample, pixel = divmod(flat, int(np.prod(spatial)))
    return sample, tuple(int(i) for i in np.unravel_index(pixel, spatial))


def _check_masks(arr: np.ndarray, key: str, display: str, spatial: tuple[int, ...], x_key: str) -> np.ndarray:
    """Check one segmentation masks array (integer class per pixel, the samples' spatial shape).

    Returns it in the smallest unsigned (or int32) type that holds its labels; a negative label, or
    one beyond int32, is named with its sample and pixel.
    """
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iub":
        hint = " (whole numbers stored as floats: convert them to an integer type)" if arr.dtype.kind == "f" else ""
        raise _fail(display, f"'{key}' has dtype {_dtype_name(arr.dtype)}, expected integer segmentation masks{hint}")
    expected = (arr.shape[0], *spatial) if arr.ndim else spatial
    if arr.ndim != 1 + len(spatial) or tuple(arr.shape[1:]) != tuple(spatial):
        raise _fail(display, f"'{key}' has shape {arr.shape}, expected masks {tuple(expected)}: one label per "
                    f"pixel of the '{x_key}' samples' spatial shape {tuple(spatial)}")  # fmt: skip
    if arr.dtype.kind == "b" or not arr.size:
        return np.ascontiguousarray(arr, dtype=np.uint8)
    low, high = int(arr.min()), int(arr.max())
    for bad, what in ((low < 0, "negative labels"), (high > _MAX_LABEL, f"labels above {_MAX_LABEL}")):
        if bad:
            flat = int(np.flatnonzero((arr < 0) if low < 0 else (arr > _MAX_LABEL))[0])
            sample, position = mask_pixel(flat, spatial)
            raise _fail(display, f"'{key}' contains {what} ({_number(arr.reshape(-1)[flat])} at sample {sample}, "
                        f"pixel {position}), expected class indices 0, 1, 2, ...")  # fmt: skip
    dtype = np.uint8 if high < 2**8 else np.uint16 if high < 2**16 else np.int32
    return np.ascontiguousarray(arr, dtype=dtype)


def _target_count(shape: tuple[int, ...]) -> str:
    """``"3 targets per sample"`` for targets whose samples have ``shape`` (``()``: one), for messages."""
    count = shape[0] if shape else 1
    return f"{count} target{'s' if count != 1 else ''} per sample"


def _check_targets(arr: np.ndarray, key: str, display: str) -> np.ndarray:
    """Check one regression targets array and return it as float32; a NaN or infinity is named with its sample."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iuf":
        raise _fail(display, f"'{key}' has dtype {_dtype_name(arr.dtype)}, expected real-valued regression targets")
    if arr.ndim not in (1, 2) or (arr.ndim == 2 and arr.shape[1] == 0):
        raise _fail(display, f"'{key}' has shape {arr.shape}, expected regression targets (samples,) or "
                    "(samples, targets)")  # fmt: skip
    finite = np.isfinite(arr).reshape(len(arr), -1).all(axis=1) if arr.dtype.kind == "f" else np.ones(len(arr), bool)
    bad = np.flatnonzero(~finite)
    if len(bad):
        raise _fail(display, f"'{key}' contains NaN or infinite targets at {len(bad)} samples (first at sample "
                    f"{bad[0]}); expected finite regression targets")  # fmt: skip
    big = np.flatnonzero((np.abs(arr.astype(np.float64)) > _MAX_TARGET).reshape(len(arr), -1).any(axis=1))
    if big.size:
        raise _fail(display, f"'{key}' contains a target beyond float32's range at sample {big[0]}; expected "
                    f"magnitudes below {_MAX_TARGET:.3g}")  # fmt: skip
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_labels(arr: np.ndarray, key: str, display: str) -> np.ndarray:
    """Check one labels array and return it as int64; a label out of range is named with its sample index."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iuf":
        raise _fail(display, f"'{key}' has dtype {_dtype_name(arr.dtype)}, expected integer class labels")
    if arr.ndim != 1:
        raise _fail(display, f"'{key}' has shape {arr.shape}, expected 1-D integer class labels (samples,) for "
                    "data.task = \"classification\"")  # fmt: skip
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise _fail(display, f"'{key}' contains {bad.size} NaN or infinite labels (first at sample {bad[0]})")
        fractional = np.flatnonzero(arr != np.floor(arr))
        if fractional.size:
            example = arr[fractional[0]]
            raise _fail(
                display,
                f"'{key}' contains {fractional.size} non-integer labels (e.g. {_number(example)} at sample "
                f"{fractional[0]}), expected integer class labels",
            )
    negative = np.flatnonzero(arr < 0)
    if negative.size:
        raise _fail(
            display,
            f"'{key}' contains negative labels ({_number(arr[negative[0]])} at sample {negative[0]}), expected "
            "class indices 0, 1, 2, ...",
        )
    huge = np.flatnonzero(arr > _MAX_LABEL)
    if huge.size:
        raise _fail(
            display,
            f"'{key}' contains label {_number(arr[huge[0]])} at sample {huge[0]}, expected class indices below "
            f"{_MAX_LABEL + 1}",
        )
    return np.ascontiguousarray(arr, dtype=np.int64)


def _dtype_name(dtype: np.dtype) -> str:
    """Readable dtype name for messages."""
    if dtype.kind == "O":
        return "object (e.g. strings)"
    if dtype.kind in "SU":
        return f"string ({dtype})"
    if dtype.kind == "V":
        return "structured/opaque"
    return str(dtype)


def _number(value: np.generic) -> str:
    """Format a numpy scalar for messages: integers exactly, floats with %g."""
    if isinstance(value, np.integer):
        return str(int(value))
    return f"{float(value):g}"
