"""Building validated tasks: swesmith modifiers on the calc fixture repository, validated by real test runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from fixtures.fixture_repo import copy_repo

from hrm_spawn.envs.build import BuildReport, _combine, build_tasks
from hrm_spawn.envs.candidates import (
    Candidate,
    check_kinds,
    combined_candidates,
    generate_candidates,
    invertible,
    iter_kinds,
)
from hrm_spawn.envs.problem import failure_messages, problem_statement
from hrm_spawn.envs.repos import RepoEnv
from hrm_spawn.envs.swesmith_py import entities_from_file, python_modifiers
from hrm_spawn.envs.tasks import INVERTIBLE_KINDS, load_tasks
from hrm_spawn.envs.testlog import parse_report, pytest_command, test_env
from hrm_spawn.envs.validation import Sidecar, Validator

MAX_BUGS = 4
COMBINED = 1


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, fixture_repo_session: RepoEnv):
    """One small build shared by the tests below (validation runs real test suites: seconds each)."""
    home = tmp_path_factory.mktemp("build_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HRM_SPAWN_HOME", str(home))
        repo = copy_repo(fixture_repo_session, home)
        out = home / "tasks" / "calc.jsonl"
        report = build_tasks(repo, out, max_bugs=MAX_BUGS, combined=COMBINED, seed=0, workers=2)
        yield repo, out, report


def _run(repo: RepoEnv, workdir: Path, tests: list[str]):
    command = pytest_command(repo.python, tests, test_env(repo.pythonpath, str(workdir)), 120)
    proc = subprocess.run(["bash", "-c", command], cwd=workdir, capture_output=True, text=True)
    return parse_report(proc.stdout + proc.stderr)


def test_swesmith_python_parts_load() -> None:
    kinds = list(iter_kinds())
    assert len(kinds) == 13 and len(set(kinds)) == 13
    assert all(k.startswith("func_pm_") for k in kinds)
    assert len(python_modifiers()) == 13


def test_entities_come_from_swesmith_adapter(fixture_repo: RepoEnv) -> None:
    found = entities_from_file(str(fixture_repo.checkout / "calc" / "arithmetic.py"))
    assert {"add", "safe_divide", "factorial"} <= {e.name for e in found}


def test_build_writes_loadable_tasks(built) -> None:
    repo, out, report = built
    result = load_tasks(out, on_error="raise")
    assert result.ok
    tasks = result.tasks
    assert report.single_tasks == MAX_BUGS and report.combined_tasks == COMBINED
    assert len(tasks) == report.tasks
    kinds = set(iter_kinds())
    for task in tasks:
        assert task.instance_id.startswith(f"{repo.name}.")
        assert task.repo == repo.name and task.image_name == "" and task.base_commit == repo.base_commit
        assert task.FAIL_TO_PASS and task.PASS_TO_PASS
        assert not set(task.FAIL_TO_PASS) & set(task.PASS_TO_PASS)
        assert set(task.modifier_kinds) <= kinds
        for entity in task.entity.split(","):
            path, _, qualname = entity.partition("::")
            assert (repo.checkout / path).is_file() and qualname
        assert task.test_run_s == repo.test_run_s
        assert task.FAIL_TO_PASS[0] in task.problem_statement
    combined = [t for t in tasks if len(t.modifier_kinds) > 1]
    assert len(combined) == COMBINED
    assert all(len(set(t.entity.split(","))) == len(t.modifier_kinds) for t in combined)
    saved = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert saved["tasks"] == len(tasks) and saved["kept"] == report.kept


def test_fail_to_pass_fails_on_bug_and_passes_clean(built, tmp_path: Path) -> None:
    repo, out, _ = built
    tasks = load_tasks(out).tasks
    single = next(t for t in tasks if len(t.modifier_kinds) == 1)
    combined = next(t for t in tasks if len(t.modifier_kinds) > 1)
    for task in (single, combined):
        work = tmp_path / task.instance_id
        subprocess.run(["git", "clone", "-q", str(repo.checkout), str(work)], check=True)
        tests = task.FAIL_TO_PASS + task.PASS_TO_PASS
        clean = _run(repo, work, tests)
        assert all(clean.passed(t) for t in tests), task.instance_id
        subprocess.run(["git", "apply", "-"], input=task.patch, text=True, cwd=work, check=True)
        buggy = _run(repo, work, tests)
        assert not any(buggy.passed(t) for t in task.FAIL_TO_PASS), task.instance_id
        assert all(buggy.passed(t) for t in task.PASS_TO_PASS), task.instance_id


def test_rerun_resumes_without_validating_again(built) -> None:
    repo, out, first = built
    sidecar = out.with_name(out.name + ".validation.jsonl")
    before_file, before_lines = out.read_bytes(), sidecar.read_text().count("\n")
    again = build_tasks(repo, out, max_bugs=MAX_BUGS, combined=COMBINED, seed=0, workers=2)
    assert out.read_bytes() == before_file
    assert sidecar.read_text().count("\n") == before_lines  # nothing validated again
    assert again.reused == sum(first.validated.values())
    assert again.tasks == first.tasks


def test_same_seed_same_tasks(built, tmp_path: Path) -> None:
    repo, out, _ = built
    # A fresh build (no sidecar, another worker count) keeps exactly the same tasks.
    fresh = tmp_path / "again.jsonl"
    build_tasks(repo, fresh, max_bugs=MAX_BUGS, combined=COMBINED, seed=0, workers=3)

    def rows(path: Path) -> list[dict]:
        return [
            {k: v for k, v in json.loads(line).items() if k != "created_at"}
            for line in path.read_text().splitlines()
        ]

    assert rows(fresh) == rows(out)


def test_seed_changes_the_order(built) -> None:
    repo, _, _ = built
    first, _ = generate_candidates(repo, seed=0, workers=2)
    other, _ = generate_candidates(repo, seed=1, workers=2)
    assert [c.key for c in other] != [c.key for c in first]
    assert {c.label for c in first} == {c.label for c in other}


def test_combinations_touch_distinct_functions(built) -> None:
    repo, _, _ = built
    singles, _ = generate_candidates(repo, seed=0)
    combos = combined_candidates(singles[:30], 5, seed=0)
    assert combos
    for combo in combos:
        assert 2 <= len(combo.parts) <= 3
        assert len(set(combo.entities)) == len(combo.entities)
        files = {e.split("::")[0] for e in combo.entities}
        assert len(files) == 1 if combo.combine == "combine_file" else len(files) >= 2
    assert [c.key for c in combined_candidates(singles[:30], 5, seed=0)] == [c.key for c in combos]


def _singles(kinds_per_function: dict[str, list[str]], file: str = "pkg/mod.py") -> list[Candidate]:
    """Made-up valid single bugs: one per (function, kind), no repository needed."""
    out = []
    for function, kinds in kinds_per_function.items():
        for kind in kinds:
            key = f"{function}-{kind}"
            out.append(
                Candidate(
                    key, [kind], f"{file}::{function}", file, f"patch {key}", entities=[f"{file}::{function}"]
                )
            )
    return out


def _all_valid(tmp_path: Path, cands: list[Candidate]) -> Sidecar:
    """A sidecar that already holds every combination as valid: _combine picks without running tests."""
    sidecar = Sidecar(tmp_path / "t.jsonl.validation.jsonl", "base")
    for cand in cands:
        sidecar.add({"key": cand.key, "base_commit": "base", "valid": True})
    return sidecar


SINGLES = {
    "f": ["func_pm_op_change", "func_pm_remove_assign"],
    "g": ["func_pm_op_swap", "func_pm_remove_cond"],
    "h": ["func_pm_ctrl_invert_if", "func_pm_remove_loop"],
    "k": ["func_pm_op_break_chains"],
}


def _combos(singles: list[Candidate], count: int, seed: int) -> list[Candidate]:
    inv = combined_candidates([c for c in singles if invertible(c)], count, seed, "combined-invertible")
    return inv + combined_candidates(singles, count, seed)


def test_half_of_the_combined_bugs_are_invertible(tmp_path: Path) -> None:
    singles = _singles(SINGLES)
    sidecar = _all_valid(tmp_path, _combos(singles, 5, seed=3))
    report = BuildReport("src", "repo", "out", 3, 1)
    _, kept = _combine(singles, 5, 3, Validator(None, sidecar), report)
    assert len(kept) == 5 and len({c.key for c in kept}) == 5
    inv = [c for c in kept if invertible(c)]
    assert len(inv) >= 3 == report.combined_invertible  # ceil(5 / 2), listed first
    assert kept[:3] == inv[:3]
    assert all(set(c.kinds) <= INVERTIBLE_KINDS for c in inv)
    assert "func_pm_op_break_chains" not in INVERTIBLE_KINDS  # it drops an operand: no mutation restores it
    _, again = _combine(singles, 5, 3, Validator(None, sidecar), BuildReport("src", "repo", "out", 3, 1))
    assert [c.key for c in again] == [c.key for c in kept]  # the seed decides, nothing else


def test_without_invertible_pairs_the_combined_bugs_are_as_before(tmp_path: Path) -> None:
    singles = _singles({"f": ["func_pm_op_change", "func_pm_remove_assign"], "g": ["func_pm_remove_cond"]})
    before = combined_candidates(singles, 2, seed=0)
    sidecar = _all_valid(tmp_path, before)
    _, kept = _combine(singles, 2, 0, Validator(None, sidecar), BuildReport("src", "repo", "out", 0, 1))
    assert [c.key for c in kept] == [c.key for c in before[:2]]  # one invertible bug alone cannot combine


@pytest.mark.parametrize("kwargs, message", [({"max_bugs": 0}, "max_bugs"), ({"combined": -1}, "combined")])
def test_bad_arguments_are_named(fixture_repo: RepoEnv, tmp_path: Path, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_tasks(fixture_repo, tmp_path / "t.jsonl", **kwargs)


def test_bad_source_is_named(hrm_home: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no-such-thing"):
        build_tasks("no-such-thing", tmp_path / "t.jsonl")


def test_failure_messages_and_statement() -> None:
    output = (
        "tests/test_a.py::test_x FAILED [ 50%]\n"
        "=== short test summary info ===\n"
        "FAILED tests/test_a.py::test_x - AssertionError: assert <Obj at 0x7f74c77e7cd0> == 3\n"
        "ERROR tests/test_b.py::test_y - ImportError: cannot import name 'z'\n"
    )
    messages = failure_messages(output)
    assert messages["tests/test_a.py::test_x"].startswith("AssertionError: assert")
    assert messages["tests/test_b.py::test_y"] == "ImportError: cannot import name 'z'"
    text = problem_statement(["tests/test_a.py::test_x", "tests/test_b.py::test_y"], messages, total_tests=10)
    assert text.startswith("2 of 10 tests fail")
    assert "0x7f74c77e7cd0" not in text and "tests/test_b.py::test_y: ImportError" in text
    with pytest.raises(ValueError, match="failing test"):
        problem_statement([], {})


@pytest.mark.slow
def test_build_tinydb_from_pypi(hrm_home: Path) -> None:
    out = hrm_home / "tasks" / "tinydb.jsonl"
    report = build_tasks("pypi:tinydb==4.9.0", out, max_bugs=5, combined=1, seed=0, workers=2)
    tasks = load_tasks(out, on_error="raise").tasks
    assert report.single_tasks == 5 and len(tasks) == report.tasks >= 5
    repo = RepoEnv.load("tinydb__tinydb.4.9.0")
    assert repo.pythonpath == ["."] and repo.test_paths == ["tests"] and repo.test_run_s > 0
    # The project runs from the checkout, not from the venv.
    probe = subprocess.run([repo.python, "-c", "import tinydb"], capture_output=True, cwd="/")
    assert probe.returncode != 0
    assert all(t.entity.startswith("tinydb/") for t in tasks)


def test_kinds_filter_takes_short_and_full_modifier_names():
    assert check_kinds(["remove_assign", "func_pm_class_rm_base", "remove_assign"]) == [
        "func_pm_class_rm_base",
        "func_pm_remove_assign",
    ]
    with pytest.raises(ValueError, match="unknown modifier kind 'remove_everything'.*known: func_pm_"):
        check_kinds(["remove_everything"])
