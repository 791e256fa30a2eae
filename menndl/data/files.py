"""Reading and checking user datasets stored as HDF5 or ``.npz`` files.

A file holds ``x`` (samples, ``(N, C, *spatial)`` with 1 to 3 spatial
dimensions) and ``y`` (integer class labels, ``(N,)``), plus optionally
``x_val``/``y_val`` and ``x_test``/``y_test``.  Other keys are ignored.
Every mistake in the file becomes a one-line :class:`UserError` that names
the file and the key at fault.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from menndl.data.splits import RawSplits
from menndl.errors import UserError

#: File suffixes (lower case) accepted as dataset files.
FILE_SUFFIXES = (".h5", ".hdf5", ".npz")

_KEYS = ("x", "y", "x_val", "y_val", "x_test", "y_test")
_SPLITS = (("x", "y"), ("x_val", "y_val"), ("x_test", "y_test"))
_LAYOUT = "(samples, channels, *spatial) with 1 to 3 spatial dimensions"
#: Largest accepted class label (keeps num_classes sane and int64-safe).
_MAX_LABEL = 2**31 - 1


def read_dataset_file(path: Path, display: str) -> RawSplits:
    """Read and check a dataset file.

    Args:
        path: Resolved path of a ``.h5``, ``.hdf5`` or ``.npz`` file.
        display: How the file is named in error messages (as the user wrote it).

    Returns:
        The checked arrays: x as C-contiguous float32, y as int64.

    Raises:
        UserError: If the file is missing, unreadable, malformed, or its
            arrays break any of the rules in this module's docstring.
    """
    _check_path(path, display)
    if path.suffix.lower() == ".npz":
        arrays, found = _read_npz(path, display)
    else:
        arrays, found = _read_hdf5(path, display)
    return check_arrays(arrays, found, display)


def _fail(display: str, message: str) -> UserError:
    """Build a one-line UserError prefixed with the file name."""
    return UserError(" ".join(f"{display}: {message}".split()))


def _reason(exc: BaseException) -> str:
    """One-line description of a library exception."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _check_path(path: Path, display: str) -> None:
    """Reject missing files, directories and unreadable files."""
    try:
        exists = path.exists()
        is_dir = path.is_dir()
    except OSError as exc:
        raise _fail(display, f"cannot access the file ({_reason(exc)})") from exc
    if not exists:
        where = "" if str(path) == display else f" (looked for {path})"
        raise _fail(display, f"no such file{where}; expected a dataset file")
    if is_dir:
        raise _fail(display, "is a directory, expected a dataset file")
    if not os.access(path, os.R_OK):
        raise _fail(display, "cannot be read (permission denied)")


def _read_hdf5(path: Path, display: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Read the known keys from the root group of an HDF5 file."""
    try:
        if not h5py.is_hdf5(path):
            hint = " (it is a .npz archive: rename it to .npz)" if _sniff(path) == "zip" else ""
            raise _fail(
                display,
                f"is not an HDF5 file{hint}; expected an HDF5 file with datasets 'x' and 'y'",
            )
        arrays: dict[str, np.ndarray] = {}
        with h5py.File(path, "r") as handle:
            found = sorted(handle.keys())
            for key in _KEYS:
                if key in handle:
                    arrays[key] = _read_hdf5_key(handle, key, display)
    except (UserError, MemoryError):
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, RuntimeError, ...
        raise _fail(display, f"cannot be read as HDF5 ({_reason(exc)})") from exc
    return arrays, found


def _read_hdf5_key(handle: h5py.File, key: str, display: str) -> np.ndarray:
    """Read one dataset of an open HDF5 file into memory."""
    obj = handle[key]
    if not isinstance(obj, h5py.Dataset):
        raise _fail(display, f"'{key}' is an HDF5 group, expected a dataset (array)")
    if obj.shape is None:
        raise _fail(display, f"dataset '{key}' is a null (empty) dataset, expected an array")
    try:
        return np.asarray(obj[()])
    except MemoryError:
        raise
    except Exception as exc:
        raise _fail(display, f"dataset '{key}' cannot be read ({_reason(exc)})") from exc


def _read_npz(path: Path, display: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Read the known keys of an ``.npz`` archive (never unpickling)."""
    kind = _sniff(path)
    if kind == "npy":
        raise _fail(
            display,
            "holds a single .npy array, expected an .npz archive with arrays 'x' and 'y' "
            "(written by numpy.savez)",
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
    except MemoryError:
        raise
    except Exception as exc:  # ValueError, OSError, EOFError, zipfile.BadZipFile
        raise _fail(
            display,
            f"is not a valid .npz archive (truncated or corrupt: {_reason(exc)}); expected "
            "a file written by numpy.savez with arrays 'x' and 'y'",
        ) from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise _fail(
            display,
            "holds a single .npy array, expected an .npz archive with arrays 'x' and 'y' "
            "(written by numpy.savez)",
        )
    arrays: dict[str, np.ndarray] = {}
    with loaded:
        found = sorted(loaded.files)
        for key in _KEYS:
            if key not in loaded.files:
                continue
            try:
                arrays[key] = loaded[key]
            except MemoryError:
                raise
            except ValueError as exc:
                if "pickle" in str(exc):
                    raise _fail(
                        display,
                        f"array '{key}' holds Python objects, expected a numeric array",
                    ) from exc
                raise _fail(display, f"array '{key}' cannot be read ({_reason(exc)})") from exc
            except Exception as exc:  # zlib.error, EOFError, BadZipFile, OSError
                raise _fail(display, f"array '{key}' cannot be read ({_reason(exc)})") from exc
    return arrays, found


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
    arrays: dict[str, np.ndarray], found: list[str], display: str
) -> RawSplits:
    """Check the arrays read from a dataset file and convert their dtypes.

    Args:
        arrays: The known keys present in the file, as read.
        found: All keys in the file, for the "missing key" message.
        display: How the file is named in error messages.

    Returns:
        The checked arrays: x as C-contiguous float32, y as int64.

    Raises:
        UserError: If any rule in this module's docstring is broken.
    """
    listing = ", ".join(f"'{k}'" for k in found) if found else "none"
    for key in ("x", "y"):
        if key not in arrays:
            raise _fail(
                display,
                f"missing '{key}' (keys found: {listing}); expected 'x' (samples) and "
                "'y' (labels), optionally 'x_val'/'y_val' and 'x_test'/'y_test'",
            )
    for x_key, y_key in _SPLITS[1:]:
        if (x_key in arrays) != (y_key in arrays):
            have, lack = (x_key, y_key) if x_key in arrays else (y_key, x_key)
            raise _fail(display, f"'{have}' is present but '{lack}' is missing; give both or neither")

    out: dict[str, np.ndarray] = {}
    for x_key, y_key in _SPLITS:
        if x_key not in arrays:
            continue
        x = _check_samples(arrays[x_key], x_key, display)
        y = _check_labels(arrays[y_key], y_key, display)
        if len(y) != len(x):
            raise _fail(
                display, f"'{y_key}' has {len(y)} samples but '{x_key}' has {len(x)}"
            )
        if x_key != "x" and x.shape[1:] != out["x"].shape[1:]:
            raise _fail(
                display,
                f"'{x_key}' samples have shape {x.shape[1:]} but 'x' samples have shape "
                f"{out['x'].shape[1:]}; all splits need the same sample shape",
            )
        out[x_key], out[y_key] = x, y

    train_classes = np.unique(out["y"])
    if len(train_classes) < 2:
        raise _fail(
            display,
            f"'y' has only one class ({int(train_classes[0])}); at least 2 distinct "
            "classes are needed to train a classifier",
        )
    return RawSplits(**out)


def _check_samples(arr: np.ndarray, key: str, display: str) -> np.ndarray:
    """Check one samples array and return it as C-contiguous float32."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iuf":
        raise _fail(
            display,
            f"'{key}' has dtype {_dtype_name(arr.dtype)}, expected real numbers "
            "(integer or floating point)",
        )
    if not 3 <= arr.ndim <= 5:
        hint = "; add a channel axis, e.g. x[:, None]" if arr.ndim == 2 else ""
        raise _fail(
            display,
            f"'{key}' has shape {arr.shape} ({arr.ndim} dimensions), expected {_LAYOUT}, "
            f"i.e. 3 to 5 dimensions{hint}",
        )
    if any(size == 0 for size in arr.shape[1:]):
        raise _fail(display, f"'{key}' has shape {arr.shape}: samples must not be empty")
    if arr.shape[0] == 0 and key != "x_test":
        raise _fail(display, f"'{key}' has no samples (shape {arr.shape})")
    if arr.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise _fail(display, f"'{key}' contains {bad} NaN or infinite values")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    overflow = int(np.count_nonzero(~np.isfinite(out)))
    if overflow:
        raise _fail(
            display,
            f"'{key}' contains {overflow} values too large for float32 "
            "(magnitude above 3.4e38)",
        )
    return out


def _check_labels(arr: np.ndarray, key: str, display: str) -> np.ndarray:
    """Check one labels array and return it as int64."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iuf":
        raise _fail(
            display,
            f"'{key}' has dtype {_dtype_name(arr.dtype)}, expected integer class labels",
        )
    if arr.ndim != 1:
        raise _fail(
            display,
            f"'{key}' has shape {arr.shape}, expected 1-D integer class labels (samples,)",
        )
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise _fail(display, f"'{key}' contains {bad} NaN or infinite labels")
        fractional = arr != np.floor(arr)
        if fractional.any():
            example = arr[fractional][0]
            raise _fail(
                display,
                f"'{key}' contains {int(np.count_nonzero(fractional))} non-integer labels "
                f"(e.g. {_number(example)}), expected integer class labels",
            )
    low, high = arr.min(), arr.max()
    if low < 0:
        raise _fail(
            display,
            f"'{key}' contains negative labels (minimum {_number(low)}), expected class "
            "indices 0, 1, 2, ...",
        )
    if high > _MAX_LABEL:
        raise _fail(
            display,
            f"'{key}' contains label {_number(high)}, expected class indices below {_MAX_LABEL + 1}",
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
