"""Golden digests: the same seeds propose the same genomes, byte for byte, across refactorings.

Each digest hashes a long deterministic run (every proposal's id, genome JSON,
parents, operator and seed; the final population's ranks and crowding; the
Pareto front) on a fixed feed of results that depends only on the genome.
A change to the sampler, the operators, repair, the encoding or selection that
alters what a search proposes changes a digest: that is a change of behaviour
and must be deliberate (and the digest updated in the same commit, saying why).
The digests were taken on release 99bac8a, before the master, library and
genome modules were split (issue "One concept per module").
"""

from __future__ import annotations

import hashlib
import random

import pytest

from menndl.genome import InputSpec, SearchSpace, count_params, crossover, mutate, random_genome
from menndl.genome.encoding import genome_from_parameters, genome_parameters, parameters_of_genome
from menndl.master.evolution import Evolution

SPEC_2D = InputSpec(shape=(1, 8, 8), num_classes=10)
SPEC_1D = InputSpec(shape=(1, 40), num_classes=10)
SPEC_3D = InputSpec(shape=(1, 6, 6, 6), num_classes=3)


def _fixed_feed(genome_hash: str) -> float:
    """A pseudo-accuracy from the genome's hash alone (no training)."""
    return int(hashlib.sha256(genome_hash.encode()).hexdigest()[:8], 16) / 2**32


def _evolution_digest(strategy: str, aging: bool, steps: int, population: int) -> str:
    evolution = Evolution(
        space=SearchSpace(),
        spec=SPEC_2D,
        objectives=("accuracy", "params", "flops"),
        population_size=population,
        crossover_probability=0.3,
        seed=7,
        aging=aging,
        strategy=strategy,
        spread_start=True,
    )
    digest = hashlib.sha256()
    for step in range(steps):
        candidate = evolution.ask()
        genome = candidate.genome
        digest.update(f"{candidate.id}|{genome.to_json()}|{candidate.parents}|{candidate.operator}|{candidate.seed}\n"
                      .encode())  # fmt: skip
        status = "failed" if step % 17 == 5 else "ok"
        params = count_params(genome, SPEC_2D)
        metrics = {"status": status, "accuracy": _fixed_feed(genome.hash), "params": params, "flops": 3 * params}
        evolution.tell(candidate, metrics)
    for member in evolution.population:
        digest.update(f"{member.candidate.id}:{member.rank}:{member.crowding:.12g}\n".encode())
    digest.update(repr(sorted(member.candidate.id for member in evolution.front)).encode())
    digest.update(evolution.rng_state().encode())
    return digest.hexdigest()


EVOLUTION_DIGESTS = {
    ("nsga2", False): "6e6ec8f7745b12417df3b36c42d32ddff135952dae1c25cb1fb1ba58f610eac3",
    ("nsga2", True): "cd1ad45d91d30ce38e9612e24ce992be2c96906da61bdaaf87735136b35ed478",
    ("random", False): "3e1a9d324058ca3d3922e3cb19b56f98ccad2b3e126e8dde161b05b528cfd720",
}


@pytest.mark.parametrize(("strategy", "aging"), sorted(EVOLUTION_DIGESTS))
def test_evolution_proposes_the_same_genomes_on_a_fixed_feed(strategy: str, aging: bool) -> None:
    assert _evolution_digest(strategy, aging, steps=1500, population=40) == EVOLUTION_DIGESTS[(strategy, aging)]


def test_optuna_strategy_proposes_the_same_genomes_on_a_fixed_feed() -> None:
    pytest.importorskip("optuna")
    digest = _evolution_digest("optuna", False, steps=300, population=20)
    assert digest == "3a5263bbee1588163f22ea2be0dc59d31dac2888c9dda69767bde1e835218837"


def _operators_digest(spec: InputSpec, seed: int) -> str:
    """Random genomes, mutations, crossovers and the fixed-length encoding on one random stream."""
    space = SearchSpace()
    rng = random.Random(seed)
    digest = hashlib.sha256()
    pool = [random_genome(rng, space, spec) for _ in range(30)]
    for genome in pool:
        digest.update(genome.to_json().encode())
    for _ in range(400):
        if rng.random() < 0.3:
            child = crossover(rng.choice(pool), rng.choice(pool), rng, space, spec)
        else:
            child, operator = mutate(rng.choice(pool), rng, space, spec)
            digest.update(operator.encode())
        digest.update(child.to_json().encode())
        pool[rng.randrange(len(pool))] = child
    table = genome_parameters(space, spec)
    for genome in pool:
        values = parameters_of_genome(genome, space, spec)
        digest.update(repr(sorted(values.items())).encode())
        digest.update(genome_from_parameters(values, space, spec).to_json().encode())
    digest.update(repr([(p.name, p.kind, p.low, p.high, p.log, p.choices) for p in table]).encode())
    return digest.hexdigest()


OPERATOR_DIGESTS = {
    "1d": "832941f5f1662bf172258b9961f213148a617784809b47e0733f3dc65f96cb56",
    "2d": "824b596ed3b53563eb82028dfe282b7349f003f68682b506a66f772b36ea547a",
    "3d": "68cb84def6d742be6ec4f13532ea38fc8d8c29046fa818cf8812fba28358bd0e",
}


@pytest.mark.parametrize("rank", sorted(OPERATOR_DIGESTS))
def test_genome_operators_give_the_same_genomes_on_one_random_stream(rank: str) -> None:
    spec = {"1d": SPEC_1D, "2d": SPEC_2D, "3d": SPEC_3D}[rank]
    assert _operators_digest(spec, seed=11) == OPERATOR_DIGESTS[rank]
