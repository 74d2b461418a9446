"""SWE-smith rows as swesmith writes them run here unchanged, and are judged as swesmith judges them.

The rows come from swesmith's own generator and grading on a local copy of the ``calc`` package
(tests/fixtures/swesmith_rows.py): ``repo`` is ``swesmith/fixture__calc.<sha8>``, ``base_commit`` the
upstream commit (absent from the re-committed local copy), the kind only in the instance id, no
``test_run_s``. No field is edited before they run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.fixture_repo import fix_patch, git
from fixtures.swesmith_rows import (
    LOCAL_NAME,
    NAME,
    OWNER,
    generate_rows,
    make_upstream,
    prepare_local_copy,
    write_rows,
)

from hrm_spawn.envs.repos import RepoEnv, plain_repo_name, resolve_repo_name
from hrm_spawn.envs.sandbox import Sandbox, SandboxError
from hrm_spawn.envs.swesmith_py import register_local_profile
from hrm_spawn.envs.tasks import TaskInstance, kind_from_instance_id, load_tasks
from hrm_spawn.envs.testlog import (
    OwnFraming,
    ProfileFraming,
    evaluate_report,
    framing_for,
    swesmith_instance,
)

pytestmark = pytest.mark.filterwarnings("ignore:the local sandbox runs:RuntimeWarning")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory):
    """(home, upstream commit, RepoEnv, rows file): the local copy lives in ``home/repos``."""
    root = tmp_path_factory.mktemp("swesmith_rows")
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HRM_SPAWN_HOME", str(home))
        src, upstream = make_upstream(root)
        env = prepare_local_copy(src, home / "repos")
        profile = register_local_profile(env, OWNER, NAME, upstream)
        env.save()
        rows = generate_rows(profile, env, root / "scratch")
        assert len(rows) >= 2, "swesmith's modifiers found too few valid bugs in calc"
        yield home, upstream, env, write_rows(rows, root / "rows.jsonl")


def _tasks(rows_file: Path) -> list[TaskInstance]:
    loaded = load_tasks(rows_file)
    assert loaded.ok, [str(p) for p in loaded.problems]
    return loaded.tasks


@pytest.mark.slow
def test_rows_load_as_written_with_the_kind_from_the_id(made) -> None:
    _, upstream, env, rows_file = made
    raw = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert all("modifier_kinds" not in r and "test_run_s" not in r for r in raw)
    for task in _tasks(rows_file):
        assert task.repo == f"swesmith/{OWNER}__{NAME}.{upstream[:8]}"
        assert task.base_commit == upstream != env.base_commit
        assert task.modifier_kinds == [task.instance_id.rsplit(".", 1)[1].split("__")[0]]
        assert task.repo_key == f"{OWNER}__{NAME}.{upstream[:8]}"


@pytest.mark.slow
def test_namespaced_repo_and_upstream_commit_reach_the_local_copy(made) -> None:
    home, upstream, env, rows_file = made
    task = _tasks(rows_file)[0]
    assert resolve_repo_name(task.repo, home / "repos") == LOCAL_NAME
    assert RepoEnv.load(task.repo, home / "repos").name == LOCAL_NAME
    assert env.resolve_commit(upstream) == env.resolve_commit(upstream[:8]) == env.base_commit
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HRM_SPAWN_HOME", str(home))
        with Sandbox() as sb:
            sb.prepare(task)
            # the buggy state is one commit on top of the local copy's base commit
            assert sb.run("git rev-parse HEAD~1").output.strip().splitlines()[-1] == env.base_commit
            assert task.test_run_s is not None and task.test_run_s > 0  # measured: the row had none


@pytest.mark.slow
def test_profile_verdict_equals_swesmith_grading(made, tmp_path: Path) -> None:
    from swesmith.harness.grading import get_eval_report

    home, _, env, rows_file = made
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HRM_SPAWN_HOME", str(home))
        with Sandbox() as sb:
            for task in _tasks(rows_file):
                sb.prepare(task)
                framing = framing_for(task, sb.python, sb.test_env, env)
                assert isinstance(framing, ProfileFraming)
                fixed = fix_patch(env, task.patch)
                for patch, expected in ((fixed, True), ("", False)):
                    # the framed log of the grading run, read by swesmith's own grading
                    sb.reset()
                    sb.apply_patch(patch)
                    log = sb.run(framing.command(sb.repo_dir, None, 120), timeout_s=130).output
                    sb.reset()
                    path = tmp_path / f"{task.instance_id}.{expected}.log"
                    path.write_text(log)
                    theirs = get_eval_report(
                        {"instance_id": task.instance_id, "model_patch": patch or "-"},
                        swesmith_instance(task),
                        str(path),
                    )
                    ours = evaluate_report(
                        framing.parse(log, 0.0, False), task.FAIL_TO_PASS, task.PASS_TO_PASS
                    )
                    verdict = sb.evaluate(patch)
                    assert theirs["resolved"] is ours.resolved is verdict.resolved is expected
                    passed = theirs["tests_status"]["FAIL_TO_PASS"]["success"]
                    assert len(passed) == ours.f2p_passed == verdict.f2p_passed


@pytest.mark.slow
def test_a_commit_the_copy_does_not_know_is_named(made) -> None:
    home, _, _, rows_file = made
    task = _tasks(rows_file)[0].model_copy(update={"base_commit": "0123456789abcdef0123456789abcdef01234567"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HRM_SPAWN_HOME", str(home))
        with Sandbox() as sb, pytest.raises(SandboxError, match="0123456789abcdef"):
            sb.prepare(task)


def test_tasks_built_here_keep_this_projects_framing(fixture_repo: RepoEnv, fixture_task) -> None:
    framing = framing_for(fixture_task, fixture_repo.python, {}, fixture_repo)
    assert isinstance(framing, OwnFraming)
    assert framing.grading_targets == [*fixture_task.FAIL_TO_PASS, *fixture_task.PASS_TO_PASS]


def test_replay_only_tasks_never_run_live(fixture_repo: RepoEnv) -> None:
    task = TaskInstance(instance_id="only-an-id", repo=fixture_repo.name, replay_only=True)
    with Sandbox() as sb, pytest.raises(SandboxError, match="replay_only"):
        sb.prepare(task)


@pytest.mark.parametrize(
    ("repo", "name"),
    [("swesmith/a__b.1234abcd", "a__b.1234abcd"), ("a__b.1.0", "a__b.1.0")],
)
def test_plain_repo_name(repo: str, name: str) -> None:
    assert plain_repo_name(repo) == name


@pytest.mark.parametrize("repo", ["swesmith/..", "a/b/c", "../x", "swesmith/", "x/.."])
def test_repo_names_that_leave_repos_are_refused(repo: str) -> None:
    with pytest.raises(ValueError, match="not a plain identifier"):
        plain_repo_name(repo)


@pytest.mark.parametrize(
    ("instance_id", "kind"),
    [
        ("pandas-dev__pandas.95280573.func_pm_ctrl_invert_if__hvauvyvv", "func_pm_ctrl_invert_if"),
        ("tinydb__tinydb.4.9.0.combine_file__1a2b3c4d", "combine_file"),
        ("fixture__calc.0.1.clamp_flip", None),
        ("django__django-11099", None),
    ],
)
def test_kind_from_instance_id(instance_id: str, kind: str | None) -> None:
    assert kind_from_instance_id(instance_id) == kind


def test_upstream_commit_is_recorded_by_the_copy(tmp_path: Path) -> None:
    src, upstream = make_upstream(tmp_path)
    env = prepare_local_copy(src, tmp_path / "repos")
    assert env.source_commit == upstream
    assert git(env.checkout, "rev-parse", "HEAD").strip() == env.base_commit != upstream


def test_a_copy_of_the_upstream_commit_is_found_without_aliases(tmp_path: Path) -> None:
    src, upstream = make_upstream(tmp_path)
    repos = tmp_path / "repos"
    env = prepare_local_copy(src, repos)
    assert not env.aliases
    name = f"swesmith/{OWNER}__{NAME}.{upstream[:8]}"
    assert resolve_repo_name(name, repos) == LOCAL_NAME
    assert resolve_repo_name(f"swesmith/{OWNER}__{NAME}.00000000", repos) == f"{OWNER}__{NAME}.00000000"
    twin = RepoEnv.from_dict({**env.__dict__, "name": "twin", "root": str(repos / "twin")})
    (repos / "twin").mkdir()
    twin.save()
    with pytest.raises(ValueError, match="several repositories were prepared from commit"):
        resolve_repo_name(name, repos)
