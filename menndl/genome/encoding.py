"""Fixed-length parameter encoding of genomes, for black-box optimisers.

A black-box optimiser such as Optuna's ``NSGAIISampler`` proposes a fixed
set of named int, float and categorical parameters.  :func:`genome_parameters`
lists them for a search space and input; :func:`genome_from_parameters`
turns one value per parameter into a valid genome of that space, and
:func:`parameters_of_genome` turns a genome back into values (to seed an
optimiser with known genomes).  Plain Python: no torch, no optuna.

Each field of a slot is one parameter, made from its row of the field table
(:mod:`menndl.genome.fields`) by its kind: a range is an int or float
parameter (log if the row says so), a choice or flag a categorical one, a
rate a float over ``[-max, max]``.  The reduction is the one field-specific
parameter: flatten or a global pooling kind in one choice.  Layout, in this
order (``k`` counts slots from 0; fields in table order):

* ``f_count``: how many feature slots are decoded, ``1..max_features + max_skips``
  (``max_skips`` counts only when ``skip`` is an allowed block type).
* Feature slot ``fk_``: ``fk_type`` (``conv``, ``pool``, ``skip`` as
  ``space.block_types`` allows; slot 0 is never a skip: a skip needs an
  earlier block), the conv fields ``fk_filters`` (log int), ``fk_kernel``,
  ``fk_stride``, ``fk_dilation``, ``fk_activation``, ``fk_batch_norm``,
  ``fk_dropout`` (in ``[-max_dropout, max_dropout]``, its negative half
  meaning none), the pool fields ``fk_pool_kind``, ``fk_pool_size`` and the
  skip fields ``fk_skip_span`` (int in ``[1, k]``, the genome's relative
  span) and ``fk_skip_activation``.  Only the fields of the slot's type are
  read.
* ``reduce``: ``"flatten"``, ``"max"`` or ``"avg"`` (global pooling), if
  ``global_pool`` is allowed.
* ``h_count`` (``0..max_head``) and head slots ``hk_units`` (log int),
  ``hk_activation``, ``hk_dropout``, if ``dense`` is allowed.
* For segmentation, neither ``reduce`` nor the head but ``d_count``
  (``0..max_decoder``) and decoder slots ``dk_filters`` (log int),
  ``dk_kernel``, ``dk_mode``, ``dk_merge``, ``dk_convs``, ``dk_activation``,
  ``dk_batch_norm``, if ``up`` is allowed (repair keeps one up block per
  downsampling of the decoded encoder at most).
* The training fields, by their :class:`~menndl.genome.genome.TrainParams`
  names: ``learning_rate`` (log float), ``batch_size``, ``optimizer``,
  ``weight_decay`` (log float if its minimum is > 0), ``momentum``,
  ``schedule``, ``budget``.

A field whose domain holds one value (a fixed budget, a single pool size,
the span of slot 1, ...) is no parameter: it decodes to that value.
Decoded floats are rounded to 3 significant digits like every sampled
value (:func:`~menndl.genome.sampling.round_into`), except a range's bounds,
which are kept exactly; so every genome menndl makes survives
``genome_from_parameters(parameters_of_genome(g, ...), ...)`` unchanged.

With Optuna, for example::

    def suggest(trial, p):
        if p.kind == "choice":
            return trial.suggest_categorical(p.name, p.choices)
        suggest_number = trial.suggest_int if p.kind == "int" else trial.suggest_float
        return suggest_number(p.name, p.low, p.high, log=p.log)

    values = {p.name: suggest(trial, p) for p in genome_parameters(space, spec)}
    genome = genome_from_parameters(values, space, spec)

and ``study.enqueue_trial(parameters_of_genome(genome, space, spec))`` seeds
the study with a known genome.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from menndl.genome.fields import GLOBAL_POOL_KIND, Field, Fixed, Flag, Ints, Range, Rate, Span
from menndl.genome.genome import (
    ConvBlock,
    DenseBlock,
    FeatureBlock,
    Genome,
    GlobalPoolBlock,
    PoolBlock,
    SkipBlock,
    TrainParams,
    UpBlock,
    declared_rows,
    field_rows,
)
from menndl.genome.repair import repair
from menndl.genome.sampling import round_into
from menndl.genome.shapes import check
from menndl.genome.space import InputSpec, SearchSpace, resolve_space

FEATURE_COUNT = "f_count"  # number of feature slots decoded
HEAD_COUNT = "h_count"  # number of head slots decoded
DECODER_COUNT = "d_count"  # number of decoder slots decoded (segmentation)
REDUCE = "reduce"  # FLATTEN or a global pooling kind
FLATTEN = "flatten"
# A feature slot's block types, by the slot's type parameter, and what its fields' parameter names start with
# after the slot's ``fk_`` (a convolution's fields have plain names: fk_filters, fk_kernel, ...).
_FEATURE_BLOCKS: dict[str, tuple[type, str]] = {
    "conv": (ConvBlock, ""),
    "pool": (PoolBlock, "pool_"),
    "skip": (SkipBlock, "skip_"),
}
_FEATURE_NAMES: dict[type, tuple[str, str]] = {cls: (name, prefix) for name, (cls, prefix) in _FEATURE_BLOCKS.items()}


@dataclass(frozen=True)
class Parameter:
    """One named parameter of the encoding.

    Attributes:
        name: Unique name, e.g. ``"f2_filters"``.
        kind: ``"int"``, ``"float"`` or ``"choice"``.
        low: Smallest value of an int or float parameter (inclusive); None for a choice.
        high: Largest value of an int or float parameter (inclusive, ``> low``); None for a choice.
        log: Whether the value is best searched log-uniformly (int/float; then ``low > 0``).
        choices: The values of a choice (at least two; None, bool, int, float or str only).
    """

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in this parameter's domain.

        A choice matches by type and value (``True`` is not ``1``); an int
        must be an ``int`` (not a bool); a float may be an int or a float.

        Args:
            value: The candidate value.

        Returns:
            True if the value is inside the domain.
        """
        if self.kind == "choice":
            return any(type(value) is type(c) and value == c for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, int if self.kind == "int" else (int, float)):
            return False
        assert self.low is not None and self.high is not None
        return self.low <= value <= self.high  # False for nan


@dataclass(frozen=True)
class _Layout:
    """The parameters of a resolved space, and the value of each field that is no parameter."""

    parameters: tuple[Parameter, ...]
    by_name: dict[str, Parameter]
    fixed: dict[str, Any]


class _Builder:
    """Collects parameters in order; a single-valued domain becomes a fixed value instead."""

    def __init__(self) -> None:
        self.parameters: list[Parameter] = []
        self.fixed: dict[str, Any] = {}

    def number(self, name: str, kind: str, bounds: tuple[Any, Any], log: bool = False) -> None:
        low, high = (int(b) for b in bounds) if kind == "int" else (float(b) for b in bounds)
        if low == high:
            self.fixed[name] = low
        else:
            self.parameters.append(Parameter(name, kind, low, high, log and low > 0))

    def choice(self, name: str, options: tuple[Any, ...]) -> None:
        unique: list[Any] = []
        for option in options:
            if not any(type(option) is type(u) and option == u for u in unique):
                unique.append(option)
        if len(unique) == 1:
            self.fixed[name] = unique[0]
        else:
            self.parameters.append(Parameter(name, "choice", choices=tuple(unique)))

    def layout(self) -> _Layout:
        by_name = {p.name: p for p in self.parameters}
        assert len(by_name) == len(self.parameters) and not set(by_name) & set(self.fixed)
        return _Layout(tuple(self.parameters), by_name, self.fixed)


def _feature_types(space: SearchSpace) -> tuple[str, ...]:
    """Feature block types a slot may hold (slot 0 excepted: no skip there)."""
    types = ["conv"]
    if "pool" in space.block_types:
        types.append("pool")
    if "skip" in space.block_types and space.max_skips > 0:
        types.append("skip")
    return tuple(types)


def _feature_slots(space: SearchSpace) -> int:
    """Most feature blocks a genome of the (resolved) space can have."""
    return space.max_features + (space.max_skips if "skip" in _feature_types(space) else 0)


def _head_slots(space: SearchSpace) -> int:
    return space.max_head if "dense" in space.block_types else 0


def _decoder_slots(space: SearchSpace) -> int:
    return space.max_decoder if "up" in space.block_types else 0


def _add(b: _Builder, name: str, field: Field, space: SearchSpace, position: int) -> None:
    """The parameter (or fixed value) of one field, by its row's kind."""
    kind = field.kind
    if isinstance(kind, Range):
        b.number(name, "int" if isinstance(kind.values, Ints) else "float", kind.bounds(space), log=kind.log)
    elif isinstance(kind, Rate):
        high = kind.bounds(space)[1]
        b.number(name, "float", (-high, high))  # rectified: below 0 means none (see `_decoded`)
    elif isinstance(kind, Flag):
        b.choice(name, (False, True))
    elif isinstance(kind, Span):
        b.number(name, "int", (1, position))  # the genome's relative span: back to the input at most
    else:
        b.choice(name, kind.options(space))


@functools.lru_cache(maxsize=64)
def _layout(space: SearchSpace, segmentation: bool) -> _Layout:
    """The layout of a resolved space (see the module docstring), computed once per space and task kind."""
    b = _Builder()
    types = _feature_types(space)
    slots = _feature_slots(space)
    b.number(FEATURE_COUNT, "int", (1, slots))
    for k in range(slots):
        p = f"f{k}_"
        b.choice(p + "type", types if k else tuple(t for t in types if t != "skip"))
        for kind_name in types:
            if kind_name == "skip" and not k:
                continue  # slot 0 is never a skip
            cls, prefix = _FEATURE_BLOCKS[kind_name]
            for field in field_rows(cls):
                _add(b, p + prefix + field.name, field, space, k)
    if segmentation:
        b.number(DECODER_COUNT, "int", (0, _decoder_slots(space)))
        for k in range(_decoder_slots(space)):
            for field in field_rows(UpBlock):
                _add(b, f"d{k}_{field.name}", field, space, k)
    else:
        assert isinstance(GLOBAL_POOL_KIND.kind, Fixed)
        pool_kinds = GLOBAL_POOL_KIND.kind.options(space) if "global_pool" in space.block_types else ()
        b.choice(REDUCE, (FLATTEN, *pool_kinds))
        b.number(HEAD_COUNT, "int", (0, _head_slots(space)))
        for k in range(_head_slots(space)):
            for field in field_rows(DenseBlock):
                _add(b, f"h{k}_{field.name}", field, space, k)
    for field in field_rows(TrainParams):
        _add(b, field.name, field, space, 0)
    return b.layout()


def _space_layout(space: SearchSpace, spec: InputSpec) -> tuple[SearchSpace, _Layout]:
    resolved = resolve_space(space, spec.spatial_rank)
    return resolved, _layout(resolved, spec.task == "segmentation")


def genome_parameters(space: SearchSpace, spec: InputSpec) -> tuple[Parameter, ...]:
    """The fixed list of parameters of genomes of ``space`` for inputs like ``spec``.

    Equal spaces and inputs of the same spatial rank give the same list, in
    the same order (see the module docstring for the layout).

    Args:
        space: The search space.
        spec: Input shape and class count (only its spatial rank matters).

    Returns:
        The parameters.
    """
    return _space_layout(space, spec)[1].parameters


def _round_in(x: float, low: float, high: float) -> float:
    """``x`` rounded to 3 significant digits inside ``[low, high]``; a bound stays exactly itself."""
    if x <= low:
        return low
    if x >= high:
        return high
    return round_into(x, (low, high))


class _Reader:
    """Reads decoded fields: a parameter's value, checked (floats rounded), or a fixed field's value."""

    def __init__(self, values: Mapping[str, Any], layout: _Layout) -> None:
        self.values = values
        self.layout = layout

    def __call__(self, name: str) -> Any:
        parameter = self.layout.by_name.get(name)
        if parameter is None:
            return self.layout.fixed[name]
        if name not in self.values:
            raise ValueError(f"genome parameters: no value for {name!r}")
        value = self.values[name]
        if not parameter.contains(value):
            raise ValueError(f"genome parameters: {name} = {value!r} is outside {_domain_text(parameter)}")
        if parameter.kind == "choice":
            return next(c for c in parameter.choices if type(value) is type(c) and value == c)
        if parameter.kind == "int":
            return int(value)
        assert parameter.low is not None and parameter.high is not None
        return _round_in(float(value), float(parameter.low), float(parameter.high))


def _domain_text(parameter: Parameter) -> str:
    if parameter.kind == "choice":
        return f"the choices {list(parameter.choices)}"
    return f"the {parameter.kind} range [{parameter.low}, {parameter.high}]"


def _decoded(read: _Reader, cls: type, prefix: str) -> Any:
    """A block of class ``cls`` from the parameters ``prefix + field`` (read in constructor order)."""
    return cls(**{field.name: _value(field, read(prefix + field.name)) for field in declared_rows(cls)})


def _value(field: Field, value: Any) -> Any:
    """A parameter's value as the field's value: a rate's negative half is 0 (no dropout).

    Half of an optimiser's uniform draws then mean "no dropout", as most of
    menndl's sampled blocks have none (a plain ``[0, max]`` range would put a
    dropout layer almost everywhere and handicap the optimiser).
    """
    return max(0.0, value) if isinstance(field.kind, Rate) else value


def _decode_feature(read: _Reader, k: int) -> FeatureBlock:
    p = f"f{k}_"
    cls, prefix = _FEATURE_BLOCKS[read(p + "type")]
    block: FeatureBlock = _decoded(read, cls, p + prefix)
    return block


def genome_from_parameters(values: Mapping[str, Any], space: SearchSpace, spec: InputSpec) -> Genome:
    """Decode one value per parameter into a valid genome of ``space``.

    The first ``f_count`` feature slots and ``h_count`` head slots (for
    segmentation: ``d_count`` decoder slots) are decoded, each reading only the fields of its type; the genome is then
    :func:`~menndl.genome.repair.repair`-ed (a pool that shrinks a size
    below 1, a skip whose source cannot be mapped, conv/pool blocks beyond
    ``max_features`` and skips beyond ``max_skips`` are dropped).
    Deterministic: equal values give equal genomes.  Values of parameters
    that are not read (unused slots and fields) may be missing; keys that
    name no parameter are ignored.

    Args:
        values: Parameter name -> value, each inside its :class:`Parameter`'s domain.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        A genome that passes :func:`menndl.genome.shapes.check`.

    Raises:
        ValueError: A value that is read is missing or outside its parameter's domain.
    """
    space, layout = _space_layout(space, spec)
    read = _Reader(values, layout)
    features = tuple(_decode_feature(read, k) for k in range(read(FEATURE_COUNT)))
    train = _decoded(read, TrainParams, "")
    if spec.task == "segmentation":
        decoder = tuple(_decoded(read, UpBlock, f"d{k}_") for k in range(read(DECODER_COUNT)))
        return repair(Genome(features, (), train, None, decoder), space, spec)
    kind = read(REDUCE)
    reduce = None if kind == FLATTEN else GlobalPoolBlock(kind)
    head = tuple(_decoded(read, DenseBlock, f"h{k}_") for k in range(read(HEAD_COUNT)))
    return repair(Genome(features, head, train, reduce), space, spec)


def _default(parameter: Parameter) -> Any:
    """The value an unused parameter gets: its low bound or first choice."""
    return parameter.choices[0] if parameter.kind == "choice" else parameter.low


def parameters_of_genome(genome: Genome, space: SearchSpace, spec: InputSpec) -> dict[str, Any]:
    """Encode a genome of ``space``: a value inside every parameter's domain, for every parameter.

    Unused slots and fields get a fixed default (the low bound or the first
    choice).  :func:`genome_from_parameters` gives the genome back, equal
    (same hash) whenever its floats have at most 3 significant digits or
    equal a bound of their range, as every genome menndl samples, mutates,
    crosses over or repairs does.

    Args:
        genome: A genome that fits ``space`` and ``spec``.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        Parameter name -> value, in the order of :func:`genome_parameters`.

    Raises:
        InvalidGenome: If the genome does not fit ``space`` and ``spec``.
    """
    space, layout = _space_layout(space, spec)
    check(genome, space, spec)  # then every field below lies in its domain, and the slots suffice
    out = {p.name: _default(p) for p in layout.parameters}

    def put(name: str, value: Any) -> None:
        if name in out:
            out[name] = value

    def put_block(block: Any, prefix: str) -> None:
        for field in field_rows(type(block)):
            put(prefix + field.name, getattr(block, field.name))

    put(FEATURE_COUNT, len(genome.features))
    for k, block in enumerate(genome.features):
        p = f"f{k}_"
        kind_name, prefix = _FEATURE_NAMES[type(block)]
        put(p + "type", kind_name)
        put_block(block, p + prefix)
    put(REDUCE, FLATTEN if genome.reduce is None else genome.reduce.kind)
    put(HEAD_COUNT, len(genome.head))
    for k, dense in enumerate(genome.head):
        put_block(dense, f"h{k}_")
    put(DECODER_COUNT, len(genome.decoder))
    for k, up in enumerate(genome.decoder):
        put_block(up, f"d{k}_")
    put_block(genome.train, "")
    return out


__all__ = [
    "DECODER_COUNT",
    "FEATURE_COUNT",
    "FLATTEN",
    "HEAD_COUNT",
    "REDUCE",
    "Parameter",
    "genome_from_parameters",
    "genome_parameters",
    "parameters_of_genome",
]
