"""Genomes: plain-data network descriptions, search space, operators.

Importing this package does not import torch; the decoder lives in
:mod:`menndl.genome.decode` and must be imported explicitly.
"""

from __future__ import annotations

from menndl.genome.genome import (
    ACTIVATIONS,
    MAX_DROPOUT,
    OPTIMIZERS,
    POOL_KINDS,
    ConvBlock,
    DenseBlock,
    FeatureBlock,
    Genome,
    PoolBlock,
    TrainParams,
    round_sig,
)
from menndl.genome.operators import (
    MUTATIONS,
    add_block,
    alter_block,
    alter_training,
    crossover,
    mutate,
    remove_block,
    repair,
)
from menndl.genome.sampling import random_genome
from menndl.genome.shapes import check, count_flops, count_params, is_valid, layer_shapes
from menndl.genome.space import InputSpec, InvalidGenome, SearchSpace

__all__ = [
    "ACTIVATIONS",
    "MAX_DROPOUT",
    "MUTATIONS",
    "OPTIMIZERS",
    "POOL_KINDS",
    "ConvBlock",
    "DenseBlock",
    "FeatureBlock",
    "Genome",
    "InputSpec",
    "InvalidGenome",
    "PoolBlock",
    "SearchSpace",
    "TrainParams",
    "add_block",
    "alter_block",
    "alter_training",
    "check",
    "count_flops",
    "count_params",
    "crossover",
    "is_valid",
    "layer_shapes",
    "mutate",
    "random_genome",
    "remove_block",
    "repair",
    "round_sig",
]
