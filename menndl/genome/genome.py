"""Immutable genome data: blocks, training parameters, (de)serialisation, hash.

A :class:`Genome` is plain data: spatial feature blocks (convolution,
pooling, skip connection), an optional global pooling, dense head blocks and
training hyperparameters.  It turns itself into a dict or canonical JSON
(with a format version) and back, and checks that every field holds a
sensible value on its own: the values its row of the field table
(:mod:`menndl.genome.fields`) allows.  Whether it fits a search space or an input shape
is decided in :mod:`menndl.genome.shapes`.  Reading a genome runs no code:
JSON is parsed and every key and value checked against a fixed list.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from menndl.genome.fields import (
    ACTIVATIONS,
    MAX_DROPOUT,
    MERGES,
    OPTIMIZERS,
    POOL_KINDS,
    SCHEDULES,
    UP_MODES,
    BlockName,
    Bools,
    Field,
    Floats,
    Ints,
    Names,
    Values,
    fields_of,
)

__all__ = [  # the value domains live in the field table; re-exported here, where they always were
    "ACTIVATIONS",
    "FITS_MEMO",
    "FORMAT_VERSION",
    "MAX_DROPOUT",
    "MERGES",
    "OPTIMIZERS",
    "POOL_KINDS",
    "SCHEDULES",
    "UP_MODES",
    "ConvBlock",
    "DenseBlock",
    "FeatureBlock",
    "Genome",
    "GlobalPoolBlock",
    "PoolBlock",
    "SkipBlock",
    "TrainParams",
    "UpBlock",
    "declared_rows",
    "field_rows",
    "round_sig",
]

FORMAT_VERSION: int = 2  # "format" key of Genome.to_dict(); version 1 (no key) is read and upgraded


def round_sig(x: float, digits: int = 3) -> float:
    """Round ``x`` to ``digits`` significant digits.

    Args:
        x: The value to round.
        digits: Number of significant digits to keep.

    Returns:
        The rounded value as a float (``0.0`` for zero).
    """
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.{digits - 1}e}")


class _Bad(Exception):
    """Raised by a field rule; the message says what was expected."""


def _int_min(lo: int) -> Callable[[Any], int]:
    def rule(x: Any) -> int:
        if isinstance(x, bool) or not isinstance(x, int) or x < lo:
            raise _Bad(f"an integer >= {lo}")
        return x

    rule.fast = (_INT, lo, None)  # type: ignore[attr-defined]
    return rule


def _odd_int_min(lo: int) -> Callable[[Any], int]:
    def rule(x: Any) -> int:
        if isinstance(x, bool) or not isinstance(x, int) or x < lo or x % 2 == 0:
            raise _Bad(f"an odd integer >= {lo}")
        return x

    rule.fast = (_ODD, lo, None)  # type: ignore[attr-defined]
    return rule


def _one_of(options: tuple[str, ...]) -> Callable[[Any], str]:
    def rule(x: Any) -> str:
        if x not in options or not isinstance(x, str):
            raise _Bad("one of " + ", ".join(options))
        return x

    rule.fast = (_CHOICE, frozenset(options), None)  # type: ignore[attr-defined]
    return rule


def _boolean(x: Any) -> bool:
    if not isinstance(x, bool):
        raise _Bad("true or false")
    return x


def _float_in(lo: float, hi: float, lo_open: bool, hi_open: bool) -> Callable[[Any], float]:
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    text = f"a number in {left}{lo:g}, {'inf' if math.isinf(hi) else f'{hi:g}'}{right}"

    def rule(x: Any) -> float:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise _Bad(text)
        try:
            x = float(x) + 0.0  # + 0.0 turns -0.0 into 0.0: one architecture, one hash
        except OverflowError:
            raise _Bad(text) from None
        if not math.isfinite(x) or x < lo or x > hi or (lo_open and x == lo) or (hi_open and x == hi):
            raise _Bad(text)
        return x

    rule.fast = (_FLOAT, lo, hi)  # type: ignore[attr-defined]
    return rule


_INT, _ODD, _CHOICE, _BOOL, _FLOAT = range(5)  # kinds of field checks with a fast path in `_validate`


def _validate(obj: Any, where: str) -> None:
    """Check (and normalise, e.g. int -> float) every field of a block.

    A value of the exact expected type well inside its range passes inline (no call: operators and
    random sampling build many blocks per child); anything else goes through its rule, which
    normalises it or says what was expected.
    """
    fields_ = obj.__dict__
    for name, kind, low, high, rule in _CHECKS[type(obj)]:
        value = fields_[name]
        cls = type(value)
        if kind == _INT:
            if cls is int and value >= low:
                continue
        elif kind == _CHOICE:
            if cls is str and value in low:
                continue
        elif kind == _FLOAT:
            if cls is float and low < value < high:  # strictly inside: no -0.0, nan, inf or closed bound
                continue
        elif kind == _BOOL:
            if cls is bool:
                continue
        elif cls is int and value >= low and value % 2 == 1:  # _ODD
            continue
        try:
            normal = rule(value)
        except _Bad as bad:
            raise ValueError(f"{where}.{name}: expected {bad}, got {value!r}") from None
        if normal is not value:
            object.__setattr__(obj, name, normal)


@dataclass(frozen=True)
class ConvBlock:
    """Convolution, optional batch norm, activation, optional dropout.

    Padding is ``dilation * (kernel - 1) // 2`` ('same' at stride 1), so a
    spatial size ``n`` becomes ``ceil(n / stride)``.  The convolution has a
    bias only without batch norm.

    Attributes:
        filters: Number of output channels (>= 1).
        kernel: Kernel size along every spatial axis (odd, >= 1).
        activation: One of :data:`ACTIVATIONS`.
        batch_norm: Whether a batch-norm layer follows the convolution.
        stride: Stride along every spatial axis (>= 1).
        dilation: Dilation along every spatial axis (>= 1).
        dropout: Dropout probability after the activation, in ``[0, 0.9)``;
            0 means no dropout layer.
    """

    filters: int
    kernel: int
    activation: str
    batch_norm: bool
    stride: int = 1
    dilation: int = 1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _validate(self, "ConvBlock")


@dataclass(frozen=True)
class PoolBlock:
    """A pooling layer with kernel = stride = ``size``.

    Attributes:
        kind: ``"max"`` or ``"avg"``.
        size: Window and stride (>= 2); output size is ``floor(n / size)``.
    """

    kind: str
    size: int

    def __post_init__(self) -> None:
        _validate(self, "PoolBlock")


@dataclass(frozen=True)
class SkipBlock:
    """Add the output of an earlier feature block to the current tensor.

    The block at position ``i`` of ``Genome.features`` adds the output of
    block ``i - 1 - span`` (``-1`` is the network input) to the output of
    block ``i - 1``, then applies ``activation``.  Spans are relative, so a
    run of blocks keeps its skips when moved by crossover.  When channels
    differ the source goes through a bias-free 1x1 convolution (strided if
    spatial sizes differ); when only spatial sizes differ, through average
    pooling with kernel = stride (``ceil_mode``).

    Attributes:
        span: How many blocks the connection jumps over (>= 1).
        activation: Applied after the addition; ``"none"`` for a plain sum.
    """

    span: int
    activation: str = "none"

    def __post_init__(self) -> None:
        _validate(self, "SkipBlock")


@dataclass(frozen=True)
class GlobalPoolBlock:
    """Global pooling over all spatial axes, between the features and the head.

    Attributes:
        kind: ``"max"`` or ``"avg"``.
    """

    kind: str

    def __post_init__(self) -> None:
        _validate(self, "GlobalPoolBlock")


@dataclass(frozen=True)
class DenseBlock:
    """A fully connected layer, activation and optional dropout.

    Attributes:
        units: Number of output units (>= 1).
        activation: One of :data:`ACTIVATIONS`.
        dropout: Dropout probability in ``[0, 0.9)``; 0 means no dropout layer.
    """

    units: int
    activation: str
    dropout: float

    def __post_init__(self) -> None:
        _validate(self, "DenseBlock")


@dataclass(frozen=True)
class UpBlock:
    """One stage of a segmentation decoder: upsample, join the encoder's skip, convolve.

    The decoder's blocks pair, last first, with the encoder's downsampling blocks (a pool, or a
    convolution of stride > 1): up block ``k`` brings the tensor back to the spatial size the
    input of the ``k``-th downsampling from the end had, exactly (so odd sizes round-trip), and
    joins that input (U-Net's skip).  Upsampling is a transposed convolution to ``filters``
    channels with kernel = stride = the downsampling's factor, padded or cropped by the remainder
    (``transpose``), or a (bi/tri)linear resize that keeps the channels (``interpolate``).
    ``merge`` joins the skip by concatenating channels, by adding it (through a bias-free 1x1
    convolution when its channels differ), or not at all.  Then ``convs`` convolutions
    (``kernel``, 'same' padding, to ``filters`` channels), each with optional batch norm and
    ``activation``.

    Attributes:
        filters: Output channels (>= 1).
        kernel: Kernel of the convolutions (odd, >= 1).
        mode: One of :data:`UP_MODES`.
        merge: One of :data:`MERGES`.
        convs: Number of convolutions after the merge (>= 1).
        activation: One of :data:`ACTIVATIONS`.
        batch_norm: Whether batch norm follows each convolution (which then has no bias).
    """

    filters: int
    kernel: int
    mode: str
    merge: str
    convs: int
    activation: str
    batch_norm: bool

    def __post_init__(self) -> None:
        _validate(self, "UpBlock")


@dataclass(frozen=True)
class TrainParams:
    """Training hyperparameters.

    Attributes:
        learning_rate: Positive peak learning rate.
        batch_size: Mini-batch size (>= 2: batch norm needs two samples).
        optimizer: One of :data:`OPTIMIZERS`.
        weight_decay: Non-negative weight decay.
        momentum: SGD momentum (Nesterov) in ``[0, 1)``; unused by Adam/AdamW.
        schedule: Learning-rate schedule, one of :data:`SCHEDULES`.
        budget: Fraction in ``(0, 1]`` of the job's ``[training]`` epochs and
            seconds this candidate trains for.
    """

    learning_rate: float
    batch_size: int
    optimizer: str
    weight_decay: float
    momentum: float = 0.9
    schedule: str = "constant"
    budget: float = 1.0

    def __post_init__(self) -> None:
        _validate(self, "TrainParams")


def _rule(values: Values) -> Callable[[Any], Any]:
    """The constructor's check of a field that holds ``values`` (its row's ``kind.values``)."""
    if isinstance(values, Ints):
        return _odd_int_min(values.minimum) if values.odd else _int_min(values.minimum)
    if isinstance(values, Floats):
        return _float_in(values.low, values.high, values.low_open, values.high_open)
    if isinstance(values, Names):
        return _one_of(values.names)
    assert isinstance(values, Bools)
    return _boolean


_BLOCK_NAMES: dict[type, BlockName] = {
    ConvBlock: "conv",
    PoolBlock: "pool",
    SkipBlock: "skip",
    GlobalPoolBlock: "global_pool",
    DenseBlock: "dense",
    UpBlock: "up",
    TrainParams: "train",
}


def _declared(cls: type) -> tuple[Field, ...]:
    rows = {field.name: field for field in fields_of(_BLOCK_NAMES[cls])}
    names = [f.name for f in fields(cls)]
    missing, extra = [n for n in names if n not in rows], [n for n in rows if n not in names]
    if missing or extra:  # at import: a dataclass field and the table must match one to one
        raise TypeError(f"{cls.__name__}: fields without a row {missing}, rows without a field {extra}")
    return tuple(rows[name] for name in names)


_TABLE_ROWS: dict[type, tuple[Field, ...]] = {cls: fields_of(name) for cls, name in _BLOCK_NAMES.items()}
_DECLARED_ROWS: dict[type, tuple[Field, ...]] = {cls: _declared(cls) for cls in _BLOCK_NAMES}


def field_rows(cls: type) -> tuple[Field, ...]:
    """The field table's rows of a block class, in table order (the order operators and checks visit them).

    Args:
        cls: :class:`ConvBlock`, :class:`PoolBlock`, :class:`SkipBlock`,
            :class:`GlobalPoolBlock`, :class:`DenseBlock` or :class:`TrainParams`.

    Returns:
        One :class:`~menndl.genome.fields.Field` per field of ``cls``.
    """
    return _TABLE_ROWS[cls]


def declared_rows(cls: type) -> tuple[Field, ...]:
    """The field table's rows of a block class, in the order its dataclass declares the fields.

    That is the constructor's order: a block built from one draw per field
    draws in this order.

    Args:
        cls: A block class, as for :func:`field_rows`.

    Returns:
        One :class:`~menndl.genome.fields.Field` per field of ``cls``.
    """
    return _DECLARED_ROWS[cls]


_RULES: dict[type, dict[str, Callable[[Any], Any]]] = {
    cls: {field.name: _rule(field.kind.values) for field in rows} for cls, rows in _DECLARED_ROWS.items()
}

_boolean.fast = (_BOOL, None, None)  # type: ignore[attr-defined]
_CHECKS: dict[type, tuple[tuple[str, int, Any, Any, Callable[[Any], Any]], ...]] = {
    cls: tuple((name, *rule.fast, rule) for name, rule in rules.items())  # type: ignore[attr-defined]
    for cls, rules in _RULES.items()
}

FeatureBlock = ConvBlock | PoolBlock | SkipBlock
_FEATURE_TYPES: dict[str, type] = {"conv": ConvBlock, "pool": PoolBlock, "skip": SkipBlock}
_HEAD_TYPES: dict[str, type] = {"dense": DenseBlock}
_REDUCE_TYPES: dict[str, type] = {"global_pool": GlobalPoolBlock}
_DECODER_TYPES: dict[str, type] = {"up": UpBlock}
_TYPE_NAMES: dict[type, str] = {
    cls: name for table in (_FEATURE_TYPES, _HEAD_TYPES, _REDUCE_TYPES, _DECODER_TYPES) for name, cls in table.items()
}
_FIELD_NAMES: dict[type, tuple[str, ...]] = {cls: tuple(f.name for f in fields(cls)) for cls in _RULES}
_FIELD_COUNTS: dict[type, int] = {cls: len(names) for cls, names in _FIELD_NAMES.items()}
_GENOME_KEYS = ("format", "features", "reduce", "head", "train")
_DECODER_KEY = "decoder"  # present only when the decoder has blocks: other genomes' JSON (and hash) stay as they were


def _plain(text: str) -> bool:
    """Text that JSON writes between quotes as it is (and ``%`` formatting leaves alone)."""
    return text.isascii() and text.isprintable() and not any(c in text for c in '"\\%')


class _BlockFormat:
    """A block type's canonical JSON as one ``%`` template: keys sorted, ``type`` first in its place.

    The constructor's checks (`_validate`) guarantee each field's exact type: ints and odd ints
    (``%d``), finite floats (``%r``: their ``repr``, as JSON writes them), one of a fixed set of
    plain names (``"%s"``) or a bool, which has no ``%`` form JSON shares: the template is chosen
    by the bools' values, each with its literal baked in.  One C-level format call per block
    instead of one Python call per field (operators and random genomes make new blocks per child).
    """

    def __init__(self, cls: type, typed: bool) -> None:
        checks = {name: (kind, low) for name, kind, low, _high, _rule in _CHECKS[cls]}
        keys = sorted(_FIELD_NAMES[cls] + ("type",) * typed)
        self._bools = tuple(name for name in keys if name in checks and checks[name][0] == _BOOL)
        self._values = tuple(name for name in keys if name in checks and checks[name][0] != _BOOL)
        self._templates: dict[tuple[bool, ...], str] = {}
        for combination in range(2 ** len(self._bools)):
            flags = tuple(bool(combination >> i & 1) for i in range(len(self._bools)))
            parts = []
            for key in keys:
                if key == "type":
                    parts.append('"type":"' + _TYPE_NAMES[cls] + '"')
                    continue
                kind, options = checks[key]
                if kind == _BOOL:
                    literal = "true" if flags[self._bools.index(key)] else "false"
                elif kind == _FLOAT:
                    literal = "%r"
                elif kind == _CHOICE:
                    assert all(_plain(option) for option in options), (cls, key)
                    literal = '"%s"'
                else:  # _INT, _ODD
                    literal = "%d"
                parts.append(json.dumps(key) + ":" + literal)
            self._templates[flags] = "{" + ",".join(parts) + "}"

    def __call__(self, fields_: Mapping[str, Any]) -> str:
        """The JSON text of a block whose instance dict is ``fields_``."""
        template = self._templates[tuple([fields_[name] for name in self._bools])]
        return template % tuple([fields_[name] for name in self._values])


_FORMATS: dict[tuple[type, bool], _BlockFormat] = {
    (cls, typed): _BlockFormat(cls, typed)
    for cls in _FIELD_NAMES
    for typed in ((True, False) if cls in _TYPE_NAMES else (False,))
}


# Memos a block keeps in its instance dict after its fields (never dataclass fields: equality,
# hashing and to_dict ignore them).  Blocks are immutable, so a memo never goes stale.
_JSON_MEMO = "_canonical_json_text"  # its canonical JSON text
FITS_MEMO = "_fits_space"  # the resolved search space it is known to fit (menndl.genome.repair)
_MEMO_KEYS = (_JSON_MEMO, FITS_MEMO)


def _fields_dict(obj: Any) -> dict[str, Any]:
    # A block's instance dict holds exactly its fields, in field order, then at most the memos
    # (frozen dataclasses; tests/test_genome.py checks it): a copy is several times faster than getattr per name.
    out: dict[str, Any] = obj.__dict__.copy()
    if len(out) > _FIELD_COUNTS[type(obj)]:
        for key in _MEMO_KEYS:
            out.pop(key, None)
    return out


def _block_json(block: Any, typed: bool = True) -> str:
    """A block's canonical JSON text (sorted keys, no whitespace), computed once per block object.

    Blocks are immutable and shared between a parent and its children (an operator replaces one
    block and keeps the others), so a child's canonical JSON is mostly joined from texts already made.
    """
    text: str | None = block.__dict__.get(_JSON_MEMO)
    if text is None:
        text = block.__dict__[_JSON_MEMO] = _FORMATS[type(block), typed](block.__dict__)
    return text


def _block_dict(block: Any) -> dict[str, Any]:
    out = {"type": _TYPE_NAMES[type(block)]}
    out.update(_fields_dict(block))
    return out


def _check_keys(data: Any, allowed: tuple[str, ...], where: str) -> None:
    """Require ``data`` to be a mapping with exactly the ``allowed`` keys."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    for key in data:
        if key not in allowed:
            raise ValueError(f"{where}: unknown key {key!r} (expected {', '.join(allowed)})")
    for key in allowed:
        if key not in data:
            raise ValueError(f"{where}: missing key {key!r}")


def _from_fields(cls: type, data: Any, where: str, extra: tuple[str, ...] = ()) -> Any:
    names = _FIELD_NAMES[cls]
    _check_keys(data, extra + names, where)
    try:
        return cls(**{name: data[name] for name in names})  # the constructor checks every field once
    except ValueError as exc:  # "ConvBlock.kernel: expected ..." -> "genome.features[0].kernel: expected ..."
        text, prefix = str(exc), cls.__name__
        raise ValueError(where + text[len(prefix) :] if text.startswith(prefix) else f"{where}: {text}") from None


def _block_from_dict(data: Any, types: dict[str, type], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in types:
        raise ValueError(f"{where}: unknown block type {kind!r} (expected {', '.join(types)})")
    return _from_fields(types[kind], data, where, extra=("type",))


def _block_list(data: Any, types: dict[str, type], where: str) -> tuple[Any, ...]:
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"{where}: expected a list, got {type(data).__name__}")
    return tuple(_block_from_dict(item, types, f"{where}[{i}]") for i, item in enumerate(data))


def _upgrade_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """Read a format-1 genome (no ``format`` key): conv/pool features, dense head, 4 training fields.

    Version 1 decoded to exactly what version 2 decodes with stride 1,
    dilation 1, no conv dropout, flatten, a constant learning rate, Nesterov
    momentum 0.9 for SGD and the full training budget.
    """
    _check_keys(data, ("features", "head", "train"), "genome (format 1)")
    features = data["features"]
    if isinstance(features, (list, tuple)):
        features = [
            {"stride": 1, "dilation": 1, "dropout": 0.0, **b}  # defaults first: never overwrite a given value
            if isinstance(b, Mapping) and b.get("type") == "conv"
            else b
            for b in features
        ]
    train = data["train"]
    if isinstance(train, Mapping):
        train = {"momentum": 0.9, "schedule": "constant", "budget": 1.0, **train}
    return {"format": FORMAT_VERSION, "features": features, "reduce": None, "head": data["head"], "train": train}


@dataclass(frozen=True)
class Genome:
    """A candidate network: feature blocks, global pooling, dense head, decoder, training parameters.

    For classification and regression the decoded network applies ``features`` in order, then
    ``reduce`` (global pooling; ``None`` flattens), then ``head``, then a linear classifier.  For
    segmentation it applies ``features`` (the encoder), then ``decoder`` (up blocks, each joining
    the encoder's skip at its resolution), then a 1x1 convolution to the classes, resized to the
    input's spatial size if the decoder stops short of it (``reduce`` is None, ``head`` empty).

    Attributes:
        features: Convolution, pooling and skip blocks, applied in order.
        head: Dense blocks after the reduction, before the final classifier.
        train: Training hyperparameters.
        reduce: Global pooling between features and head, or ``None`` to flatten.
        decoder: Up blocks of a segmentation network (empty otherwise).
    """

    features: tuple[FeatureBlock, ...]
    head: tuple[DenseBlock, ...]
    train: TrainParams
    reduce: GlobalPoolBlock | None = None
    decoder: tuple[UpBlock, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "head", tuple(self.head))
        if self.decoder:
            object.__setattr__(self, "decoder", tuple(self.decoder))
            for i, up in enumerate(self.decoder):
                if type(up) is not UpBlock:
                    raise ValueError(f"Genome.decoder[{i}]: expected UpBlock, got {up!r}")
        elif type(self.decoder) is not tuple:
            object.__setattr__(self, "decoder", ())
        for i, block in enumerate(self.features):
            if type(block) not in (ConvBlock, PoolBlock, SkipBlock):
                raise ValueError(f"Genome.features[{i}]: expected ConvBlock, PoolBlock or SkipBlock, got {block!r}")
        for i, dense in enumerate(self.head):
            if type(dense) is not DenseBlock:
                raise ValueError(f"Genome.head[{i}]: expected DenseBlock, got {dense!r}")
        if type(self.train) is not TrainParams:
            raise ValueError(f"Genome.train: expected TrainParams, got {self.train!r}")
        if self.reduce is not None and type(self.reduce) is not GlobalPoolBlock:
            raise ValueError(f"Genome.reduce: expected GlobalPoolBlock or None, got {self.reduce!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict; each block carries a ``"type"`` key.

        Returns:
            ``{"format": 2, "features": [...], "reduce": {...} or None,
            "head": [...], "train": {...}}``, and ``"decoder": [...]`` when it has blocks.
        """
        out: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "features": [_block_dict(b) for b in self.features],
            "reduce": None if self.reduce is None else _block_dict(self.reduce),
            "head": [_block_dict(b) for b in self.head],
            "train": _fields_dict(self.train),
        }
        if self.decoder:
            out[_DECODER_KEY] = [_block_dict(b) for b in self.decoder]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Genome:
        """Build a genome from the output of :meth:`to_dict` (any key order).

        A dict without ``format`` is read as format 1 (the first release's
        genomes) and upgraded.

        Args:
            data: Mapping with ``format``, ``features``, ``reduce``, ``head`` and ``train``
                (and ``decoder`` when it has blocks).

        Returns:
            The genome.

        Raises:
            ValueError: One line naming the bad key or value, e.g.
                ``genome.features[2]: unknown block type 'lstm' (expected conv, pool, skip)``.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"genome: expected a mapping, got {type(data).__name__}")
        if "format" not in data:
            data = _upgrade_v1(data)
        version = data["format"]
        if isinstance(version, bool) or version != FORMAT_VERSION:
            raise ValueError(
                f"genome.format: unsupported genome format {version!r} (this menndl reads 1 and {FORMAT_VERSION})"
            )
        decoder: Any = ()
        if _DECODER_KEY in data:
            decoder = _block_list(data[_DECODER_KEY], _DECODER_TYPES, "genome.decoder")
            data = {key: value for key, value in data.items() if key != _DECODER_KEY}
        _check_keys(data, _GENOME_KEYS, "genome")
        reduce = data["reduce"]
        return cls(
            features=_block_list(data["features"], _FEATURE_TYPES, "genome.features"),
            head=_block_list(data["head"], _HEAD_TYPES, "genome.head"),
            train=_from_fields(TrainParams, data["train"], "genome.train"),
            reduce=None if reduce is None else _block_from_dict(reduce, _REDUCE_TYPES, "genome.reduce"),
            decoder=decoder,
        )

    def to_json(self) -> str:
        """Return canonical JSON: sorted keys, no whitespace (computed once per genome).

        Returns:
            The JSON text; equal genomes give equal text.
        """
        return self._canonical_json

    @functools.cached_property
    def _canonical_json(self) -> str:
        # What json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")) gives (tests check it
        # byte for byte), joined from each block's memoised text: top-level keys in sorted order.
        features = ",".join([_block_json(b) for b in self.features])
        head = ",".join([_block_json(b) for b in self.head])
        reduce = "null" if self.reduce is None else _block_json(self.reduce)
        decoder = ",".join([_block_json(b) for b in self.decoder])
        decoder = f'"{_DECODER_KEY}":[{decoder}],' if self.decoder else ""
        return (
            f'{{{decoder}"features":[{features}],"format":{FORMAT_VERSION},"head":[{head}],'
            f'"reduce":{reduce},"train":{_block_json(self.train, typed=False)}}}'
        )

    @classmethod
    def from_json(cls, text: str) -> Genome:
        """Parse JSON text produced by :meth:`to_json` (or any key order).

        Args:
            text: The JSON document.

        Returns:
            The genome.

        Raises:
            ValueError: One line, for malformed JSON or a bad genome.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            where = f"line {err.lineno} column {err.colno}"
            raise ValueError(f"genome JSON is malformed at {where}: {err.msg}") from None
        except TypeError as err:
            raise ValueError(f"genome JSON is malformed: {err}") from None
        except RecursionError:
            raise ValueError("genome JSON is malformed: nested too deeply") from None
        return cls.from_dict(data)

    @functools.cached_property
    def hash(self) -> str:
        """First 16 hex digits of the SHA-256 of :meth:`to_json` (computed once)."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()[:16]
