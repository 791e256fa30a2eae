"""Baseline for multi-fidelity search: Optuna's TPE with its HyperbandPruner, at a budget of training epochs.

One Optuna study (``TPESampler(seed=S)``, ``HyperbandPruner(min_resource=1, max_resource=training.epochs,
reduction_factor=3)``) maximises the validation accuracy alone (Optuna's pruners do not support several
objectives) over the same genome space, data and training as a menndl search of the job:

* the genome of a trial is decoded from the fixed-length encoding (`menndl.genome.encoding`) exactly as
  ``search.strategy = "optuna"`` does (`menndl.master.optuna_proposer`: ``study.ask`` with one
  distribution per parameter, then `genome_from_parameters`); genomes over ``search.max_params`` or
  ``search.max_flops`` are told as failed without training, as menndl never trains them;
* the data is opened from the job's ``[data]`` table (`open_configured`), so the training and validation
  splits are the search's (same ``validation_fraction`` and ``split_seed``); the test split is never read;
* each trial trains with menndl's own `Trainer.fit`, one epoch at a time (a continued fit: the
  learning-rate schedule spans the genome's whole budget ``budget_epochs(train.budget, training.epochs)``,
  the optimizer state carries over), is validated after every epoch, ``trial.report``-s that accuracy and
  stops when ``trial.should_prune()``.  The job's ``training.max_seconds`` is not applied: compute is
  counted in epochs.

The parent process asks and tells (one sampler, one in-memory study); ``--workers`` spawned processes train
(``torch.set_num_threads(--threads)`` each), so that many trials train at once.  An epoch starts only while the
epochs trained plus those in progress are below ``--epoch-budget``, so the study stops at exactly that many
epochs; a trial cut short by the budget is told as pruned and marked ``"stopped": true``.

    python benchmarks/optuna_hyperband.py --job jobs/mnist1d.toml --seed 0 --epoch-budget 1000 --out results/hb
    python benchmarks/optuna_hyperband.py --job jobs/digits.toml --seed 1 --epoch-budget 30 --epochs 5 --workers 1

Writes ``OUT/optuna-hyperband-s{S}.json``::

    {"seed", "epoch_budget", "job", "epochs", "workers", "metric",
     "trials": [{"number", "epochs", "accuracy", "params", "state", "finished_order", "cumulative_epochs",
                 "full_epochs", "stopped", "hash", "seed", "seconds", "error"?}, ...],   # in finishing order
     "best_accuracy", "best_complete_accuracy", "total_epochs", "seconds"}

``accuracy`` is the trial's last reported validation accuracy (None when it reported none); ``state`` is
``complete``, ``pruned`` or ``failed``; ``cumulative_epochs`` sums the epochs of every trial finished up to and
including this one; ``best_accuracy`` is the best over complete and pruned trials.  For a job of another task
the task's score (``r2``, ``miou``; ``metric``) stands in for the accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import multiprocessing
import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from menndl.data import open_configured
from menndl.fidelity import budget_epochs
from menndl.genome import Genome, InputSpec, count_flops, count_params
from menndl.genome.encoding import genome_from_parameters, genome_parameters
from menndl.job import Job, load_job
from menndl.master.optuna_proposer import _distribution  # the distributions search.strategy = "optuna" asks with
from menndl.tasks import task_score

REDUCTION_FACTOR = 3
MAX_REJECTED = 1000  # consecutive genomes over the job's limits before the study gives up


def load(job_path: str, epochs: int | None) -> Job:
    """The job, with ``training.epochs`` replaced by ``epochs`` when given."""
    job = load_job(job_path)
    if epochs is not None:
        job = dataclasses.replace(job, training=dataclasses.replace(job.training, epochs=epochs))
    return job


def input_spec(job: Job) -> tuple[InputSpec, str]:
    """The input of the job's data (what genomes are decoded for) and the name of its validation score."""
    data = open_configured(dataclasses.asdict(job.data), job.base_dir)
    try:
        spec = InputSpec(shape=tuple(data.input_shape), num_classes=data.outputs, task=data.task)
    finally:
        data.close()
    return spec, task_score(spec.task)


def train_worker(job_path: str, epochs: int | None, device: str, threads: int, conn: Connection) -> None:
    """A training process: trains the trials it is sent, one epoch at a time, reporting each epoch's score.

    Protocol (over ``conn``): it sends ``("ready",)`` once, then receives ``(number, genome_json, seed)`` or
    ``None`` (quit).  After every epoch ``e`` of a trial it sends ``("epoch", number, e, score, seconds)``;
    below the trial's full budget it then waits for ``"go"`` (train the next epoch) or ``"halt"``.  A trial
    that raises sends ``("failed", number, epochs_done, error)``.
    """
    import torch

    from menndl.worker.measure import release_memory
    from menndl.worker.trainer import FitProgress, Trainer

    torch.set_num_threads(threads)
    job = load(job_path, epochs)
    data = open_configured(dataclasses.asdict(job.data), job.base_dir)
    trainer = Trainer(data, job.training, torch.device(device), augment=job.augment)
    score = trainer.targets.score
    conn.send(("ready",))
    while True:
        task = conn.recv()
        if task is None:
            break
        number, genome_json, seed = task
        progress = FitProgress()
        model: Any = None
        try:
            genome = Genome.from_json(genome_json)
            full = budget_epochs(genome.train.budget, job.training.epochs)
            torch.manual_seed(seed)
            model = trainer.new_model(genome)
            state: dict[str, Any] | None = None
            started = time.perf_counter()
            for epoch in range(1, full + 1):
                progress.first_epoch = epoch - 1  # continue the fit: the schedule spans all `full` epochs
                trainer.fit(model, genome.train, epochs=epoch, max_seconds=math.inf, progress=progress,
                            schedule_epochs=full, schedule_seconds=math.inf, optimizer_state=state)  # fmt: skip
                if progress.epochs != epoch:
                    raise RuntimeError(f"the fit stopped after {progress.epochs} epochs, expected {epoch}")
                assert progress.optimizer is not None
                state = progress.optimizer.state_dict()
                metrics, _, _ = trainer.validate(model)
                value = float(metrics[score])
                if not math.isfinite(value):
                    raise RuntimeError(f"validation {score} is {value}")
                conn.send(("epoch", number, epoch, value, time.perf_counter() - started))
                if epoch < full and conn.recv() != "go":
                    break
        except Exception as exc:  # the candidate's fault (NaN loss, out of memory, ...): a failed trial
            conn.send(("failed", number, progress.epochs, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        model = None
        release_memory(trainer.device)
    trainer.close()


@dataclass
class Running:
    """A trial being trained by a worker."""

    trial: Any  # optuna.trial.Trial
    genome: Genome
    seed: int
    full: int
    params: int
    epochs: int = 0
    accuracy: float | None = None
    seconds: float = 0.0


@dataclass
class Worker:
    """A training process and the parent's end of its pipe."""

    process: BaseProcess
    conn: Connection
    running: Running | None = None
    ready: bool = False


@dataclass
class Study:
    """The parent's side: the Optuna study, the epoch budget and the record of finished trials."""

    job: Job
    spec: InputSpec
    seed: int
    budget: int
    study: Any  # optuna.Study
    distributions: dict[str, Any]
    rng: random.Random
    spent: int = 0  # epochs trained, all trials
    in_flight: int = 0  # epochs being trained now
    records: list[dict[str, Any]] = field(default_factory=list)
    gave_up: bool = False

    def can_start_epoch(self) -> bool:
        """Whether one more epoch fits the budget (counting the epochs in progress)."""
        return self.spent + self.in_flight < self.budget

    def ask(self) -> Running | None:
        """A new trial with a genome within the job's limits (those over them are told failed), or None."""
        search = self.job.search
        for _ in range(MAX_REJECTED):
            trial = self.study.ask(self.distributions)
            genome = genome_from_parameters(trial.params, self.job.space, self.spec)
            params = count_params(genome, self.spec)
            over = ""
            if search.max_params is not None and params > search.max_params:
                over = f"{params} parameters over search.max_params = {search.max_params}"
            elif search.max_flops is not None and count_flops(genome, self.spec) > search.max_flops:
                over = f"FLOPs over search.max_flops = {search.max_flops}"
            full = budget_epochs(genome.train.budget, self.job.training.epochs)
            running = Running(trial, genome, self.rng.randrange(2**31), full, params)
            if not over:
                return running
            self.finish(running, "failed", error=over)
        self.gave_up = True
        return None

    def finish(self, running: Running, state: str, *, stopped: bool = False, error: str = "") -> None:
        """Tell the study how a trial ended and record it, in finishing order."""
        from optuna.trial import TrialState

        if state == "complete":
            self.study.tell(running.trial, running.accuracy)
        else:
            self.study.tell(running.trial, state=TrialState.PRUNED if state == "pruned" else TrialState.FAIL)
        total = (self.records[-1]["cumulative_epochs"] if self.records else 0) + running.epochs
        record: dict[str, Any] = {
            "number": running.trial.number,
            "epochs": running.epochs,
            "accuracy": running.accuracy,
            "params": running.params,
            "state": state,
            "finished_order": len(self.records),
            "cumulative_epochs": total,
            "full_epochs": running.full,
            "stopped": stopped,
            "hash": running.genome.hash,
            "seed": running.seed,
            "seconds": round(running.seconds, 3),
        }
        if error:
            record["error"] = error
        self.records.append(record)


def _start_worker(ctx: Any, args: argparse.Namespace) -> Worker:
    parent, child = ctx.Pipe()
    process = ctx.Process(target=train_worker, args=(args.job, args.epochs, args.device, args.threads, child),
                          daemon=True)  # fmt: skip
    process.start()
    child.close()  # the parent's copy: a dead worker then reads as EOF
    return Worker(process, parent)


def _handle(study: Study, worker: Worker, message: tuple[Any, ...]) -> None:
    """Act on one message of a worker: an epoch's score (report, prune, continue) or a failure."""
    running = worker.running
    if message[0] == "ready":
        worker.ready = True
        return
    assert running is not None and message[1] == running.trial.number, message
    study.in_flight -= 1
    if message[0] == "failed":
        running.epochs = int(message[2])  # its epochs were counted as they were reported
        worker.running = None
        study.finish(running, "failed", error=str(message[3]).strip().splitlines()[0])
        return
    _, _, epoch, value, seconds = message
    running.epochs, running.accuracy, running.seconds = int(epoch), float(value), float(seconds)
    study.spent += 1
    running.trial.report(running.accuracy, step=running.epochs)
    if running.epochs >= running.full:
        worker.running = None
        study.finish(running, "complete")
        return
    pruned = running.trial.should_prune()
    if pruned or not study.can_start_epoch():
        worker.conn.send("halt")
        worker.running = None
        study.finish(running, "pruned", stopped=not pruned)
        return
    study.in_flight += 1
    worker.conn.send("go")


def run_study(args: argparse.Namespace) -> dict[str, Any]:
    """Run the study to the epoch budget and return the report (what is written to the JSON file)."""
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    job = load(args.job, args.epochs)
    spec, metric = input_spec(job)
    distributions = {p.name: _distribution(p) for p in genome_parameters(job.space, spec)}
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=job.training.epochs,
                                            reduction_factor=REDUCTION_FACTOR)  # fmt: skip
    sampler = optuna.samplers.TPESampler(seed=args.seed)
    optuna_study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner,
                                       study_name=f"optuna-hyperband-s{args.seed}")  # fmt: skip
    study = Study(job, spec, args.seed, args.epoch_budget, optuna_study, distributions, random.Random(args.seed))
    started = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")  # torch in a forked child of a threaded parent can hang
    workers = [_start_worker(ctx, args) for _ in range(args.workers)]
    try:
        while True:
            for worker in workers:
                if worker.ready and worker.running is None and not study.gave_up and study.can_start_epoch():
                    running = study.ask()
                    if running is not None:
                        worker.running = running
                        study.in_flight += 1
                        worker.conn.send((running.trial.number, running.genome.to_json(), running.seed))
            busy = [w for w in workers if w.running is not None or not w.ready]
            if not busy or (all(w.running is None for w in workers) and not study.can_start_epoch()):
                break
            ready = wait([w.conn for w in busy])
            for worker in [w for w in busy if w.conn in ready]:
                try:
                    message: tuple[Any, ...] = worker.conn.recv()
                except EOFError:  # the process died (killed, out of memory): its trial failed, a new one starts
                    worker.process.join()
                    if not worker.ready:
                        raise RuntimeError(f"a worker process exited with {worker.process.exitcode} before it "
                                           "was ready (see its error above)") from None  # fmt: skip
                    running, code = worker.running, worker.process.exitcode
                    replacement = _start_worker(ctx, args)
                    worker.process, worker.conn, worker.ready = replacement.process, replacement.conn, False
                    if running is None:
                        continue
                    message = ("failed", running.trial.number, running.epochs, f"worker process exited with {code}")
                _handle(study, worker, message)
    finally:
        for worker in workers:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in workers:
            worker.process.join(timeout=30)
            if worker.process.is_alive():
                worker.process.terminate()
    finished = [r for r in study.records if r["state"] in ("complete", "pruned") and r["accuracy"] is not None]
    complete = [r for r in finished if r["state"] == "complete"]
    return {
        "seed": args.seed,
        "epoch_budget": args.epoch_budget,
        "job": str(args.job),
        "epochs": job.training.epochs,
        "workers": args.workers,
        "metric": metric,
        "sampler": f"TPESampler(seed={args.seed})",
        "pruner": f"HyperbandPruner(min_resource=1, max_resource={job.training.epochs}, "
        f"reduction_factor={REDUCTION_FACTOR})",
        "trials": study.records,
        "best_accuracy": max((r["accuracy"] for r in finished), default=None),
        "best_complete_accuracy": max((r["accuracy"] for r in complete), default=None),
        "total_epochs": sum(r["epochs"] for r in study.records),
        "seconds": round(time.perf_counter() - started, 3),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the study, write the JSON report and print one summary line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", required=True, help="menndl job file (its [data], [space], [training])")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed (and the trials' training seeds)")
    parser.add_argument("--epoch-budget", type=int, required=True, help="training epochs over all trials")
    parser.add_argument("--epochs", type=int, help="training.epochs, the full budget of a trial (default: the job's)")
    parser.add_argument("--workers", type=int, default=2, help="trials trained at once, one process each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker process")
    parser.add_argument("--device", default="cpu", help="torch device of the workers (default cpu)")
    parser.add_argument("--out", required=True, help="folder for optuna-hyperband-s{SEED}.json")
    args = parser.parse_args(argv)
    if args.epoch_budget < 1 or args.workers < 1 or args.threads < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--epoch-budget, --epochs, --workers and --threads: expected integers >= 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = run_study(args)
    path = out / f"optuna-hyperband-s{args.seed}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    states = [r["state"] for r in report["trials"]]
    best = report["best_accuracy"]
    print(f"optuna-hyperband seed {args.seed}: {len(states)} trials ({states.count('complete')} complete, "
          f"{states.count('pruned')} pruned, {states.count('failed')} failed), {report['total_epochs']} of "
          f"{args.epoch_budget} epochs, best {report['metric']} {'n/a' if best is None else f'{best:.4f}'}, "
          f"{report['seconds']:.1f} s -> {path}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
