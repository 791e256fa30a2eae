"""``search.strategy = "optuna"``: Optuna's NSGAIISampler proposes the genomes (a baseline to measure menndl against).

Optuna drives the fixed-length encoding of :mod:`menndl.genome.encoding` through its ask/tell
interface, so it runs on the same master loop, workers, library and budget as menndl's own
evolution; only who proposes the next genome differs.  Imported only when a job asks for it
(Optuna is an optional dependency: ``pip install optuna``).  No torch, no MPI.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from menndl.genome import Genome, InputSpec, SearchSpace, random_genome
from menndl.genome.encoding import Parameter, genome_from_parameters, genome_parameters, parameters_of_genome
from menndl.master.proposer import Proposal, Proposer
from menndl.objectives import study_direction


def optuna_available() -> bool:
    """Whether Optuna can be imported (checked before a search starts, so a job fails at once)."""
    import importlib.util

    return importlib.util.find_spec("optuna") is not None


def _distribution(parameter: Parameter) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if parameter.kind == "int":
        return IntDistribution(int(parameter.low), int(parameter.high), log=parameter.log)  # type: ignore[arg-type]
    if parameter.kind == "float":
        return FloatDistribution(float(parameter.low), float(parameter.high), log=parameter.log)  # type: ignore[arg-type]
    return CategoricalDistribution(parameter.choices)


class OptunaProposer(Proposer):
    """Asks Optuna for genomes and tells it their results, keyed by candidate id."""

    def __init__(
        self,
        *,
        space: SearchSpace,
        spec: InputSpec,
        objectives: Sequence[str],
        population_size: int,
        seed: int,
        rng: random.Random,
    ) -> None:
        """An in-memory study with one direction per objective and a seeded NSGAIISampler.

        Args:
            population_size: the sampler's generation size (the job's ``search.population``).
            seed: the sampler's seed.
            rng: the search's generator, for the random genomes of a forced `propose`.
        """
        import optuna

        optuna.logging.set_verbosity(logging.WARNING)
        self.space, self.spec, self.objectives = space, spec, tuple(objectives)
        self._rng = rng
        self._distributions = {p.name: _distribution(p) for p in genome_parameters(space, spec)}
        sampler = optuna.samplers.NSGAIISampler(population_size=max(2, population_size), seed=seed)
        directions = [study_direction(name) for name in self.objectives]
        self.study = optuna.create_study(directions=directions, sampler=sampler)  # type: ignore[arg-type]
        self._asked: Any = None  # the trial behind the genome `propose` returned last
        self._trials: dict[int, Any] = {}  # candidate id -> its trial, until told
        self._values: dict[str, list[float]] = {}  # genome hash -> objective values of its evaluation

    def propose(self, force_random: bool = False) -> Proposal:
        """The genome of a new trial (`accepted` or `rejected` before the next call), or a random one if forced."""
        if force_random:  # no trial behind it: the study learns of it when it is told
            return Proposal(random_genome(self._rng, self.space, self.spec), (), "random")
        self._asked = self.study.ask(self._distributions)
        return Proposal(genome_from_parameters(self._asked.params, self.space, self.spec), (), "optuna")

    def accepted(self, proposal: Proposal, candidate_id: int) -> None:
        """The trial of the genome last proposed waits for this candidate's result."""
        if proposal.operator == "optuna":
            self._trials[candidate_id] = self._asked
            self._asked = None

    def rejected(self, proposal: Proposal) -> None:
        """The genome last proposed will not be trained (already proposed, or over the hard limits).

        A genome evaluated before gets that evaluation's values, so the sampler learns from the
        repeat instead of asking again blindly; any other rejected trial is told as failed.
        """
        if proposal.operator != "optuna":
            return
        from optuna.trial import TrialState

        known = self._values.get(proposal.genome.hash)
        if known is not None:
            self.study.tell(self._asked, known)
        else:
            self.study.tell(self._asked, state=TrialState.FAIL)
        self._asked = None

    def tell(self, candidate_id: int, genome: Genome, metrics: Mapping[str, Any]) -> None:
        """The result of a candidate: its objective values when it trained (``ok``), else a failed trial."""
        from optuna.trial import TrialState

        trial = self._trials.pop(candidate_id, None)
        values = self._objective_values(metrics)
        if values is not None:
            self._values[genome.hash] = values
        if trial is None:  # a seed genome, or an evaluation of the library a search resumes from
            if values is not None:  # (the sampler counts these as an earlier generation)
                self._add_completed(genome, values)
            return
        if values is None:
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, values)

    def _add_completed(self, genome: Genome, values: list[float]) -> None:
        """Tell the study of an evaluation it did not propose, as a completed trial."""
        import optuna

        params = parameters_of_genome(genome, self.space, self.spec)
        self.study.add_trial(optuna.trial.create_trial(params=params, distributions=self._distributions, values=values))

    def _objective_values(self, metrics: Mapping[str, Any]) -> list[float] | None:
        if metrics.get("status") != "ok":
            return None
        values = [float(metrics[name]) for name in self.objectives]
        return values if all(math.isfinite(v) for v in values) else None
