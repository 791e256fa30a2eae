"""Immutable genome data: blocks, training parameters, (de)serialisation, hash.

A :class:`Genome` is plain data.  It knows how to turn itself into a dict or
canonical JSON and back, and checks that every field holds a sensible value
on its own.  Whether it fits a search space or an input shape is decided in
:mod:`menndl.genome.shapes`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "silu")
POOL_KINDS: tuple[str, ...] = ("max", "avg")
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd")
MAX_DROPOUT: float = 0.9  # dropout must lie in [0, MAX_DROPOUT)


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

    return rule


def _odd_int(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or x < 1 or x % 2 == 0:
        raise _Bad("an odd integer >= 1")
    return x


def _one_of(options: tuple[str, ...]) -> Callable[[Any], str]:
    def rule(x: Any) -> str:
        if x not in options or not isinstance(x, str):
            raise _Bad("one of " + ", ".join(options))
        return x

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
        x = float(x)
        if not math.isfinite(x) or x < lo or x > hi or (lo_open and x == lo) or (hi_open and x == hi):
            raise _Bad(text)
        return x

    return rule


def _validate(obj: Any, where: str) -> None:
    """Check (and normalise, e.g. int -> float) every field of a block."""
    for name, rule in _RULES[type(obj)].items():
        value = getattr(obj, name)
        try:
            normal = rule(value)
        except _Bad as bad:
            raise ValueError(f"{where}.{name}: expected {bad}, got {value!r}") from None
        if normal is not value:
            object.__setattr__(obj, name, normal)


@dataclass(frozen=True)
class ConvBlock:
    """A 'same'-padded, stride-1 convolution, optional batch norm, activation.

    Attributes:
        filters: Number of output channels (>= 1).
        kernel: Kernel size along every spatial axis (odd, >= 1).
        activation: One of :data:`ACTIVATIONS`.
        batch_norm: Whether a batch-norm layer follows the convolution.
    """

    filters: int
    kernel: int
    activation: str
    batch_norm: bool

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
class TrainParams:
    """Training hyperparameters.

    Attributes:
        learning_rate: Positive learning rate.
        batch_size: Mini-batch size (>= 1).
        optimizer: One of :data:`OPTIMIZERS`.
        weight_decay: Non-negative weight decay.
    """

    learning_rate: float
    batch_size: int
    optimizer: str
    weight_decay: float

    def __post_init__(self) -> None:
        _validate(self, "TrainParams")


_RULES: dict[type, dict[str, Callable[[Any], Any]]] = {
    ConvBlock: {
        "filters": _int_min(1),
        "kernel": _odd_int,
        "activation": _one_of(ACTIVATIONS),
        "batch_norm": _boolean,
    },
    PoolBlock: {"kind": _one_of(POOL_KINDS), "size": _int_min(2)},
    DenseBlock: {
        "units": _int_min(1),
        "activation": _one_of(ACTIVATIONS),
        "dropout": _float_in(0.0, MAX_DROPOUT, False, True),
    },
    TrainParams: {
        "learning_rate": _float_in(0.0, math.inf, True, False),
        "batch_size": _int_min(1),
        "optimizer": _one_of(OPTIMIZERS),
        "weight_decay": _float_in(0.0, math.inf, False, False),
    },
}

FeatureBlock = ConvBlock | PoolBlock
_FEATURE_TYPES: dict[str, type] = {"conv": ConvBlock, "pool": PoolBlock}
_HEAD_TYPES: dict[str, type] = {"dense": DenseBlock}
_TYPE_NAMES: dict[type, str] = {ConvBlock: "conv", PoolBlock: "pool", DenseBlock: "dense"}


def _fields_dict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


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
    names = tuple(f.name for f in fields(cls))
    _check_keys(data, extra + names, where)
    values = {name: data[name] for name in names}
    for name, rule in _RULES[cls].items():
        try:
            values[name] = rule(values[name])
        except _Bad as bad:
            raise ValueError(f"{where}.{name}: expected {bad}, got {values[name]!r}") from None
    return cls(**values)


def _block_from_dict(data: Any, types: dict[str, type], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    kind = data.get("type")
    if kind not in types:
        raise ValueError(f"{where}: unknown block type {kind!r} (expected {', '.join(types)})")
    return _from_fields(types[kind], data, where, extra=("type",))


def _block_list(data: Any, types: dict[str, type], where: str) -> tuple[Any, ...]:
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"{where}: expected a list, got {type(data).__name__}")
    return tuple(_block_from_dict(item, types, f"{where}[{i}]") for i, item in enumerate(data))


@dataclass(frozen=True)
class Genome:
    """A candidate network: feature blocks, dense head, training parameters.

    Attributes:
        features: Convolution and pooling blocks, applied in order.
        head: Dense blocks after flattening, before the final classifier.
        train: Training hyperparameters.
    """

    features: tuple[FeatureBlock, ...]
    head: tuple[DenseBlock, ...]
    train: TrainParams

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "head", tuple(self.head))
        for i, block in enumerate(self.features):
            if not isinstance(block, (ConvBlock, PoolBlock)):
                raise ValueError(f"Genome.features[{i}]: expected ConvBlock or PoolBlock, got {block!r}")
        for i, dense in enumerate(self.head):
            if not isinstance(dense, DenseBlock):
                raise ValueError(f"Genome.head[{i}]: expected DenseBlock, got {dense!r}")
        if not isinstance(self.train, TrainParams):
            raise ValueError(f"Genome.train: expected TrainParams, got {self.train!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict; each block carries a ``"type"`` key.

        Returns:
            ``{"features": [...], "head": [...], "train": {...}}``.
        """
        return {
            "features": [{"type": _TYPE_NAMES[type(b)], **_fields_dict(b)} for b in self.features],
            "head": [{"type": "dense", **_fields_dict(b)} for b in self.head],
            "train": _fields_dict(self.train),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Genome:
        """Build a genome from the output of :meth:`to_dict` (any key order).

        Args:
            data: Mapping with ``features``, ``head`` and ``train``.

        Returns:
            The genome.

        Raises:
            ValueError: One line naming the bad key or value, e.g.
                ``genome.features[2]: unknown block type 'lstm' (expected conv, pool)``.
        """
        _check_keys(data, ("features", "head", "train"), "genome")
        return cls(
            features=_block_list(data["features"], _FEATURE_TYPES, "genome.features"),
            head=_block_list(data["head"], _HEAD_TYPES, "genome.head"),
            train=_from_fields(TrainParams, data["train"], "genome.train"),
        )

    def to_json(self) -> str:
        """Return canonical JSON: sorted keys, no whitespace (computed once per genome).

        Returns:
            The JSON text; equal genomes give equal text.
        """
        return self._canonical_json

    @functools.cached_property
    def _canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

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
        return cls.from_dict(data)

    @functools.cached_property
    def hash(self) -> str:
        """First 16 hex digits of the SHA-256 of :meth:`to_json` (computed once)."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()[:16]
