"""The repair agents on real bugs in the fixture repository, run in a real local sandbox."""

from __future__ import annotations

import random

import pytest

from hrm_spawn.envs.agents.localize import Site
from hrm_spawn.envs.agents.registry import AGENT_SPECS, get_agent
from hrm_spawn.envs.agents.repair import RepairAgent
from hrm_spawn.envs.results import Budget

# bug name -> the built-in agent whose family inverts it
FAMILY_AGENT = {
    "operators": "op-flip",
    "operands": "swap",
    "constants": "const",
    "control": "cond",
    "statements": "swap",
}


def run_agent(sandbox, task, agent, start_patch="", budget=None, seed=0):
    sandbox.prepare(task)
    result = agent.run(
        sandbox, task, start_patch, budget or Budget(max_validations=80, max_sandbox_s=120), seed
    )
    evaluation = sandbox.evaluate(result.patch)
    return result, evaluation


@pytest.mark.parametrize(
    "bug", [b if b == "operators" else pytest.param(b, marks=pytest.mark.slow) for b in sorted(FAMILY_AGENT)]
)
def test_each_family_fixes_the_bug_kind_it_inverts(sandbox, bug_task, bug):
    task = bug_task(bug)
    result, evaluation = run_agent(sandbox, task, get_agent(FAMILY_AGENT[bug]))
    assert result.status == "ok", result.reason
    assert evaluation.resolved, (result.trajectory, result.patch)
    assert result.visible_pass_rate == 1.0
    assert result.cost.validations >= 1 and result.cost.test_runs >= 2 and result.cost.sandbox_s > 0
    assert result.agent == FAMILY_AGENT[bug] and result.version


@pytest.mark.slow
def test_an_agent_of_another_family_does_not_fix_it(sandbox, bug_task):
    result, evaluation = run_agent(sandbox, bug_task("constants"), get_agent("op-flip"))
    assert not evaluation.resolved
    assert result.visible_pass_rate < 1.0


@pytest.mark.slow
def test_removal_bug_fails_honestly_within_budget(sandbox, bug_task):
    budget = Budget(max_validations=30, max_sandbox_s=60)
    result, evaluation = run_agent(sandbox, bug_task("removal"), get_agent("broad"), budget=budget)
    assert not evaluation.resolved
    assert result.status in ("ok", "budget_exhausted")
    assert result.cost.validations <= 30
    assert result.visible_pass_rate < 1.0


@pytest.mark.slow
def test_partial_fix_is_kept_and_delegation_finishes_it(sandbox, bug_task):
    task = bug_task("combined")
    first, first_eval = run_agent(sandbox, task, get_agent("op-flip"))
    assert not first_eval.resolved
    assert 0 < first_eval.f2p_passed < first_eval.f2p_total, first.trajectory  # the clamp half is fixed
    assert first.patch and 0 < first.visible_pass_rate < 1
    alone, alone_eval = run_agent(sandbox, task, get_agent("swap"))
    assert not alone_eval.resolved
    second, second_eval = run_agent(sandbox, task, get_agent("swap"), start_patch=first.patch)
    assert second_eval.resolved, second.trajectory
    assert "applied start_patch" in second.trajectory[0]
    # the returned patch contains the start patch's change too
    assert "value > high" in second.patch and "return a - b" in second.patch


@pytest.mark.slow
def test_same_seed_same_result(sandbox, bug_task):
    task = bug_task("operands")
    agent = get_agent("broad")
    one, _ = run_agent(sandbox, task, agent, seed=3)
    two, _ = run_agent(sandbox, task, agent, seed=3)
    assert one.patch == two.patch
    assert one.cost.validations == two.cost.validations
    assert [line for line in one.trajectory if "validated" not in line] == [
        line for line in two.trajectory if "validated" not in line
    ]


def test_patch_that_does_not_apply_is_an_error_and_sandbox_stays_usable(sandbox, bug_task):
    task = bug_task("operators")
    bad = "--- a/calc/nowhere.py\n+++ b/calc/nowhere.py\n@@ -1,1 +1,1 @@\n-x = 1\n+x = 2\n"
    sandbox.prepare(task)
    result = get_agent("op-flip").run(sandbox, task, bad, Budget(max_validations=10), 0)
    assert result.status == "error" and "nowhere.py" in result.reason
    assert result.patch == ""
    again = get_agent("op-flip").run(sandbox, task, "", Budget(max_validations=40), 0)
    assert again.status == "ok" and sandbox.evaluate(again.patch).resolved


@pytest.mark.slow
def test_hanging_candidate_is_killed_and_hanging_tests_time_out(sandbox, bug_task):
    task = bug_task("hang")  # `result /= i`: flipping `i += 1` to `i -= 1` loops forever
    agent = RepairAgent(
        families=["operators"], max_lines=12, candidate_timeout_s=6.0
    )  # slack for a loaded CI box
    result, evaluation = run_agent(sandbox, task, agent)
    assert result.status == "ok" and evaluation.resolved, result.trajectory
    # a start patch whose tests never finish:
    spin = (
        "--- a/calc/compare.py\n+++ b/calc/compare.py\n@@ -4,2 +4,3 @@\n def clamp(value, low, high):\n"
        "+    while True: pass\n     if value < low:\n"
    )
    sandbox.prepare(bug_task("operators"))
    stuck = RepairAgent(families=["operators"], test_timeout_s=3.0).run(
        sandbox, sandbox.task, spin, Budget(max_sandbox_s=30), 0
    )
    assert stuck.status == "timeout", (stuck.status, stuck.reason)
    assert sandbox.diff() == "" and sandbox.run("echo ok").output.strip() == "ok"


@pytest.mark.slow
def test_budget_stops_the_search(sandbox, bug_task):
    # the removal bug leaves ~5 candidates at its top lines; a budget of 2 must stop the search first
    result, _ = run_agent(sandbox, bug_task("removal"), get_agent("broad"), budget=Budget(max_validations=2))
    assert result.status == "budget_exhausted" and result.cost.validations <= 2, result.trajectory


def test_builtin_specs_differ_in_families_and_budget():
    mutation = {n: s for n, s in AGENT_SPECS.items() if s.cls.endswith("repair:RepairAgent")}
    fams = {tuple(spec.kwargs["families"]) for spec in mutation.values()}
    budgets = {spec.budget.max_validations for spec in AGENT_SPECS.values()}
    assert len(mutation) >= 5 and len(fams) == len(mutation) and len(budgets) >= 3


def test_max_lines_counts_only_lines_where_the_families_have_an_edit():
    source = "def f(a, b):\n    c = a + b\n    d = c * a\n    return d - 3\n"
    sites = [Site("m.py", 2, 0.9), Site("m.py", 3, 0.8), Site("m.py", 4, 0.7)]  # the constant is last

    class Reader:
        def read(self, path):
            assert path == "m.py"
            return source

    agent = RepairAgent(families=["constants"], max_lines=1)
    cands = agent._candidates(Reader(), sites, None, random.Random(0))
    assert cands and {c.line for c in cands} == {4}
    assert any("return d - 2" in c.text or "return d - 4" in c.text for c in cands)
    wide = RepairAgent(families=["operators"], max_lines=2)._candidates(
        Reader(), sites, None, random.Random(0)
    )
    assert {c.line for c in wide} == {2, 3}  # the two most suspicious lines with an operator
