"""The docker sandbox for real: images built here (envs/images.py), tasks run through SWE-ReX's DockerDeployment.

Every verdict in a container is compared with the local sandbox's verdict on the same task and patch.
The base image is built by `make images` (CI: `.ci/run`) or here when this host can (root + debootstrap).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hrm_spawn.envs.agents.registry import get_agent, get_spec
from hrm_spawn.envs.failures import SandboxDiedError, is_infrastructure_failure
from hrm_spawn.envs.images import base_spec, ensure, image_exists, repo_spec
from hrm_spawn.envs.repos import RepoEnv
from hrm_spawn.envs.results import Budget, Evaluation
from hrm_spawn.envs.sandbox import Sandbox, SandboxConfig, SandboxError
from hrm_spawn.envs.tasks import TaskInstance

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.fixture_repo import fix_patch  # noqa: E402


def _docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(not _docker_works(), reason="no Docker engine here (`docker info` fails)"),
]


@pytest.fixture(scope="module")
def base_image() -> str:
    spec = base_spec()
    if not image_exists(spec.tag) and (os.geteuid() != 0 or shutil.which("debootstrap") is None):
        pytest.skip(
            f"{spec.tag} is missing and this host cannot build it (root + debootstrap): `make images`"
        )
    ensure(spec)
    return spec.tag


def verdict(evaluation: Evaluation) -> tuple:
    """What a judgement says, without its timing."""
    e = evaluation
    return (e.applied, e.f2p_passed, e.f2p_total, e.p2p_passed, e.p2p_total, e.resolved, e.tests)


def docker_config(image: str, **options: object) -> SandboxConfig:
    return SandboxConfig(deployment="docker", image=image, docker={"pull": "never", **options})


def run_agent(sb: Sandbox, task: TaskInstance, agent_name: str) -> str:
    """The agent's patch from the buggy state; the spec's validation limit without its wall-clock one."""
    agent = get_agent(agent_name)
    sb.reset()
    return agent.run(
        sb, task, "", Budget(max_validations=get_spec(agent_name).budget.max_validations), 0
    ).patch


def judge_locally(task: TaskInstance, patches: list[str]) -> list[Evaluation]:
    with Sandbox(SandboxConfig(deployment="local")) as sb:
        sb.prepare(task)
        return [sb.evaluate(p) for p in patches]


def test_fixture_task_in_docker_matches_the_local_sandbox(base_image, fixture_repo: RepoEnv, fixture_task):
    spec = repo_spec(fixture_repo)
    ensure(spec)
    assert [r.built for r in ensure(spec)] == [False, False, False]  # cached by tag: nothing rebuilt
    fix = fix_patch(fixture_repo, fixture_task.patch)
    with Sandbox(docker_config(spec.tag, docker_args=["--memory=1g"])) as sb:
        sb.prepare(fixture_task)
        assert sb.repo_dir == "/testbed" and sb.run("test -f /.dockerenv").exit_code == 0
        assert sb.run("sleep 30", timeout_s=1.0).timed_out and sb.run("echo alive").output == "alive"
        patches = [fix, "", "not a diff", run_agent(sb, fixture_task, "op-flip")]
        in_docker = [sb.evaluate(p) for p in patches]
    assert [verdict(e) for e in in_docker] == [verdict(e) for e in judge_locally(fixture_task, patches)]
    assert in_docker[0].resolved and not in_docker[1].resolved and not in_docker[2].applied
    assert in_docker[3].resolved  # the agent fixed it inside the container


def test_missing_image_with_pull_never_names_the_build_command(fixture_task) -> None:
    config = docker_config("hrm-spawn/testbed.none:000000000000")
    with Sandbox(config) as sb, pytest.raises(SandboxError, match="hrm-spawn images build"):
        sb.prepare(fixture_task)


@pytest.mark.slow
def test_tinydb_task_end_to_end_in_docker(base_image, hrm_home: Path) -> None:
    """A SWE-smith operator bug in tinydb: built, imaged, the op-flip agent run in a container, judged as locally."""
    from hrm_spawn.envs.build import build_tasks
    from hrm_spawn.envs.tasks import load_tasks

    out = hrm_home / "tasks" / "tinydb.jsonl"
    # Seeded: the first four valid bugs of tinydb 4.9.0 include one operator change (func_pm_op_change).
    build_tasks("pypi:tinydb==4.9.0", out, max_bugs=4, combined=0, seed=0, workers=2)
    task = next(t for t in load_tasks(out, on_error="raise").tasks if "func_pm_op_change" in t.modifier_kinds)
    repo = RepoEnv.load(task.repo)
    spec = repo_spec(repo)
    ensure(spec)
    with Sandbox(docker_config(spec.tag)) as sb:
        sb.prepare(task)
        patches = [run_agent(sb, task, "op-flip"), fix_patch(repo, task.patch), ""]
        in_docker = [sb.evaluate(p) for p in patches]
    assert [verdict(e) for e in in_docker] == [verdict(e) for e in judge_locally(task, patches)]
    assert (
        in_docker[1].resolved
        and not in_docker[2].resolved
        and in_docker[2].p2p_passed == len(task.PASS_TO_PASS)
    )


def test_a_plain_image_without_testbed_is_refused_by_name(base_image, fixture_task):
    task = fixture_task.model_copy(update={"image_name": base_image})
    with Sandbox(SandboxConfig(deployment="docker")) as sb, pytest.raises(SandboxError, match="testbed"):
        sb.prepare(task)  # the base image has no /testbed: the error says so


def test_a_container_killed_from_outside_is_restarted_and_the_task_prepared_again(
    base_image, fixture_repo: RepoEnv, fixture_task
):
    """A dead deployment (the container gone under the sandbox) fails one call as a SandboxDiedError; the
    sandbox then runs a fresh container with the same task, clean, and judges as before."""
    spec = repo_spec(fixture_repo)
    ensure(spec)
    fix = fix_patch(fixture_repo, fixture_task.patch)
    with Sandbox(docker_config(spec.tag)) as sb:
        sb.prepare(fixture_task)
        first = sb._deployment.container_name
        sb.write_file("calc/compare.py", "broken = True\n")  # the dying job's leftovers
        subprocess.run(["docker", "kill", first], capture_output=True, timeout=60, check=True)
        with pytest.raises(SandboxDiedError) as info:
            sb.run("echo hello")
        assert is_infrastructure_failure(info.value)
        assert sb.run("echo back").output == "back"
        assert sb._deployment.container_name != first
        assert sb.task is not None and sb.task.instance_id == fixture_task.instance_id
        assert sb.diff() == ""
        assert sb.evaluate(fix).resolved
    gone = subprocess.run(["docker", "ps", "-q", "--filter", f"name={first}"], capture_output=True, text=True)
    assert gone.stdout.strip() == ""
