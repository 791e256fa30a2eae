"""Multi-fidelity rungs on the master: the ladder, ASHA's promotion rule over several objectives, restore,
and whole searches on the real master loop (simulated workers) that keep the rung invariants."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import refused, run_menndl

from menndl.fidelity import budget_epochs, ladder
from menndl.genome import InputSpec, SearchSpace, random_genome
from menndl.library import Library
from menndl.master.candidate import Candidate
from menndl.master.rungs import Rungs

pytestmark = pytest.mark.timeout(120)

SPEC = InputSpec(shape=(1, 8, 8), num_classes=10)
GENOME = random_genome(random.Random(0), SearchSpace(max_features=2), SPEC)


@pytest.mark.parametrize(
    "full, rungs, factor, expected",
    [(10, 3, 3, (1, 3, 10)), (30, 3, 3, (3, 10, 30)), (2, 3, 3, (1, 2)), (1, 3, 3, (1,)), (5, 3, 2, (1, 3, 5)),
     (81, 5, 3, (1, 3, 9, 27, 81)), (10, 1, 3, (10,))],
)  # fmt: skip
def test_ladder(full: int, rungs: int, factor: int, expected: tuple[int, ...]) -> None:
    assert ladder(full, rungs, factor) == expected


def test_ladder_is_increasing_and_ends_at_the_budget() -> None:
    for full in range(1, 200):
        for rungs in range(1, 6):
            for factor in (2, 3, 4):
                steps = ladder(full, rungs, factor)
                assert steps[-1] == full and len(steps) <= rungs
                assert all(a < b for a, b in zip(steps, steps[1:])) and steps[0] >= 1
    assert budget_epochs(0.5, 9) == 5 and budget_epochs(0.01, 9) == 1


def candidate(i: int, rung: int = 0) -> Candidate:
    return Candidate(i, GENOME, (), "random", i, rung)


def drain(rungs: Rungs) -> list[int]:
    out = []
    while (promoted := rungs.promotion()) is not None:
        out.append(promoted.id)
    return out


def test_one_objective_is_asha_the_top_third_in_order() -> None:
    rungs = Rungs(["accuracy"], 3, 3)
    scores = random.Random(1).sample(range(1000), 30)
    for i, score in enumerate(scores):
        rungs.add(candidate(i), {"accuracy": score / 1000}, last=False)
    best = sorted(range(30), key=lambda i: -scores[i])[:10]
    assert drain(rungs) == best  # floor(30 / 3), best first
    assert drain(rungs) == []  # never twice


def test_promotion_waits_for_the_rung_to_hold_a_factor_more() -> None:
    rungs = Rungs(["accuracy"], 3, 3)
    rungs.add(candidate(0), {"accuracy": 0.9}, last=False)
    rungs.add(candidate(1), {"accuracy": 0.5}, last=False)
    assert rungs.promotion() is None  # 2 // 3 = 0 promotable
    rungs.add(candidate(2), {"accuracy": 0.1}, last=False)
    assert drain(rungs) == [0]


def test_several_objectives_promote_the_front_a_small_model_beside_an_accurate_one() -> None:
    rungs = Rungs(["accuracy", "params"], 3, 3)
    rows = [(0.95, 90_000), (0.60, 300), (0.70, 50_000), (0.65, 60_000), (0.50, 80_000), (0.55, 70_000)]
    for i, (accuracy, params) in enumerate(rows):
        rungs.add(candidate(i), {"accuracy": accuracy, "params": params}, last=False)
    assert sorted(drain(rungs)) == [0, 1]  # the non-dominated pair; 6 // 3 = 2


def test_highest_rung_first_and_top_of_ladder_never_promoted() -> None:
    rungs = Rungs(["accuracy"], 3, 3)
    for i in range(3):
        rungs.add(candidate(i), {"accuracy": 0.1 * i}, last=False)
    for i in range(3, 6):
        rungs.add(candidate(i, rung=1), {"accuracy": 0.1 * i}, last=False)
    for i in range(6, 9):  # the top rung: nothing above it
        rungs.add(candidate(i, rung=2), {"accuracy": 0.1 * i}, last=True)
    assert drain(rungs) == [5, 2]
    rungs = Rungs(["accuracy"], 3, 3)
    for i in range(6):  # a small budget's ladder ends at rung 0: ranked there, never promoted
        rungs.add(candidate(i), {"accuracy": 0.1 * i}, last=i == 5)
    assert drain(rungs) == [4]


def test_ranked_out_candidates_are_dropped_once_and_never_promoted() -> None:
    rungs = Rungs(["accuracy"], 2, 3, keep_min=4)
    for i in range(30):
        rungs.add(candidate(i), {"accuracy": i / 100}, last=False)
    dropped = rungs.dropped()
    assert dropped and rungs.dropped() == []
    assert set(dropped) <= set(range(10))  # the worst: ranked below the top 2/3
    for i in range(30, 60):  # later, better arrivals never revive them
        rungs.add(candidate(i), {"accuracy": 0.2 + i / 1000}, last=False)
    promoted = drain(rungs)
    assert not set(promoted) & set(dropped) and not any(rungs.promotable(i) for i in dropped)
    assert len(promoted) == 20


def test_missing_objective_values_rank_last() -> None:
    rungs = Rungs(["accuracy"], 3, 3)
    rungs.add(candidate(0), {"accuracy": float("nan")}, last=False)
    rungs.add(candidate(1), {"accuracy": 0.2}, last=False)
    rungs.add(candidate(2), {"accuracy": 0.1}, last=False)
    assert drain(rungs) == [1]


def test_restore_continues_as_the_live_rungs_would() -> None:
    rng = random.Random(3)
    rows = [(candidate(i, rung=int(rng.random() < 0.3)), {"accuracy": rng.random(), "params": rng.randrange(10**5)})
            for i in range(80)]  # fmt: skip
    live = Rungs(["accuracy", "params"], 3, 3)
    promoted_live = []
    for c, metrics in rows:
        live.add(c, metrics, last=False)
        if c.id % 7 == 0:
            promoted_live += [p.id for p in [live.promotion()] if p is not None]
    restored = Rungs(["accuracy", "params"], 3, 3)
    restored.restore([(c, m, False) for c, m in rows], promoted_live)
    assert sorted(drain(live)) == sorted(drain(restored))


def write_job(path: Path, body: str) -> Path:
    path.write_text('name = "rungs"\n[data]\nsource = "digits"\n' + body)
    return path


def test_a_simulated_search_with_rungs_keeps_every_invariant(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.toml", "[search]\npopulation = 20\nepoch_budget = 2000\n"
                    'objectives = ["accuracy", "params"]\nrungs = 3\nreduction_factor = 3\n'
                    "[training]\nepochs = 9\nmax_seconds = 60\n")  # fmt: skip
    out = run_menndl(["simulate", str(job), "--workers", "40", "--eval-time", "lognormal:60", "--json",
                      "--library", str(tmp_path / "sim.h5")], timeout=100)  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["utilization"] > 0.9
    with Library.open(tmp_path / "sim.h5") as lib:
        rows = lib.records()
    by_id = {int(r["id"]): r for r in rows}
    pairs = [(r["hash"], int(r["rung"])) for r in rows]
    assert len(pairs) == len(set(pairs))  # no network trained twice to the same rung
    counts = [sum(1 for r in rows if r["rung"] == k) for k in range(3)]
    # ASHA promotes the top third of a rung as it stands when a worker frees up: as the ranking changes, a
    # few more than a third in all (here 0.38 of rung 0 reached rung 1)
    assert counts[0] > counts[1] > counts[2] > 0 and counts[1] <= counts[0] / 2 and counts[2] <= counts[1] / 2
    for row in rows:
        if row["operator"] == "promote":
            source = by_id[int(row["inherited_from"])]
            assert source["hash"] == row["hash"] and source["rung"] == row["rung"] - 1 and source["status"] == "ok"
            assert row["epochs"] == (3, 9)[row["rung"] - 1] and row["spent_epochs"] == row["epochs"] - source["epochs"]
        else:
            assert row["rung"] == 0 and row["epochs"] == row["spent_epochs"] == 1
    spent = sum(int(r["spent_epochs"]) for r in rows)
    assert 2000 <= spent <= 2000 + 40 * 6  # stops handing out work at the budget; what ran finishes
    out = run_menndl(["library", str(tmp_path / "sim.h5"), "stats", "--json"], timeout=60)
    stats = json.loads(out.stdout)
    assert stats["train_epochs_total"] == spent and stats["rungs"] == {str(k): n for k, n in enumerate(counts)}
    assert "epoch budget reached" in run_menndl(["library", str(tmp_path / "sim.h5"), "status"], timeout=60).stdout


def test_rung_settings_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "rungs = 0": "search.rungs: expected an integer in [1, 8], got 0",
        "rungs = 3\nreduction_factor = 1": "search.reduction_factor: expected an integer >= 2, got 1",
        'rungs = 3\nstrategy = "optuna"': "search.rungs: applies to strategies",
        "epoch_budget = 0": "search.epoch_budget: expected an integer >= 1, got 0",
        "rungs = 2\n[training]\nearly_stopping = true": "search.rungs = 2 already stops the weaker candidates",
    }
    for i, (body, message) in enumerate(cases.items()):
        job = write_job(tmp_path / f"bad{i}.toml", f"[search]\nevaluations = 10\n{body}\n")
        assert message in refused(capsys, job)


def test_restore_rules_out_the_same_candidates_as_the_live_search() -> None:
    """A re-ranking's verdict is final, so a resume must re-rank at the live search's moments, not once more."""
    rng = random.Random(5)
    rows = [(candidate(i), {"accuracy": rng.random(), "params": rng.randrange(10**5)}) for i in range(300)]
    for cut in (40, 97, 211, 300):
        live = Rungs(["accuracy", "params"], 3, 3)
        for c, metrics in rows[:cut]:
            live.add(c, metrics, last=False)
        restored = Rungs(["accuracy", "params"], 3, 3)
        restored.restore([(c, m, False) for c, m in rows[:cut]], [])
        for c, metrics in rows[cut:]:  # and on from there alike
            live.add(c, metrics, last=False)
            restored.add(c, metrics, last=False)
        assert [live.promotable(i) for i in range(300)] == [restored.promotable(i) for i in range(300)]


def test_a_promotion_that_trained_from_scratch_is_not_handed_out_again(tmp_path: Path) -> None:
    """Its row says inherited_from -1 (the checkpoint was gone); its one parent is still the row it continued."""
    from menndl.job import parse_job
    from menndl.master.search import resumed_candidates
    from menndl.master.training_plan import TrainingPlan

    job = parse_job('[search]\nevaluations = 10\nrungs = 3\nobjectives = ["accuracy"]\n[training]\nepochs = 9\n')
    made: list[Candidate] = []
    plan = TrainingPlan(job, tmp_path / "lib.h5", lambda: [], lambda c: made.append(c) or c)
    text = GENOME.to_json()
    rows = [{"id": i, "genome": text, "hash": GENOME.hash, "parents": "[]", "operator": "random", "seed": i,
             "status": "ok", "accuracy": a, "rung": 0, "finished_at": float(i), "inherited_from": -1}
            for i, a in enumerate([0.9, 0.5, 0.1])]  # fmt: skip
    rows.append({**rows[0], "id": 3, "parents": "[0]", "operator": "promote", "rung": 1, "finished_at": 3.0})
    plan.restore(rows, resumed_candidates(rows), [])
    assert plan.promotion() is None and made == []
