"""Genomes: plain-data network descriptions, search space, operators.

Every genome field, the search-space key that bounds it and how is one row
of :data:`FIELDS` (:mod:`menndl.genome.fields`); validation, repair,
sampling, mutation and the fixed-length encoding read it.

Importing this package does not import torch; the decoder lives in
:mod:`menndl.genome.decode` and must be imported explicitly.
"""

from __future__ import annotations

from menndl.genome.fields import FIELDS, Field
from menndl.genome.genome import (
    ACTIVATIONS,
    FORMAT_VERSION,
    MAX_DROPOUT,
    OPTIMIZERS,
    POOL_KINDS,
    SCHEDULES,
    ConvBlock,
    DenseBlock,
    FeatureBlock,
    Genome,
    GlobalPoolBlock,
    PoolBlock,
    SkipBlock,
    TrainParams,
    UpBlock,
    round_sig,
)
from menndl.genome.operators import (
    MUTATIONS,
    add_block,
    add_skip,
    alter_block,
    alter_training,
    crossover,
    mutate,
    remove_block,
    remove_skip,
)
from menndl.genome.repair import insert_feature, remove_feature, repair
from menndl.genome.sampling import random_genome
from menndl.genome.schedules import learning_rate_factor
from menndl.genome.shapes import Layer, check, count_flops, count_params, is_valid, layer_shapes, walk
from menndl.genome.space import BLOCK_TYPES, InputSpec, InvalidGenome, SearchSpace, resolve_space

__all__ = [
    "ACTIVATIONS",
    "BLOCK_TYPES",
    "FIELDS",
    "FORMAT_VERSION",
    "MAX_DROPOUT",
    "MUTATIONS",
    "OPTIMIZERS",
    "POOL_KINDS",
    "SCHEDULES",
    "ConvBlock",
    "DenseBlock",
    "FeatureBlock",
    "Field",
    "Genome",
    "GlobalPoolBlock",
    "InputSpec",
    "InvalidGenome",
    "Layer",
    "PoolBlock",
    "SearchSpace",
    "SkipBlock",
    "TrainParams",
    "UpBlock",
    "add_block",
    "add_skip",
    "alter_block",
    "alter_training",
    "check",
    "count_flops",
    "count_params",
    "crossover",
    "insert_feature",
    "is_valid",
    "layer_shapes",
    "learning_rate_factor",
    "mutate",
    "random_genome",
    "remove_block",
    "remove_feature",
    "remove_skip",
    "repair",
    "resolve_space",
    "round_sig",
    "walk",
]
