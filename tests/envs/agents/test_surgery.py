"""The plastic-surgery agent: ingredients, grafts, and real removed-code bugs fixed in a local sandbox."""

from __future__ import annotations

import pytest
from fixtures.calc_source import PACKAGE

from hrm_spawn.envs.agents.localize import Site
from hrm_spawn.envs.agents.registry import AGENT_SPECS, get_agent
from hrm_spawn.envs.agents.surgery import (
    SurgeryAgent,
    harvest,
    interleave,
    surgery_candidates,
    wanted_names,
)
from hrm_spawn.envs.results import Budget

NO_RESULT = "    result = 1\n    for _ in range(exponent):"
UNBOUND = (
    "E       UnboundLocalError: cannot access local variable 'result' where it is not associated with a value"
)


def _broken(**edits: tuple[str, str]) -> dict[str, str]:
    sources = dict(PACKAGE)
    for path, (old, new) in edits.items():
        sources[path.replace("__", "/") + ".py"] = sources[path.replace("__", "/") + ".py"].replace(
            old, new, 1
        )
    return sources


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_harvest_finds_statements_methods_and_bases_with_their_names():
    pantry = harvest(PACKAGE)
    assigns = [i for i in pantry.statements if i.family == "assign" and i.text == "result = 1\n"]
    assert [i.owner for i in assigns] == ["power"]  # the same text once, from its first function
    guard = next(i for i in pantry.statements if i.family == "guard" and i.text.startswith("if b == 0:"))
    assert guard.text == "if b == 0:\n    return None\n" and guard.reads == {"b"}
    loop = next(i for i in pantry.statements if i.family == "loop" and i.owner == "dedupe")
    assert {"seen", "out", "values"} <= loop.reads and "value" in loop.binds
    assert "describe" in pantry.methods and pantry.bases["calc/shapes.py"] == ["Shape"]
    assert {"width", "height", "area"} <= pantry.defines["Rectangle"]


def test_only_the_asked_families_are_harvested():
    pantry = harvest(PACKAGE, ["guard"])
    assert pantry.statements and {i.family for i in pantry.statements} == {"guard"}
    assert not pantry.methods and not pantry.bases


def test_removed_assignment_is_restored_first_from_a_sibling_function():
    sources = _broken(calc__arithmetic=(NO_RESULT, "    for _ in range(exponent):"))
    line = _line_of(sources["calc/arithmetic.py"], "for _ in range(exponent)")
    sites = [Site("calc/arithmetic.py", line + 1, 1.0), Site("calc/arithmetic.py", line, 0.9)]
    cands = surgery_candidates(sources.__getitem__, sorted(sources), sites, [UNBOUND], ["assign"])
    fixed = [k for k, c in enumerate(cands) if c.text == PACKAGE["calc/arithmetic.py"]]
    assert fixed and fixed[0] < 5, [c.description for c in cands[:6]]
    # never after the first read of the name it binds, and never a statement the function already has
    assert all(c.line <= line + 1 for c in cands if c.description.startswith("insert assign `result = 1`"))
    assert all(c.family == "assign" for c in cands)


def test_removed_base_is_restored_from_a_sibling_class():
    sources = _broken(calc__shapes=("class Circle(Shape):", "class Circle:"))
    line = _line_of(sources["calc/shapes.py"], "return round(PI")
    failure = "E       AttributeError: 'Circle' object has no attribute 'describe'"
    cands = surgery_candidates(
        sources.__getitem__, sorted(sources), [Site("calc/shapes.py", line, 1.0)], [failure]
    )
    bases = [c for c in cands if c.family == "base"]
    assert bases[0].text == PACKAGE["calc/shapes.py"], [c.description for c in cands[:6]]
    assert cands.index(bases[0]) < 4


def test_every_candidate_compiles_and_differs_from_the_source():
    sources = _broken(calc__arithmetic=(NO_RESULT, "    for _ in range(exponent):"))
    sites = [Site("calc/arithmetic.py", n, 0.5) for n in range(1, 60)]
    cands = surgery_candidates(sources.__getitem__, sorted(sources), sites, [])
    assert len(cands) > 5  # few: most grafts into add/subtract would be dead code or read unbound names
    assert len({(c.file, c.text) for c in cands}) == len(cands)
    for cand in cands:
        compile(cand.text, cand.file, "exec")
        assert cand.text != sources[cand.file]


def test_failure_messages_name_what_is_missing():
    texts = [
        "E   AttributeError: 'Table' object has no attribute '_cache'",
        "E   NameError: name 'docs' is not defined",
        UNBOUND,
    ]
    assert wanted_names(texts) == {"_cache", "docs", "result"}


def test_interleave_alternates_lists():
    assert interleave([1, 2, 3], [4, 5]) == [1, 4, 2, 5, 3]
    assert interleave([1, 2, 3, 4, 5], [6, 7], every=2) == [1, 2, 6, 3, 4, 7, 5]
    assert interleave([], [6, 7], every=3) == [6, 7]


def test_unknown_ingredients_are_rejected_by_name():
    with pytest.raises(ValueError, match="nonsense"):
        SurgeryAgent(ingredients=["guard", "nonsense"])


def test_registered_as_a_builtin_agent():
    agent = get_agent("surgery")
    assert isinstance(agent, SurgeryAgent) and agent.name == "surgery"
    assert AGENT_SPECS["surgery"].budget.max_validations


@pytest.mark.slow
@pytest.mark.parametrize("bug", ["removed_assign", "removed_base"])
def test_fixes_removed_code_in_a_real_sandbox(sandbox, bug_task, bug):
    task = bug_task(bug)
    sandbox.prepare(task)
    result = get_agent("surgery").run(sandbox, task, "", Budget(max_validations=40, max_sandbox_s=300), 0)
    evaluation = sandbox.evaluate(result.patch)
    assert result.status == "ok", result.reason
    assert evaluation.resolved, (result.trajectory, result.patch)
    assert result.cost.validations <= 40


@pytest.mark.slow
def test_mutation_agents_cannot_fix_what_surgery_fixes(sandbox, bug_task):
    task = bug_task("removed_assign")
    sandbox.prepare(task)
    result = get_agent("op-flip").run(sandbox, task, "", Budget(max_validations=30, max_sandbox_s=300), 0)
    assert not sandbox.evaluate(result.patch).resolved


def test_an_ingredient_is_renamed_to_the_name_the_function_misses():
    # `count = 0` removed: `count += 1` now reads it first; `total = 0` (count_vowels) renamed restores it
    sources = _broken(calc__compare=("    count = 0\n", ""))
    line = _line_of(sources["calc/compare.py"], "count += 1")
    sites = [Site("calc/compare.py", line, 1.0), Site("calc/compare.py", line - 1, 0.9)]
    cands = surgery_candidates(sources.__getitem__, sorted(sources), sites, [], ["assign"])
    fixed = [k for k, c in enumerate(cands) if c.text == PACKAGE["calc/compare.py"]]
    assert fixed and fixed[0] < 40, [c.description for c in cands[:10]]  # within a default budget
    assert "renamed" in cands[fixed[0]].description
