"""Write a large, learnable HDF5 (or ``.npy``) classification dataset fast, with bounded memory.

Each sample is its class's low-frequency pattern (a few cosines, fixed by the seed) scaled by
``--signal`` plus unit Gaussian noise, so a search learns something.  The file is written in blocks of
about ``--block-mib`` (256 MiB) of float32 generated at a time: memory stays at a few blocks whatever the
size.  Noise comes from a precomputed bank (64 MiB) read at a random offset per sample (one copy per
block: generating fresh normals is slower than most disks); ``--fresh-noise`` draws it per block from the
seeded generator instead.  The same seed gives the same samples in every layout (single file, ``--shards``,
``--npy``).

    python benchmarks/make_large_dataset.py /work/bigdata/big.h5 --gib 16 --shape 1 128 128
    python benchmarks/make_large_dataset.py out.h5 --gib 1 --layout chunked --chunk-rows 8 --compression gzip \\
        --nan-at 131000 --bad-label 5:12 --corrupt-chunk 3
    python benchmarks/make_large_dataset.py out_dir --gib 1 --npy          # out_dir/x.npy + out_dir/y.npy
    python benchmarks/make_large_dataset.py big.h5 --gib 16 --shards 8    # big-00000.h5 ... + virtual big.h5

Faults for the acceptance tests: ``--nan-at INDEX`` puts a NaN in that sample (float dtypes only),
``--bad-label INDEX:VALUE`` sets that label, ``--corrupt-chunk INDEX`` overwrites the stored bytes of that
chunk (storage order; gzip needed so that reading it fails) after the file is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

#: Elements of the noise bank (64 MiB of float32).
BANK_ELEMENTS = 16 * 2**20
#: uint8 samples: ``128 + UINT8_SCALE * value``, clipped.
UINT8_SCALE = 32.0


@dataclass(frozen=True)
class Spec:
    """What to generate.

    Attributes:
        samples: Number of samples.
        shape: Shape of one sample, ``(C, *spatial)``.
        dtype: ``float32`` or ``uint8``.
        classes: Number of classes.
        seed: Seed of every random choice.
        signal: Amplitude of the class pattern (the noise has unit standard deviation).
        block_rows: Samples generated at a time.
        fresh_noise: Draw noise per block instead of reading the bank.
    """

    samples: int
    shape: tuple[int, ...]
    dtype: str
    classes: int
    seed: int
    signal: float
    block_rows: int
    fresh_noise: bool = False

    @property
    def elements(self) -> int:
        """Values in one sample."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def sample_bytes(self) -> int:
        """Stored bytes of one sample."""
        return self.elements * np.dtype(self.dtype).itemsize


def class_patterns(shape: tuple[int, ...], classes: int, seed: int) -> np.ndarray:
    """One low-frequency pattern per class, ``(classes, *shape)`` float32 with unit standard deviation.

    Each is a sum of three cosines over the spatial axes with class-specific small integer frequencies
    and phases, per channel.
    """
    rng = np.random.default_rng([seed, 1])
    spatial = shape[1:]
    grids = np.meshgrid(*[np.linspace(0.0, 1.0, n, endpoint=False) for n in spatial], indexing="ij")
    out = np.zeros((classes, *shape), dtype=np.float32)
    for c in range(classes):
        for channel in range(shape[0]):
            pattern = np.zeros(spatial, dtype=np.float64)
            for _ in range(3):
                freqs = rng.integers(1, 4, size=len(spatial))
                phase = rng.uniform(0, 2 * np.pi)
                pattern += np.cos(2 * np.pi * sum(f * g for f, g in zip(freqs, grids)) + phase)
            pattern -= pattern.mean()
            pattern /= max(1e-6, float(pattern.std()))
            out[c, channel] = pattern
    return out


def make_labels(spec: Spec) -> np.ndarray:
    """The labels, int64, uniformly random classes (every class present when there are enough samples)."""
    rng = np.random.default_rng([spec.seed, 2])
    labels = rng.integers(0, spec.classes, size=spec.samples, dtype=np.int64)
    labels[: min(spec.classes, spec.samples)] = np.arange(min(spec.classes, spec.samples))
    return labels


def blocks(spec: Spec, nan_at: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, samples)`` block by block, in the stored dtype; deterministic for the seed and block size."""
    labels = make_labels(spec)
    patterns = class_patterns(spec.shape, spec.classes, spec.seed) * np.float32(spec.signal)
    bank = None
    bank_elements = max(1, min(BANK_ELEMENTS, spec.samples * spec.elements))
    if not spec.fresh_noise:
        bank_rng = np.random.default_rng([spec.seed, 3])
        bank = bank_rng.standard_normal(bank_elements + spec.elements, dtype=np.float32)
        windows = np.lib.stride_tricks.sliding_window_view(bank, spec.elements)
    for number, start in enumerate(range(0, spec.samples, spec.block_rows)):
        stop = min(spec.samples, start + spec.block_rows)
        rng = np.random.default_rng([spec.seed, 4, number])
        if bank is None:
            values = rng.standard_normal((stop - start, spec.elements), dtype=np.float32)
        else:
            values = windows[rng.integers(0, bank_elements, size=stop - start)]  # one copy, one row per sample
        values = values.reshape(stop - start, *spec.shape)
        step = max(1, (16 * 2**20) // (4 * spec.elements))  # the class patterns added 16 MiB at a time
        for first in range(0, stop - start, step):
            values[first : first + step] += patterns[labels[start + first : min(stop, start + first + step)]]
        if nan_at is not None and start <= nan_at < stop:
            values[nan_at - start].flat[spec.elements // 2] = np.nan
        if spec.dtype == "uint8":
            values *= np.float32(UINT8_SCALE)
            values += np.float32(128.0)
            np.clip(values, 0, 255, out=values)
            values = values.astype(np.uint8)
        yield start, values


def shard_ranges(samples: int, shards: int, align: int) -> list[tuple[int, int]]:
    """``shards`` consecutive row ranges covering ``samples``, cut at multiples of ``align`` (none empty)."""
    shards = max(1, min(shards, samples))
    cuts = [0]
    for k in range(1, shards):
        cut = round(samples * k / shards / align) * align
        cuts.append(min(samples, max(cuts[-1] + 1, cut)))
    cuts.append(samples)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def _create_x(handle: h5py.File, rows: int, spec: Spec, layout: str, chunk_rows: int, compression: str) -> h5py.Dataset:
    """The samples dataset in the requested layout."""
    options: dict = {}
    if layout == "chunked":
        options["chunks"] = (max(1, min(chunk_rows, rows)), *spec.shape)
        if compression == "gzip":
            options.update(compression="gzip", compression_opts=1)
    return handle.create_dataset("x", shape=(rows, *spec.shape), dtype=spec.dtype, **options)


def write_hdf5(
    path: Path, spec: Spec, labels: np.ndarray, *, layout: str, chunk_rows: int, compression: str,
    nan_at: int | None, shards: int,
) -> list[Path]:  # fmt: skip
    """Write ``x`` and ``y`` (``labels``) to ``path`` (or to shard files joined by a virtual ``x`` in ``path``).

    Returns:
        The files written (the master file last).
    """
    if shards <= 1:
        with h5py.File(path, "w") as handle:
            x = _create_x(handle, spec.samples, spec, layout, chunk_rows, compression)
            for start, values in blocks(spec, nan_at):
                x.write_direct(np.ascontiguousarray(values), dest_sel=np.s_[start : start + len(values)])
            handle.create_dataset("y", data=labels)
        return [path]
    ranges = shard_ranges(spec.samples, shards, chunk_rows if layout == "chunked" else 1)
    shard_paths = [path.with_name(f"{path.stem}-{k:05d}{path.suffix}") for k in range(len(ranges))]
    handles = [h5py.File(p, "w") for p in shard_paths]
    try:
        xs = [_create_x(h, b - a, spec, layout, chunk_rows, compression) for h, (a, b) in zip(handles, ranges)]
        for start, values in blocks(spec, nan_at):
            stop = start + len(values)
            for x, (a, b) in zip(xs, ranges):
                lo, hi = max(a, start), min(b, stop)
                if lo < hi:
                    part = np.ascontiguousarray(values[lo - start : hi - start])
                    x.write_direct(part, dest_sel=np.s_[lo - a : hi - a])
    finally:
        for handle in handles:
            handle.close()
    layout_v = h5py.VirtualLayout(shape=(spec.samples, *spec.shape), dtype=spec.dtype)
    for shard_path, (a, b) in zip(shard_paths, ranges):
        layout_v[a:b] = h5py.VirtualSource(shard_path.name, "x", shape=(b - a, *spec.shape))
    with h5py.File(path, "w") as handle:
        handle.create_virtual_dataset("x", layout_v)
        handle.create_dataset("y", data=labels)
    return [*shard_paths, path]


def write_npy(folder: Path, spec: Spec, labels: np.ndarray, nan_at: int | None) -> list[Path]:
    """Write ``folder/x.npy`` (block by block after the header) and ``folder/y.npy``."""
    folder.mkdir(parents=True, exist_ok=True)
    x_path, y_path = folder / "x.npy", folder / "y.npy"
    header = np.lib.format.open_memmap(x_path, mode="w+", dtype=spec.dtype, shape=(spec.samples, *spec.shape))
    offset = header.offset
    del header
    with open(x_path, "r+b") as out:
        out.seek(offset)
        for _, values in blocks(spec, nan_at):
            np.ascontiguousarray(values).tofile(out)
    np.save(y_path, labels)
    return [x_path, y_path]


def corrupt_chunk(path: Path, index: int) -> tuple[int, int, int]:
    """Overwrite the stored bytes of chunk ``index`` of ``x`` with random bytes.

    Returns:
        ``(first sample, samples, bytes overwritten)``.
    """
    with h5py.File(path, "r") as handle:
        x = handle["x"]
        if x.chunks is None or x.compression is None:
            raise SystemExit("--corrupt-chunk needs --layout chunked --compression gzip")
        count = x.id.get_num_chunks()
        if not 0 <= index < count:
            raise SystemExit(f"--corrupt-chunk {index}: the file has {count} chunks")
        info = x.id.get_chunk_info(index)
        first, rows = int(info.chunk_offset[0]), int(min(x.chunks[0], x.shape[0] - info.chunk_offset[0]))
        byte_offset, size = int(info.byte_offset), int(info.size)
    garbage = np.random.default_rng(index).integers(0, 256, size=size, dtype=np.uint8).tobytes()
    with open(path, "r+b") as out:
        out.seek(byte_offset)
        out.write(garbage)
    return first, rows, size


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the .h5 file to write (a folder with --npy)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--gib", type=float, default=1.0, help="stored size of the samples in GiB (default 1)")
    size.add_argument("--samples", type=int, help="number of samples (instead of --gib)")
    parser.add_argument("--shape", type=int, nargs="+", default=[1, 128, 128], help="sample shape C H W (default)")
    parser.add_argument("--dtype", choices=("float32", "uint8"), default="float32")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--layout", choices=("chunked", "contiguous"), default="chunked")
    parser.add_argument("--chunk-rows", type=int, default=8, help="samples per chunk (default 8)")
    parser.add_argument("--compression", choices=("none", "gzip"), default="none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--signal", type=float, default=0.5, help="class pattern amplitude; noise std is 1")
    parser.add_argument("--block-mib", type=float, default=256.0, help="float32 MiB generated at a time")
    parser.add_argument("--fresh-noise", action="store_true", help="draw noise per block (slower) not from a bank")
    parser.add_argument("--nan-at", type=int, metavar="INDEX", help="put a NaN in this sample")
    parser.add_argument("--bad-label", metavar="INDEX:VALUE", help="set this sample's label to VALUE")
    parser.add_argument("--corrupt-chunk", type=int, metavar="INDEX", help="overwrite this chunk's stored bytes")
    parser.add_argument("--npy", action="store_true", help="write OUTPUT/x.npy and OUTPUT/y.npy instead")
    parser.add_argument("--shards", type=int, default=1, help="N shard files joined by a virtual dataset")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Generate the dataset; print path, samples, bytes and seconds."""
    args = parse_args(argv)
    shape = tuple(args.shape)
    if not 2 <= len(shape) <= 4 or min(shape) < 1:
        raise SystemExit("--shape: expected C and 1 to 3 positive spatial sizes")
    elements = int(np.prod(shape))
    itemsize = np.dtype(args.dtype).itemsize
    samples = args.samples if args.samples is not None else max(1, int(args.gib * 2**30 // (elements * itemsize)))
    if samples < max(2, args.classes):
        raise SystemExit(f"{samples} samples: too few for {args.classes} classes")
    chunk_rows = max(1, args.chunk_rows)
    block_rows = max(1, int(args.block_mib * 2**20 // (elements * 4)))
    if args.layout == "chunked":
        block_rows = max(chunk_rows, block_rows // chunk_rows * chunk_rows)
    if args.compression == "gzip" and args.layout != "chunked":
        raise SystemExit("--compression gzip needs --layout chunked")
    if args.nan_at is not None and (args.dtype == "uint8" or not 0 <= args.nan_at < samples):
        raise SystemExit(f"--nan-at: needs float32 samples and an index in 0..{samples - 1}")
    if args.corrupt_chunk is not None and (args.npy or args.shards > 1 or args.compression != "gzip"):
        raise SystemExit("--corrupt-chunk needs a single HDF5 file with --layout chunked --compression gzip")
    spec = Spec(samples, shape, args.dtype, args.classes, args.seed, args.signal, block_rows, args.fresh_noise)
    stored = make_labels(spec)  # the samples are drawn from these classes (`blocks`); a planted bad label aside
    if args.bad_label:
        index, _, value = args.bad_label.partition(":")
        stored[int(index)] = int(value)
    started = time.perf_counter()
    if args.npy:
        files = write_npy(args.output, spec, stored, args.nan_at)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        files = write_hdf5(
            args.output, spec, stored, layout=args.layout, chunk_rows=chunk_rows, compression=args.compression,
            nan_at=args.nan_at, shards=args.shards,
        )  # fmt: skip
    seconds = time.perf_counter() - started
    report = {
        "path": str(args.output),
        "files": [str(f) for f in files],
        "samples": samples,
        "shape": list(shape),
        "dtype": args.dtype,
        "classes": args.classes,
        "layout": "npy" if args.npy else args.layout,
        "chunk_rows": chunk_rows if args.layout == "chunked" and not args.npy else None,
        "compression": args.compression,
        "shards": len(files) - 1 if args.shards > 1 and not args.npy else 1,
        "sample_bytes": samples * spec.sample_bytes,
        "file_bytes": sum(os.path.getsize(f) for f in files),
        "seconds": seconds,
        "gib_per_second": samples * spec.sample_bytes / 2**30 / max(seconds, 1e-9),
        "nan_at": args.nan_at,
        "bad_label": args.bad_label,
    }
    if args.corrupt_chunk is not None:
        first, rows, size = corrupt_chunk(args.output, args.corrupt_chunk)
        report["corrupt_chunk"] = {"index": args.corrupt_chunk, "first_sample": first, "samples": rows, "bytes": size}
    if args.json:
        print(json.dumps(report))
        return 0
    shard_note = f", {report['shards']} shards" if report["shards"] > 1 else ""
    print(
        f"wrote {report['path']}: {samples} samples of {shape} {args.dtype}, {args.classes} classes, "
        f"{report['layout']}{'' if args.npy else ', ' + args.compression}"
        f"{shard_note}"
    )
    print(
        f"  {report['sample_bytes'] / 2**30:.3f} GiB of samples, {report['file_bytes'] / 2**30:.3f} GiB on disk, "
        f"{seconds:.1f} s ({report['gib_per_second']:.2f} GiB/s)"
    )
    if args.nan_at is not None:
        print(f"  NaN planted in sample {args.nan_at}")
    if args.bad_label:
        print(f"  label of sample {args.bad_label.replace(':', ' set to ')}")
    if "corrupt_chunk" in report:
        c = report["corrupt_chunk"]
        print(f"  chunk {c['index']} (samples {c['first_sample']}..{c['first_sample'] + c['samples'] - 1}): "
              f"{c['bytes']} stored bytes overwritten")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
