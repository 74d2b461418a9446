"""Count budgets make outcomes independent of machine load: the same collection, once with a core kept
busy, gives the same patches and verdicts; the wall-clock limit is only a safety net."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hrm_spawn.envs.agents.repair import RepairAgent, SafetyLimitError
from hrm_spawn.envs.collect import BudgetOverrides, collect
from hrm_spawn.envs.failures import is_infrastructure_failure
from hrm_spawn.envs.results import Budget
from hrm_spawn.envs.store import OutcomeStore

BURN = "import time\nend = time.time() + 600\nwhile time.time() < end:\n    pass\n"


def _verdicts(path) -> dict:
    """(task, agent, seed, start) -> (patch, status, validations, F2P, P2P): everything but timings."""
    out = {}
    with OutcomeStore(path) as store:
        for task in store.tasks():
            for key, outcome in store.iter_task(task):
                ev, res = outcome.evaluation, outcome.result
                out[(key.instance_id, key.agent, key.seed, key.start_patch_sha)] = (
                    res.patch,
                    res.status,
                    res.cost.validations,
                    ev.f2p_passed,
                    ev.p2p_passed,
                )
    return out


@pytest.mark.slow
def test_the_same_collection_under_load_collects_the_same_outcomes(agent_home, bug_task, tmp_path):
    tasks = [bug_task("removal"), bug_task("removed_assign")]
    # op-flip has 3 candidates for the removal: a count of 2 cuts its search (surgery v3 tries fewer)
    agents = ["op-flip", "surgery"]
    count = 2
    budget = BudgetOverrides(max_validations=count, max_sandbox_s=600)

    def run(store):
        counts = collect(tasks, agents, store, workers=1, depth=0, budget=budget, progress=False)
        assert counts.errors == [] and counts.failed == 0, counts.errors

    run(tmp_path / "idle.sqlite")
    burner = subprocess.Popen([sys.executable, "-c", BURN])  # keeps a core busy for the second run
    try:
        run(tmp_path / "busy.sqlite")
    finally:
        burner.kill()
        burner.wait()
    idle, busy = _verdicts(tmp_path / "idle.sqlite"), _verdicts(tmp_path / "busy.sqlite")
    assert idle.keys() == busy.keys() and len(idle) >= len(tasks) * len(agents)
    assert idle == busy
    # and the search was cut by its count, not by the clock: some run used its whole count budget
    assert any(v[1] == "budget_exhausted" and v[2] == count for v in idle.values()), idle


@pytest.mark.slow
def test_passing_the_safety_limit_is_not_an_outcome(sandbox, bug_task):
    task = bug_task("removal")  # nothing in op-flip's families fixes it: it would validate until its count
    sandbox.prepare(task)
    families = ["operators", "operands", "constants", "control"]
    # no floor under the limit (by default it is at least 10 s per validation of the count budget)
    agent = RepairAgent(families=families, max_lines=30, batch_size=1, safety_s_per_validation=0.0)
    with pytest.raises(SafetyLimitError) as caught:
        agent.run(sandbox, task, "", Budget(max_validations=500, max_sandbox_s=0.5), 0)
    assert is_infrastructure_failure(caught.value) and "safety limit" in str(caught.value)
    assert sandbox.diff() == ""  # the sandbox was reset for the next job
