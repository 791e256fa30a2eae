"""search.strategy: random search (selection off) and Optuna's NSGA-II behind the same Evolution ask/tell."""

from __future__ import annotations

import pytest

from menndl.errors import UserError
from menndl.genome import InputSpec, SearchSpace, check, count_params
from menndl.job import parse_job
from menndl.master.evolution import Evolution

SPEC = InputSpec(shape=(1, 40), num_classes=10)


def make(strategy: str, seed: int = 0, population: int = 4, **extra) -> Evolution:
    return Evolution(space=SearchSpace(), spec=SPEC, objectives=("accuracy", "params"), population_size=population,
                     crossover_probability=0.5, seed=seed, strategy=strategy, **extra)  # fmt: skip


def metrics(candidate, step: int) -> dict:
    if step % 7 == 3:
        return {"status": "failed"}
    return {"status": "ok", "accuracy": (step * 37 % 13) / 13, "params": count_params(candidate.genome, SPEC)}


def drive(evo: Evolution, steps: int, in_flight: int = 3) -> list:
    """Ask and tell like the master: a few candidates in flight, told in a shuffled order."""
    pending, told = [], []
    for step in range(steps):
        pending.append(evo.ask())
        if len(pending) > in_flight:
            candidate = pending.pop(step % len(pending))
            evo.tell(candidate, metrics(candidate, candidate.id))
            told.append(candidate)
    for candidate in pending:
        evo.tell(candidate, metrics(candidate, candidate.id))
        told.append(candidate)
    return told


def test_random_strategy_never_selects_but_keeps_population_and_front() -> None:
    evo = make("random")
    told = drive(evo, 40)
    assert {c.operator for c in told} == {"random"} and all(c.parents == () for c in told)
    assert len({c.genome.hash for c in told}) == 40
    assert 0 < len(evo.population) <= 4 + evo.rerank_interval and evo.front  # (cut back at each re-ranking)
    ok = [c for c in told if metrics(c, c.id)["status"] == "ok"]
    best = max(metrics(c, c.id)["accuracy"] for c in ok)
    assert max(m.metrics["accuracy"] for m in evo.front) == best


def test_nsga2_breeds_after_the_random_start_random_does_not() -> None:
    operators = {c.operator for c in drive(make("nsga2"), 30)}
    assert operators - {"random"}  # crossover and mutations
    with pytest.raises(ValueError, match="strategy"):
        make("grid")


def test_optuna_proposes_valid_new_genomes_and_learns_every_result() -> None:
    pytest.importorskip("optuna")
    from optuna.trial import TrialState

    evo = make("optuna", population=4)
    told = drive(evo, 30)
    assert {c.operator for c in told} == {"optuna"}
    assert len({c.genome.hash for c in told}) == 30  # never a genome twice
    for candidate in told:
        check(candidate.genome, SearchSpace(), SPEC)
    trials = evo.proposer.study.get_trials(deepcopy=False)  # type: ignore[attr-defined]
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states  # every asked trial was told: a result, or a rejection
    failed = sum(1 for c in told if metrics(c, c.id)["status"] != "ok")
    assert states.count(TrialState.COMPLETE) >= 30 - failed
    assert states.count(TrialState.FAIL) >= failed
    generations = {v for t in trials for k, v in t.system_attrs.items() if k.endswith(":generation")}
    assert len(generations) > 1  # the sampler bred past its first generation


def test_optuna_same_seed_same_proposals_and_restore_feeds_the_study() -> None:
    pytest.importorskip("optuna")
    first = [c.genome.hash for c in drive(make("optuna", seed=7), 12)]
    assert first == [c.genome.hash for c in drive(make("optuna", seed=7), 12)]
    assert first != [c.genome.hash for c in drive(make("optuna", seed=8), 12)]

    original = make("optuna", seed=7)
    told = drive(original, 12)
    rows = [{"id": c.id, "genome": c.genome.to_json(), "hash": c.genome.hash, "parents": [], "operator": c.operator,
             "seed": c.seed, **metrics(c, c.id)} for c in told]  # fmt: skip
    resumed = make("optuna", seed=7)
    resumed.restore(rows, next_id=12, rng_state=original.rng_state())
    study = resumed.proposer.study  # type: ignore[attr-defined]
    assert len(study.trials) == sum(1 for row in rows if row["status"] == "ok")
    seen = {row["hash"] for row in rows}
    for child in drive(resumed, 6):
        assert child.genome.hash not in seen and child.id >= 12


def test_job_strategy_key() -> None:
    text = open("jobs/digits.toml").read()
    assert parse_job(text, path="d.toml").search.strategy == "nsga2"
    random_job = parse_job(text.replace("[search]", '[search]\nstrategy = "random"'), path="d.toml")
    assert random_job.search.strategy == "random"
    with pytest.raises(UserError, match=r"d.toml: search.strategy: expected one of nsga2, random, optuna, got 'grid'"):
        parse_job(text.replace("[search]", '[search]\nstrategy = "grid"'), path="d.toml")


def test_spread_start_spans_more_model_sizes_than_the_sampler() -> None:
    import math

    def sizes(spread: bool, seed: int) -> list[float]:
        evo = make("nsga2", seed=seed, population=16, spread_start=spread)
        first = [evo.ask() for _ in range(16)]
        assert {c.operator for c in first} == {"random"}
        assert len({c.genome.hash for c in first}) == 16
        for candidate in first:
            check(candidate.genome, SearchSpace(), SPEC)
        return sorted(math.log10(count_params(c.genome, SPEC)) for c in first)

    wider = 0
    for seed in range(10):
        spread, plain = sizes(True, seed), sizes(False, seed)
        assert spread == sizes(True, seed)  # deterministic
        wider += (spread[-1] - spread[0]) > (plain[-1] - plain[0])
    assert wider >= 8  # the ends of the size range are reached far more often


def test_spread_start_job_key() -> None:
    text = open("jobs/digits.toml").read()
    assert parse_job(text, path="d.toml").search.spread_start is True  # the default
    job = parse_job(text.replace("[search]", "[search]\nspread_start = false"), path="d.toml")
    assert job.search.spread_start is False
    with pytest.raises(UserError, match="search.spread_start"):
        parse_job(text.replace("[search]", "[search]\nspread_start = 1"), path="d.toml")


def test_spread_start_is_limited_to_the_first_genomes_of_a_large_random_start() -> None:
    from menndl.master.evolution import SPREAD_LIMIT

    evo = make("nsga2", population=SPREAD_LIMIT + 40, spread_start=True)
    first = [evo.ask() for _ in range(SPREAD_LIMIT + 40)]
    assert {c.operator for c in first} == {"random"} and len({c.genome.hash for c in first}) == len(first)
    assert evo.proposer.spread_left == 0  # type: ignore[attr-defined]  # the last 40 came straight from the sampler: no 4x drawing at large populations
