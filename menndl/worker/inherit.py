"""Lamarckian weight inheritance: a child network starts from its parent's trained weights.

A child genome made by mutation or crossover differs from its parent in a few blocks.  Its network, built
by :func:`menndl.genome.decode.build_model` and freshly initialised, takes from the parent's trained
state dict every layer whose shapes did not change, and an inserted layer starts function-preserving
where that is possible (network morphisms, as in LEMONADE).  The rules, all deterministic and cheap
(no forward pass, no model of the parent is built):

* **Layers and roles.**  A *layer* is a module with parameters of its own: a convolution, batch norm,
  linear or transposed convolution.  Every layer has a *role* read from the genome, the way the decoder
  lays the network out: feature block ``i`` has ``conv`` (``features.i.0``) and, with batch norm, ``bn``
  (``features.i.1``), a skip its ``project`` (``features.i.project``, a 1x1 convolution when channels
  differ); dense block ``d`` has ``linear`` (``head.<position>``: the head is one Sequential of Linear,
  activation, [Dropout] per dense block, so positions are counted from the blocks), then the classifier
  (the last ``head`` entry; a segmentation network's 1x1 ``classifier``); up block ``k`` has
  ``upsample`` (transposed convolution), ``project`` and ``conv<j>`` / ``bn<j>`` per convolution.
* **Aligning blocks.**  The parent's and the child's conv and pool blocks (skips set aside), dense blocks
  and up blocks are aligned with :class:`difflib.SequenceMatcher` (``autojunk=False``) in three passes,
  each inside the stretches the one before replaced: on the whole block; on the fields that set
  parameter shapes (conv: filters, kernel, stride, dilation, batch norm; pool: size; dense: units; up:
  every field but the activation); on the block type alone.  So an altered activation, dropout, pool
  kind or filter count still pairs the block with its old self, while an inserted block pairs with
  nothing.  Skips then pair by the two tensors they join, named through the paired blocks (their spans
  move when a block is inserted or removed between the two, so a span says little): first by both
  names and the activation, then by both names, then by the current tensor alone (see
  :func:`_align_features`).  The classifier always pairs with the parent's.
* **Copying.**  A child layer whose block is paired takes the parent's layer of the same role: when the
  parent's ``weight`` has exactly the child's shape, every entry (parameters and buffers: batch-norm
  running statistics travel with their layer) that exists in the parent with the same shape is copied.
  Anything else keeps its fresh initialisation: a shape mismatch never raises, a bias is never taken
  without its weight, and names of ``parent_state`` that no role reads are ignored.
* **Function-preserving starts** for a child block that pairs with nothing (an inserted block):

  - a convolution with as many input as output channels and stride 1 gets the identity kernel
    (:func:`torch.nn.init.dirac_`, odd kernels with any dilation are 'same') and a zero bias; it counts
    as *preserved* only when its output provably equals its input: no batch norm (left at its fresh
    init, which is no identity on the parent's statistics) and activation ``none``, or ``relu`` on an
    input known to be non-negative (the output of a ``relu``, or of pooling, an identity block or a
    skip sum of such; the network input is not).  Dropout is the identity in eval mode;
  - a skip whose projection is a convolution gets a zero projection, so the residual branch adds 0; it
    counts as preserved with activation ``none``, or ``relu`` on a non-negative input.  A skip without
    parameters (identity or average-pooling path) cannot be zeroed and is left alone;
  - a dense block with as many inputs as units gets the identity matrix and a zero bias, counted as for
    a convolution (the reduction keeps signs).

``Inheritance`` reports what happened.  For a crossover child pass the parent its first blocks came from.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from menndl.genome.decode import SegmentationNet
from menndl.genome.genome import ConvBlock, DenseBlock, Genome, PoolBlock, SkipBlock

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Inheritance", "inherit_weights"]

Role = tuple[str, int, str]  # (part, block index, layer of the block): ("features", 2, "bn"), ("out", 0, "linear")


@dataclass(frozen=True)
class Inheritance:
    """What a child took from its parent.

    Attributes:
        layers: Layers (conv / linear / batch-norm / transposed-conv modules) whose every tensor was copied
            from the parent.
        tensors: State-dict entries copied.
        preserved: Added layers given a function-preserving start (identity conv, zero residual branch).
        total_layers: Layers with parameters in the child.
    """

    layers: int
    tensors: int
    preserved: int
    total_layers: int


# ---------------------------------------------------------------- layout: the role of every layer


def _layout(genome: Genome, segmentation: bool) -> dict[Role, str]:
    """The module name of every layer role the decoder gives ``genome`` (roles it may lack included)."""
    out: dict[Role, str] = {}
    for i, block in enumerate(genome.features):
        if type(block) is ConvBlock:
            out["features", i, "conv"] = f"features.{i}.0"
            if block.batch_norm:
                out["features", i, "bn"] = f"features.{i}.1"
        elif type(block) is SkipBlock:
            out["features", i, "project"] = f"features.{i}.project"  # a layer only when channels differ
    if segmentation:
        for k, up in enumerate(genome.decoder):
            out["decoder", k, "upsample"] = f"decoder.{k}.upsample"  # a layer only for mode "transpose"
            out["decoder", k, "project"] = f"decoder.{k}.project"  # a layer only for an "add" of other channels
            position = 0
            for j in range(up.convs):
                out["decoder", k, f"conv{j}"] = f"decoder.{k}.convs.{position}"
                if up.batch_norm:
                    out["decoder", k, f"bn{j}"] = f"decoder.{k}.convs.{position + 1}"
                position += 3 if up.batch_norm else 2
        out["out", 0, "conv"] = "classifier"
        return out
    position = 0
    for d, dense in enumerate(genome.head):
        out["head", d, "linear"] = f"head.{position}"
        position += 3 if dense.dropout > 0 else 2
    out["out", 0, "linear"] = f"head.{position}"
    return out


# ---------------------------------------------------------------- alignment of block lists

Keys = tuple[Hashable, ...]  # one key per matching pass, finest first


def _values(block: Any, skip: tuple[str, ...] = ()) -> tuple[Any, ...]:
    return (type(block).__name__, *(getattr(block, f.name) for f in fields(block) if f.name not in skip))


def _shaping(block: Any) -> Hashable:
    """The fields that set the shapes of the block's parameters (and, for pools, of what follows)."""
    if type(block) is ConvBlock:
        return ("conv", block.filters, block.kernel, block.stride, block.dilation, block.batch_norm)
    if type(block) is PoolBlock:
        return ("pool", block.size)
    if type(block) is DenseBlock:
        return ("dense", block.units)
    return _values(block, ("activation",))  # an up block: every field but its activation sets shapes


def _keys(block: Any) -> Keys:
    """A conv, pool, dense or up block: the whole block, its shaping fields, its type."""
    return (_values(block), _shaping(block), type(block).__name__)


def _match(parent: Sequence[Keys], child: Sequence[Keys]) -> dict[int, int]:
    """Child index -> parent index of the elements the matching passes pair, in order.

    Pass ``k`` aligns, with :class:`difflib.SequenceMatcher`, the elements' ``k``-th keys inside the
    stretches that pass ``k - 1`` replaced; equal keys pair.
    """
    pairs: dict[int, int] = {}

    def match(p: range, c: range, depth: int) -> None:
        left = [parent[i][depth] for i in p]
        right = [child[i][depth] for i in c]
        for tag, a0, a1, b0, b1 in difflib.SequenceMatcher(None, left, right, autojunk=False).get_opcodes():
            if tag == "equal":
                pairs.update(zip(c[b0:b1], p[a0:a1]))
            elif tag == "replace" and depth + 1 < len(parent[p[a0]]):
                match(p[a0:a1], c[b0:b1], depth + 1)

    if parent and child:
        match(range(len(parent)), range(len(child)), 0)
    return pairs


def _skip_keys(features: Sequence[Any], names: Sequence[int], i: int) -> Keys:
    """A skip's keys: what it joins (the names of its current and source tensors) and its activation.

    ``names[k]`` names the input of block ``k`` (the output of block ``k - 1``; -1 is the network input).
    Keys: the two names and the activation, the two names, the current tensor's name alone.
    """
    block = features[i]
    current, source = names[i], names[max(i - block.span, 0)]
    return ((current, source, block.activation), (current, source), current)


def _align_features(parent: Sequence[Any], child: Sequence[Any]) -> dict[int, int]:
    """Child feature index -> parent feature index: conv and pool blocks first, then the skips between them.

    Tensors are named in the parent's terms: the output of a paired block by its parent index, the output
    of an unpaired one by the name of its input (an inserted block that starts as the identity, a removed
    one the child's skips reach across), the network input by -1.  A skip's keys (:func:`_skip_keys`)
    name the tensors it joins, and those names depend on the skips before it, so skips pair one at a
    time rather than by :class:`difflib.SequenceMatcher`: pass by pass (finest key first), each unpaired
    child skip in order takes the first unpaired parent skip with an equal key that keeps the pairing in
    order (after the parent partners of the child blocks before it, before those of the blocks after it).
    """
    p_blocks = [i for i, b in enumerate(parent) if type(b) is not SkipBlock]
    c_blocks = [i for i, b in enumerate(child) if type(b) is not SkipBlock]
    found = _match([_keys(parent[i]) for i in p_blocks], [_keys(child[i]) for i in c_blocks])
    pairs = {c_blocks[c]: p_blocks[p] for c, p in found.items()}
    kept = set(pairs.values())  # parent blocks with a partner: conv and pool blocks now, skips as they pair
    p_skips = [j for j, b in enumerate(parent) if type(b) is SkipBlock]
    c_skips = [i for i, b in enumerate(child) if type(b) is SkipBlock]

    def names(upto: int, partner: Mapping[int, int]) -> list[int]:
        out = [-1]
        for k in range(upto):
            out.append(partner.get(k, out[-1]))
        return out

    for depth in range(3):
        for i in c_skips:
            if i in pairs:
                continue
            wanted = _skip_keys(child, names(i, pairs), i)[depth]
            low = max((p for c, p in pairs.items() if c < i), default=-1)
            high = min((p for c, p in pairs.items() if c > i), default=len(parent))
            for j in p_skips:
                if low < j < high and j not in kept:
                    if _skip_keys(parent, names(j, {k: k for k in kept}), j)[depth] == wanted:
                        pairs[i] = j
                        kept.add(j)
                        break
    return pairs


def _align(parent: Sequence[Any], child: Sequence[Any]) -> dict[int, int]:
    """Child index -> parent index of paired dense or up blocks."""
    return _match([_keys(b) for b in parent], [_keys(b) for b in child])


# ---------------------------------------------------------------- copying


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    try:
        return None if shape is None else tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        return None


def _as_tensor(value: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    with warnings.catch_warnings():  # a read-only array (np.load, a memory map): it is only read here
        warnings.simplefilter("ignore", UserWarning)
        return torch.as_tensor(value)


def _entries(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's own state-dict entries (parameters, then buffers), by attribute name."""
    out: dict[str, torch.Tensor] = dict(module.named_parameters(recurse=False))
    out.update((name, b) for name, b in module.named_buffers(recurse=False) if b is not None)
    return out


def _copy_layer(module: nn.Module, parent_prefix: str, parent_state: Mapping[str, Any]) -> tuple[int, bool]:
    """Copy the parent's entries of one layer into ``module`` (all under ``torch.no_grad``).

    Returns:
        ``(entries copied, whether every entry of the layer was copied)``.
    """
    entries = _entries(module)
    weight = entries.get("weight")
    if weight is not None and _shape(parent_state.get(f"{parent_prefix}.weight")) != tuple(weight.shape):
        return 0, False  # the layer changed shape: nothing of it (not a bias alone) is taken
    copied = 0
    for name, target in entries.items():
        source = parent_state.get(f"{parent_prefix}.{name}")
        if source is None or _shape(source) != tuple(target.shape):
            continue
        try:
            target.copy_(_as_tensor(source))
        except (TypeError, ValueError, RuntimeError):  # not numbers (an object array, a complex tensor): skipped
            continue
        copied += 1
    return copied, copied == len(entries)


# ---------------------------------------------------------------- function-preserving starts


def _identity_conv(module: nn.Module) -> bool:
    """Make a stride-1 convolution with as many input as output channels the identity; whether it was one."""
    if not isinstance(module, nn.modules.conv._ConvNd) or isinstance(module, nn.modules.conv._ConvTransposeNd):
        return False
    weight = module.weight
    if module.groups != 1 or weight.shape[0] != weight.shape[1] or any(s != 1 for s in module.stride):
        return False
    same = tuple(d * (k - 1) // 2 for k, d in zip(module.kernel_size, module.dilation))
    if any(k % 2 == 0 for k in module.kernel_size) or module.padding != same or module.padding_mode != "zeros":
        return False
    nn.init.dirac_(weight)
    if module.bias is not None:
        module.bias.zero_()
    return True


def _identity_linear(module: nn.Module) -> bool:
    if not isinstance(module, nn.Linear) or module.in_features != module.out_features:
        return False
    nn.init.eye_(module.weight)
    if module.bias is not None:
        module.bias.zero_()
    return True


def _passes_through(activation: str, nonnegative: bool) -> bool:
    """Whether ``activation`` is the identity on its input (relu: on a non-negative one)."""
    return activation == "none" or (activation == "relu" and nonnegative)


def _preserve(genome: Genome, modules: Mapping[str, nn.Module], layout: Mapping[Role, str],
              paired: Mapping[str, Mapping[int, int]]) -> int:  # fmt: skip
    """Give the unpaired feature and dense blocks a function-preserving start; how many provably preserve."""
    preserved = 0
    nonnegative = [False]  # nonnegative[i]: the input of feature block i (the network input: unknown)
    for i, block in enumerate(genome.features):
        before = nonnegative[i]
        after = False
        if type(block) is ConvBlock:
            module = modules.get(layout["features", i, "conv"])
            identity = i not in paired["features"] and module is not None and _identity_conv(module)
            if identity and not block.batch_norm and _passes_through(block.activation, before):
                preserved += 1
                after = before or block.activation == "relu"
            else:
                after = block.activation == "relu"
        elif type(block) is PoolBlock:
            after = before  # max and mean keep signs
        elif type(block) is SkipBlock:
            source = nonnegative[i - block.span] if 0 <= i - block.span < len(nonnegative) else False
            project = modules.get(layout["features", i, "project"])
            convolved = isinstance(project, nn.modules.conv._ConvNd)
            if isinstance(project, nn.modules.conv._ConvNd) and i not in paired["features"]:
                nn.init.zeros_(project.weight)
                if _passes_through(block.activation, before):
                    preserved += 1
                    after = before
            if block.activation == "relu":
                after = True
            elif not convolved:  # an identity or average-pooling path: a sum of non-negatives is one
                after = after or (before and source)
        nonnegative.append(after)
    flowing = nonnegative[-1]  # flatten and global pooling keep signs
    for d, dense in enumerate(genome.head):
        module = modules.get(layout.get(("head", d, "linear"), ""))
        identity = d not in paired["head"] and module is not None and _identity_linear(module)
        if identity and _passes_through(dense.activation, flowing):
            preserved += 1
            flowing = flowing or dense.activation == "relu"
        else:
            flowing = dense.activation == "relu"
    return preserved


# ---------------------------------------------------------------- the entry point


def inherit_weights(child: nn.Module, child_genome: Genome, parent_state: Mapping[str, torch.Tensor | np.ndarray],
                    parent_genome: Genome) -> Inheritance:  # fmt: skip
    """Copy into ``child`` the parent's trained tensors of every layer whose shapes did not change.

    ``child`` is the network of ``child_genome`` as built by :func:`menndl.genome.decode.build_model`
    and freshly initialised; it is changed in place.  Blocks are aligned and layers copied by the rules
    of this module's docstring; a block the child has and the parent lacks gets a function-preserving
    start where one exists.  Nothing raises for a mismatch: what does not fit keeps its initialisation.

    Args:
        child: The child's freshly initialised network.
        child_genome: The genome ``child`` was built from.
        parent_state: The parent's trained state dict (tensors or numpy arrays, on any device; e.g.
            :func:`menndl.worker.measure.weights_as_arrays`).  Names no layer reads are ignored.
        parent_genome: The genome the parent's network was built from (for a crossover child: the
            parent its first feature blocks came from).

    Returns:
        What was inherited: layers copied whole, entries copied, added layers started
        function-preserving, and the child's layer count.
    """
    child_layout = _layout(child_genome, segmentation=isinstance(child, SegmentationNet))
    parent_layout = _layout(parent_genome, segmentation="classifier.weight" in parent_state)
    paired = {
        "features": _align_features(parent_genome.features, child_genome.features),
        "head": _align(parent_genome.head, child_genome.head),
        "decoder": _align(parent_genome.decoder, child_genome.decoder),
        "out": {0: 0},
    }
    roles = {name: role for role, name in child_layout.items()}
    modules = dict(child.named_modules())
    layers = tensors = total = 0
    with torch.no_grad():
        for name, module in modules.items():
            if next(module.parameters(recurse=False), None) is None:
                continue
            total += 1
            role = roles.get(name)
            if role is None:
                continue
            part, index, layer = role
            source = paired[part].get(index)
            parent_name = None if source is None else parent_layout.get((part, source, layer))
            if parent_name is None:
                continue
            copied, whole = _copy_layer(module, parent_name, parent_state)
            tensors += copied
            layers += whole
        preserved = _preserve(child_genome, modules, child_layout, paired)
    return Inheritance(layers=layers, tensors=tensors, preserved=preserved, total_layers=total)
