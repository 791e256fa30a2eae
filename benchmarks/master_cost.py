"""The master's cost per finished evaluation: by population size, against DEAP, by worker count, and the library.

1. Evolution (ask + tell, real genome operators) per result once the population
   is full, at each population size.
2. What the previous implementation paid per result for selection alone: DEAP's
   ``selNSGA2`` + ``sortNondominated`` over population + 1 (one call each,
   measured where it takes under ``--deap-cap`` seconds, else marked skipped).
3. The library writer per record, flushing every record and every 64.
4. The whole master (Search loop + Evolution, no library) per result against
   simulated workers, at each worker count (`SimulatedTransport`).

All in one run, side by side; absolute times on a shared machine are noisy,
so compare within a run.

    python benchmarks/master_cost.py [--populations 16 256 1000 10000] [--workers 100 1000 10000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from deap import base, tools

from menndl.genome import InputSpec, SearchSpace, count_params
from menndl.job import parse_job
from menndl.library import LibraryWriter
from menndl.library.null_writer import NullWriter
from menndl.master import Progress, Search
from menndl.master.evolution import Evolution
from menndl.transport.simulated import SimulatedTransport
from menndl.worker.simulated import SimulatedEvaluator, parse_eval_time, synthetic_accuracy

SPEC = InputSpec(shape=(1, 28, 28), num_classes=10)
OBJECTIVES = ("accuracy", "params", "train_seconds")


def evolution_seconds_per_result(population: int, results: int, seed: int = 0) -> float:
    """Mean CPU seconds of one ask + one tell once the population is full."""
    evolution = Evolution(space=SearchSpace(), spec=SPEC, objectives=OBJECTIVES, population_size=population,
                          crossover_probability=0.3, seed=seed)  # fmt: skip
    rng = random.Random(seed)

    def step() -> None:
        candidate = evolution.ask()
        params = count_params(candidate.genome, SPEC)
        metrics = {"status": "ok", "accuracy": synthetic_accuracy(candidate.genome.hash, params), "params": params,
                   "train_seconds": rng.uniform(1, 100)}  # fmt: skip
        evolution.tell(candidate, metrics)

    for _ in range(population):
        step()
    start = time.process_time()
    for _ in range(results):
        step()
    return (time.process_time() - start) / results


class _Individual:
    fitness: base.Fitness


def deap_seconds_per_result(population: int) -> float:
    """CPU seconds of the previous per-result selection: selNSGA2 and sortNondominated over population + 1."""
    fitness_class = type("F", (base.Fitness,), {"weights": (1.0, -1.0, -1.0)})
    rng = random.Random(0)
    individuals = []
    for _ in range(population + 1):
        individual = _Individual()
        individual.fitness = fitness_class((rng.random(), rng.lognormvariate(10, 1), rng.lognormvariate(3, 1)))
        individuals.append(individual)
    start = time.process_time()
    survivors = tools.selNSGA2(individuals, population)
    tools.sortNondominated(survivors, len(survivors))
    return time.process_time() - start


def library_seconds_per_record(records: int, folder: Path, flush_every: int) -> float:
    """Mean CPU seconds to append one evaluation record to a real HDF5 library."""
    record = {
        "id": 0, "genome": '{"features":[]}' * 20, "hash": "0" * 16, "parents": "[1, 2]", "operator": "crossover",
        "status": "ok", "accuracy": 0.9, "params": 1000, "flops": 10000, "train_seconds": 1.0,
        "worker_rank": 1, "host": "node001", "device": "cuda:0", "seed": 1, "submitted_at": 0.0, "finished_at": 1.0,
    }  # fmt: skip
    with LibraryWriter(folder / f"bench{flush_every}.h5", job_text="", flush_every=flush_every) as writer:
        start = time.process_time()
        for i in range(records):
            writer.append({**record, "id": i})
        return (time.process_time() - start) / records


def search_seconds_per_result(workers: int, evaluations: int, population: int) -> dict[str, float]:
    """The whole master loop against simulated workers (60 s lognormal evaluations), no library."""
    text = f"[search]\npopulation = {population}\nevaluations = {evaluations}\n[training]\nmax_seconds = 600\n"
    job = parse_job(text)
    transport = SimulatedTransport(workers, SimulatedEvaluator(parse_eval_time("lognormal:60"), SPEC, max_seconds=600))
    progress = Progress(open(os.devnull, "w"), tty=False)
    search = Search(job, SPEC, "bench", transport, NullWriter(), progress, clock=transport.clock)  # type: ignore[arg-type]
    result = search.run()
    return {"master_ms_per_result": 1e3 * result.master_seconds / result.evaluations,
            "utilization": result.utilization}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--results", type=int, default=2000, help="results measured per population size")
    parser.add_argument("--populations", type=int, nargs="+", default=[16, 256, 1000, 10000])
    parser.add_argument("--deap-populations", type=int, nargs="+", default=[16, 64, 256, 1000, 2000])
    parser.add_argument("--deap-cap", type=float, default=20.0, help="skip larger DEAP sizes after a call this long")
    parser.add_argument("--workers", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--evaluations-per-worker", type=int, default=5, help="(at least 10,000 in all)")
    parser.add_argument("--worker-population", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    evolution = {p: 1e3 * evolution_seconds_per_result(p, args.results) for p in args.populations}
    deap: dict[int, Any] = {}
    for population in args.deap_populations:
        if deap and max(v for v in deap.values() if isinstance(v, float)) / 1e3 > args.deap_cap:
            deap[population] = "skipped"
            continue
        deap[population] = 1e3 * deap_seconds_per_result(population)
    with tempfile.TemporaryDirectory() as folder:
        library = {n: 1e3 * library_seconds_per_record(args.results, Path(folder), n) for n in (1, 64)}
    by_workers = {
        workers: search_seconds_per_result(workers, max(10000, args.evaluations_per_worker * workers),
                                           args.worker_population)  # fmt: skip
        for workers in args.workers
    }
    figures = {"evolution_ms_per_result": evolution, "deap_selection_ms_per_result": deap,
               "library_ms_per_record": {f"flush_every_{n}": v for n, v in library.items()},
               "search_by_workers": by_workers}  # fmt: skip
    if args.json:
        print(json.dumps(figures))
        return
    print("Evolution ask + tell (ms/result) by population, and DEAP's selNSGA2 + sortNondominated per result:")
    for population in sorted(set(evolution) | set(deap)):
        ours = evolution.get(population)
        theirs = deap.get(population)
        print(f"  {population:>6}  menndl {ours if ours is None else f'{ours:8.3f}'}   "
              f"DEAP {theirs if not isinstance(theirs, float) else f'{theirs:10.3f}'}")  # fmt: skip
    for name, value in figures["library_ms_per_record"].items():
        print(f"library append, {name}: {value:.3f} ms/record")
    print(f"whole master vs simulated workers (population {args.worker_population}, no library):")
    for workers, row in by_workers.items():
        cost, utilization = row["master_ms_per_result"], row["utilization"]
        print(f"  {workers:>6} workers  {cost:.3f} ms/result  utilization {utilization:.4f}")


if __name__ == "__main__":
    main()
