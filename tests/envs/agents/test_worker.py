"""The warm fork validator gives the verdicts a plain pytest run gives, kills hangs, ignores stale bytecode."""

from __future__ import annotations

import json
import py_compile
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import checkout_copy

from hrm_spawn.envs.agents.mutate import mutate_source
from hrm_spawn.envs.agents.repair import SCRATCH, VALIDATOR, validator_files
from hrm_spawn.envs.agents.validator import forking
from hrm_spawn.envs.testlog import parse_report, pytest_command, test_env

BUGGY = "calc/compare.py"


def run_worker(repo_dir: Path, job: dict) -> dict:
    """The validator as the agents ship it: its files inside the repository, started by its launcher."""
    for path, text in validator_files().items():
        (repo_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (repo_dir / path).write_text(text)
    job_path, out_path = repo_dir.parent / "job.json", repo_dir.parent / "out.json"
    job_path.write_text(json.dumps({"repo_dir": str(repo_dir), **job}))
    env = {**test_env(["."], str(repo_dir)), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, f"{VALIDATOR}/launch.py", str(job_path), str(out_path)],
        cwd=repo_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out_path.read_text())


def plain_pytest(repo_dir: Path, ids: list[str]) -> dict[str, str]:
    command = pytest_command(sys.executable, ids, test_env(["."], str(repo_dir)))
    proc = subprocess.run(["bash", "-c", command], cwd=repo_dir, capture_output=True, text=True)
    return parse_report(proc.stdout + proc.stderr).status


@pytest.fixture
def buggy_repo(tmp_path: Path, fixture_repo_session, bug_task):
    task = bug_task("operators")
    return checkout_copy(fixture_repo_session, tmp_path / "repo", task.patch), task


def test_verdicts_match_a_plain_pytest_run(buggy_repo):
    repo_dir, task = buggy_repo
    source = (repo_dir / BUGGY).read_text()
    cands = mutate_source(BUGGY, source, range(1, 12), ["operators", "control", "constants"])
    sample = cands[:: max(1, len(cands) // 5)][:5]
    fixing = [c for c in cands if "value > high" in c.description and "->" in c.description][:1]
    sample += [c for c in fixing if c not in sample]
    ids = task.FAIL_TO_PASS + task.PASS_TO_PASS[:8]
    job = {
        "mode": "validate",
        "f2p": task.FAIL_TO_PASS,
        "p2p": task.PASS_TO_PASS[:8],
        "p2p_mode": "all",
        "stop_on_fix": False,
        "candidates": [{"id": str(i), "files": {c.file: c.text}} for i, c in enumerate(sample)],
    }
    out = run_worker(repo_dir, job)
    assert len(out["results"]) == len(sample)
    assert (repo_dir / BUGGY).read_text() == source  # restored after every candidate
    fixed = 0
    for entry, cand in zip(out["results"], sample, strict=True):
        (repo_dir / BUGGY).write_text(cand.text)
        expected = plain_pytest(repo_dir, ids)
        assert {t: entry["status"].get(t) for t in ids} == {t: expected.get(t) for t in ids}, cand.description
        fixed += entry["fixed"]
    (repo_dir / BUGGY).write_text(source)
    assert fixed >= 1  # the sample holds at least one fix and one non-fix
    assert fixed < len(sample)


def test_p2p_runs_only_for_improving_candidates_and_stops_on_fix(buggy_repo):
    repo_dir, task = buggy_repo
    source = (repo_dir / BUGGY).read_text()
    good = source.replace("value < high", "value > high")
    bad = source.replace("value < low", "value > low")
    job = {
        "mode": "validate",
        "f2p": task.FAIL_TO_PASS,
        "p2p": task.PASS_TO_PASS,
        "candidates": [
            {"id": "bad", "files": {BUGGY: bad}},
            {"id": "good", "files": {BUGGY: good}},
            {"id": "never", "files": {BUGGY: bad}},
        ],
    }
    out = run_worker(repo_dir, job)
    assert [e["id"] for e in out["results"]] == ["bad", "good"] and out["stopped"] == "fixed"
    assert out["results"][0]["p2p_passed"] is None
    assert out["results"][1]["fixed"] and out["results"][1]["p2p_passed"] == len(task.PASS_TO_PASS)


def test_a_hanging_candidate_is_killed_and_the_next_one_runs(buggy_repo):
    repo_dir, task = buggy_repo
    source = (repo_dir / BUGGY).read_text()
    spin = source.replace("    if value < low:", "    while True:\n        pass\n    if value < low:", 1)
    good = source.replace("value < high", "value > high")
    job = {
        "mode": "validate",
        "f2p": task.FAIL_TO_PASS,
        "p2p": [],
        "timeout_s": 6.0,
        "candidates": [{"id": "spin", "files": {BUGGY: spin}}, {"id": "good", "files": {BUGGY: good}}],
    }
    start = time.perf_counter()
    out = run_worker(repo_dir, job)
    assert time.perf_counter() - start < 60
    spin_result, good_result = out["results"]
    assert spin_result["timed_out"] and spin_result["f2p_passed"] == 0
    assert good_result["fixed"], good_result
    assert (repo_dir / BUGGY).read_text() == source


def test_stale_bytecode_is_never_used(buggy_repo):
    """An unchecked-hash .pyc of the buggy file would be loaded by a normal import whatever the source says."""
    repo_dir, task = buggy_repo
    path = repo_dir / BUGGY
    py_compile.compile(str(path), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    assert list((path.parent / "__pycache__").glob("compare.*.pyc"))
    good = path.read_text().replace("value < high", "value > high")  # same size as the bug
    job = {
        "mode": "validate",
        "f2p": task.FAIL_TO_PASS,
        "p2p": [],
        "candidates": [{"id": "g", "files": {BUGGY: good}}],
    }
    assert run_worker(repo_dir, job)["results"][0]["fixed"]


def test_run_mode_reports_tracebacks_and_coverage(buggy_repo):
    repo_dir, task = buggy_repo
    out = run_worker(
        repo_dir,
        {
            "mode": "run",
            "f2p": task.FAIL_TO_PASS,
            "p2p": task.PASS_TO_PASS[:5],
            "coverage": True,
            "tb": "long",
        },
    )
    assert all(out["status"][t] == "FAILED" for t in task.FAIL_TO_PASS)
    assert all(out["status"][t] == "PASSED" for t in task.PASS_TO_PASS[:5])
    assert "assert" in out["failures"][task.FAIL_TO_PASS[0]]
    covered = out["coverage"][task.FAIL_TO_PASS[0]]
    assert 7 in covered[BUGGY] and not any("test" in f for f in covered)
    assert not any(f.startswith(SCRATCH) for f in covered)  # the validator's own files, shipped in the repo


def test_ids_are_the_repositorys_inside_another_projects_tree(tmp_path: Path):
    """A checkout under a folder whose pyproject.toml configures pytest (a data dir inside a project):
    the ids must still be the repository's own, or no candidate's tests would ever be found."""
    outer = tmp_path / "project"
    repo = outer / "data" / "repo"
    (repo / "tests").mkdir(parents=True)
    (outer / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = "--strict-markers -x"\n')
    (repo / "tests" / "test_a.py").write_text(
        "def test_x():\n    assert True\n\ndef test_y():\n    assert False\n"
    )
    ids = ["tests/test_a.py::test_x", "tests/test_a.py::test_y"]
    out = run_worker(repo, {"mode": "run", "f2p": ids, "p2p": [], "coverage": False})
    assert out["status"] == {"tests/test_a.py::test_x": "PASSED", "tests/test_a.py::test_y": "FAILED"}
    assert forking._has_own_config(str(outer)) and not forking._has_own_config(str(repo))


def test_no_folder_of_the_validator_is_on_the_repositorys_path(tmp_path: Path):
    """Shipped inside the repository, the validator takes its folders off sys.path before the repository's
    code runs: a repository module named like one of its modules (``job``) is the repository's, and none
    of its own modules can be found, in fresh-import children and in the warm session alike."""
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "pytest.ini").write_text("[pytest]\n")
    owner = "def owner():\n    return {}\n"
    (repo / "job.py").write_text(owner.format("'repo'"))
    (repo / "tests" / "test_job.py").write_text(
        "import importlib.util\nimport sys\n\nimport job\n\n\n"
        "def test_owner():\n    assert job.owner() == 'repo'\n\n\n"
        "def test_path():\n"
        f"    assert not [p for p in sys.path if {SCRATCH!r} in p]\n"
        "    assert importlib.util.find_spec('livecode') is None\n"
    )
    ids = ["tests/test_job.py::test_owner", "tests/test_job.py::test_path"]
    out = run_worker(repo, {"mode": "run", "f2p": ids, "p2p": []})
    assert out["status"] == dict.fromkeys(ids, "PASSED")
    edits = [owner.format("'re' + 'po'"), owner.format("'other'")]
    job = {"mode": "validate", "f2p": ids, "p2p": [], "stop_on_fix": False, "p2p_mode": "never"}
    job["candidates"] = [{"id": str(i), "files": {"job.py": text}} for i, text in enumerate(edits)]
    same, other = run_worker(repo, job)["results"]
    assert same["path"] == other["path"] == "fast"
    assert same["status"] == dict.fromkeys(ids, "PASSED")
    assert other["status"] == {ids[0]: "FAILED", ids[1]: "PASSED"}
