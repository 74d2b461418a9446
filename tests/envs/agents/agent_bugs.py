"""Hand-made bugs on the ``calc`` fixture repository, one per mutation family, plus removal and combined.

Each task is made the way SWE-smith makes one: a rewrite of one function, turned into a git diff, with
FAIL_TO_PASS / PASS_TO_PASS measured by running the tests clean and buggy. Used by the agent tests and,
when no real task set is built, by benchmarks/solve_matrix.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from fixtures.fixture_repo import REPO_NAME, fail_and_pass_lists, git

from hrm_spawn.envs.repos import RepoEnv
from hrm_spawn.envs.tasks import TaskInstance

# name -> (modifier kinds, [(file, old, new)])
BUGS: dict[str, tuple[list[str], list[tuple[str, str, str]]]] = {
    "operators": (["func_pm_op_change"], [("calc/compare.py", "if value > high:", "if value < high:")]),
    "operands": (["func_pm_op_swap"], [("calc/arithmetic.py", "return a - b", "return b - a")]),
    "constants": (
        ["func_pm_op_change_const"],
        [("calc/strings.py", "text[: width - 1]", "text[: width - 2]")],
    ),
    "control": (
        ["func_pm_ctrl_invert_if"],
        [("calc/compare.py", "if value > threshold:", "if not value > threshold:")],
    ),
    "statements": (
        ["func_pm_ctrl_shuffle"],
        [
            (
                "calc/sequences.py",
                "        current += value\n        totals.append(current)\n",
                "        totals.append(current)\n        current += value\n",
            )
        ],
    ),
    "removal": (
        ["func_pm_remove_cond"],
        [("calc/compare.py", "    if value < low:\n        return low\n", "")],
    ),
    # removed code with an ingredient elsewhere in the repository (the surgery agent's kinds)
    "removed_assign": (
        ["func_pm_remove_assign"],
        [
            (
                "calc/arithmetic.py",
                "    result = 1\n    for _ in range(exponent):",
                "    for _ in range(exponent):",
            )
        ],
    ),
    "removed_base": (
        ["func_pm_class_rm_base"],
        [("calc/shapes.py", "class Circle(Shape):", "class Circle:")],
    ),
    "hang": (
        ["func_pm_op_change"],
        [("calc/arithmetic.py", "        result *= i\n", "        result /= i\n")],
    ),
    "combined": (
        ["func_pm_op_change", "func_pm_op_swap"],
        [
            ("calc/compare.py", "if value > high:", "if value < high:"),
            ("calc/arithmetic.py", "return a - b", "return b - a"),
        ],
    ),
}


def make_bug_task(repo: RepoEnv, name: str) -> TaskInstance:
    kinds, edits = BUGS[name]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "w"
        git(Path(tmp), "clone", "-q", "--shared", str(repo.checkout), str(work))
        for rel, old, new in edits:
            path = work / rel
            text = path.read_text()
            assert old in text, f"{rel} lacks {old!r}"
            path.write_text(text.replace(old, new, 1))
        patch = git(work, "diff")
    f2p, p2p = fail_and_pass_lists(repo, patch)
    assert f2p, f"bug {name} breaks no test"
    return TaskInstance(
        instance_id=f"{REPO_NAME}.{name}",
        repo=repo.name,
        patch=patch,
        FAIL_TO_PASS=f2p,
        PASS_TO_PASS=p2p,
        image_name="",
        base_commit=repo.base_commit,
        modifier_kinds=kinds,
        test_run_s=repo.test_run_s,
    )
