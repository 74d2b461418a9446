"""Faults injected into a real local Sandbox: dead shells, stray processes, floods, secrets, budgets, stale folders."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hrm_spawn.envs.failures import EvaluationError, SandboxDiedError, is_infrastructure_failure
from hrm_spawn.envs.paths import data_dir
from hrm_spawn.envs.sandbox import SWEREX_PS1, Sandbox, SandboxConfig, clean_stale_sandboxes
from hrm_spawn.envs.sandbox_hygiene import ID_VAR, owner_record

SECRETS = ("OPENAI_API_KEY", "SWEREX_TOKEN", "AWS_SECRET_ACCESS_KEY")


def _tag() -> str:
    """Digits that make a `sleep` command line unique to this test (sleep takes fractional seconds)."""
    return str(random.randrange(10**8, 10**9))


def _alive(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split() if int(pid) != os.getpid()]


def _wait_for(check, what: str, limit_s: float = 10.0) -> None:
    """Poll ``check`` (processes appear and vanish asynchronously); fail naming ``what``."""
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting for: {what}")
        time.sleep(0.05)


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (killed, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(") ", 1)[1].startswith("Z")


# -- a dead shell or deployment ----------------------------------------------------------------------


@pytest.mark.parametrize("fatal", ["exit", "kill -9 $$"])
def test_a_command_that_kills_the_shell_raises_sandbox_died_and_the_next_job_works(
    sandbox, fixture_task, fix, fatal
):
    old_shell = int(sandbox.run("echo $$").output)
    sandbox.write_file("calc/compare.py", "broken = True\n")  # the dying job's leftovers
    with pytest.raises(SandboxDiedError) as info:
        sandbox.run(fatal)
    assert is_infrastructure_failure(info.value)
    # Restarted and prepared again before the error was raised: the next job finds the same task, clean.
    assert sandbox.task is not None and sandbox.task.instance_id == fixture_task.instance_id
    assert int(sandbox.run("echo $$").output) != old_shell
    sandbox.reset()
    assert sandbox.diff() == ""
    assert sandbox.evaluate(fix).resolved


def test_a_shell_killed_from_outside_fails_one_call_then_works(sandbox):
    shell = int(sandbox.run("echo $$").output)
    os.kill(shell, signal.SIGKILL)
    _wait_for(lambda: _pid_gone(shell), "the killed shell to exit")
    with pytest.raises(SandboxDiedError):
        sandbox.run("echo hello")
    assert sandbox.run("echo hello").output == "hello"
    assert sandbox.run("git status --porcelain").output == ""


def test_a_stopped_deployment_is_restarted(sandbox, fixture_task):
    sandbox._loop.run_until_complete(sandbox._deployment.stop())  # the runtime is gone under the sandbox
    with pytest.raises(SandboxDiedError, match="DeploymentNotStartedError"):
        sandbox.reset()
    assert sandbox.task is not None and sandbox.task.instance_id == fixture_task.instance_id
    assert sandbox.run("echo back").output == "back"


def test_a_dead_shell_during_prepare_is_retried_on_the_next_call(hrm_home, fixture_task):
    with Sandbox() as sb:
        sb.prepare(fixture_task)
        with pytest.raises(SandboxDiedError):
            sb.run("exit")
        sb.prepare(fixture_task)  # prepare on a sandbox that just recovered: still fine
        assert sb.diff() == "" and sb.run("echo ok").output == "ok"


# -- processes ---------------------------------------------------------------------------------------


def _start_strays(sb: Sandbox, tag: str) -> list[str]:
    patterns = [f"sleep 1001.{tag}", f"sleep 1002.{tag}", f"sleep 1003.{tag}"]
    sb.run(
        f"nohup sleep 1001.{tag} >/dev/null 2>&1 &\n"
        f"(sleep 1002.{tag} >/dev/null 2>&1 &)\n"
        f"setsid sleep 1003.{tag} >/dev/null 2>&1 &"
    )
    _wait_for(lambda: all(_alive(p) for p in patterns), "the background processes to start")
    return patterns


def test_reset_and_close_leave_no_process_of_the_session(hrm_home, fixture_task):
    tag = _tag()
    with Sandbox() as sb:
        sb.prepare(fixture_task)
        shell = int(sb.run("echo $$").output)
        patterns = _start_strays(sb, tag)
        sb.reset()
        _wait_for(lambda: not any(_alive(p) for p in patterns), "reset to kill nohup, (cmd &) and setsid")
        assert sb.run("echo $$").output == str(shell)  # the shell itself survives a reset
        patterns = _start_strays(sb, tag)
    _wait_for(lambda: not any(_alive(p) for p in patterns), "close to kill every background process")
    _wait_for(lambda: _pid_gone(shell), "close to end the shell")


def test_a_command_past_its_timeout_is_killed_with_everything_it_started(sandbox):
    tag = _tag()
    patterns = [f"sleep 1004.{tag}", f"sleep 1005.{tag}", f"sleep 1006.{tag}"]
    result = sandbox.run(
        f"setsid sleep 1004.{tag} >/dev/null 2>&1 & nohup sleep 1005.{tag} >/dev/null 2>&1 & sleep 1006.{tag}",
        timeout_s=1.0,
    )
    assert result.timed_out and result.exit_code is None
    _wait_for(lambda: not any(_alive(p) for p in patterns), "the timed-out command's processes to die")
    assert sandbox.run("echo ok").output == "ok"


def test_a_shell_busy_in_a_loop_of_builtins_is_replaced_after_its_timeout(sandbox):
    result = sandbox.run("export KEPT=1; while :; do :; done", timeout_s=1.0)
    assert result.timed_out
    after = sandbox.run("pwd; echo ${KEPT:-gone}")
    assert after.exit_code == 0 and after.output.splitlines() == [sandbox.repo_dir, "gone"]


def test_deadline_cuts_commands_to_the_time_left(sandbox):
    tag = _tag()
    with sandbox.deadline(1.0):
        first = sandbox.run(f"sleep 1007.{tag}", timeout_s=60)
        assert first.timed_out  # cut to the deadline, not the command's own 60 s
        spent = sandbox.run("echo too late")
        assert spent.timed_out and spent.exit_code is None and "budget" in spent.output
        assert sandbox.run_tests().timed_out
    assert not _alive(f"sleep 1007.{tag}")
    assert sandbox.run("echo free").output == "free"


# -- output --------------------------------------------------------------------------------------------


def test_a_20mb_flood_comes_back_cut_to_the_limit(hrm_home, fixture_task):
    with Sandbox(SandboxConfig(output_limit_bytes=100_000)) as sb:
        sb.prepare(fixture_task)
        flood = sb.run("echo FIRST; head -c 20000000 /dev/zero | tr '\\0' x; echo; echo LAST")
        assert flood.exit_code == 0 and flood.truncated
        assert len(flood.output.encode()) <= 100_000 + 100
        assert flood.output.startswith("FIRST\nxxx") and flood.output.endswith("xxx\nLAST")
        assert f"[... {20_000_000 + 12 - 100_000} bytes cut by the sandbox ...]" in flood.output
        small = sb.run("echo small")
        assert small.output == "small" and not small.truncated


def test_output_of_a_timed_out_flood_is_cut_too(hrm_home, fixture_task):
    with Sandbox(SandboxConfig(output_limit_bytes=10_000)) as sb:
        sb.prepare(fixture_task)
        result = sb.run("head -c 5000000 /dev/zero | tr '\\0' y; sleep 300", timeout_s=1.5)
        assert result.timed_out and result.truncated
        assert len(result.output.encode()) <= 10_000 + 100 and "bytes cut" in result.output


def test_an_evaluation_whose_output_was_cut_is_an_infrastructure_failure(hrm_home, fixture_task, fix):
    with Sandbox(SandboxConfig(test_output_limit_bytes=2048)) as sb:
        sb.prepare(fixture_task)
        with pytest.raises(EvaluationError, match="test_output_limit_bytes"):
            sb.evaluate(fix)
        report = sb.run_tests(fixture_task.FAIL_TO_PASS)  # visible tests: the agent's own, just cut
        assert report.status  # the head of the output still names tests


# -- environment -----------------------------------------------------------------------------------------


def test_the_sandbox_sees_no_host_secrets_and_a_scratch_home(hrm_home, fixture_task, monkeypatch):
    for name in SECRETS:
        monkeypatch.setenv(name, f"sekrit-{name}")
    monkeypatch.setenv("HRM_TEST_PASSED_ON", "yes")
    config = SandboxConfig(env={"HRM_EXTRA": "1"}, env_passthrough=["HRM_TEST_PASSED_ON"])
    with Sandbox(config) as sb:
        sb.prepare(fixture_task)
        lines = sb.run("env").output.splitlines()
        names = {line.split("=", 1)[0] for line in lines}
        assert not names & set(SECRETS) and not any("sekrit" in line for line in lines)
        assert {"PATH", "HOME", ID_VAR} <= names
        assert "HRM_EXTRA=1" in lines and "HRM_TEST_PASSED_ON=yes" in lines
        # Also what a detached process inherits, read from /proc rather than from the shell.
        environ = sb.run("setsid cat /proc/self/environ | tr '\\0' '\\n'").output.splitlines()
        assert not any(line.startswith(SECRETS) for line in environ)
        home = sb.run("echo $HOME; touch ~/.probe && echo made").output.splitlines()
        assert home[0].startswith(str(data_dir() / "sandboxes")) and home[1] == "made"
        assert home[0] != os.path.expanduser("~")
        assert sb.run_tests(fixture_task.PASS_TO_PASS[:2]).passed(fixture_task.PASS_TO_PASS[0])


def test_env_names_are_checked():
    with pytest.raises(ValueError, match="not a usable environment variable name"):
        SandboxConfig(env={"BAD NAME": "x"})
    with pytest.raises(ValueError, match=ID_VAR):
        SandboxConfig(env_passthrough=[ID_VAR])


def test_the_clean_shell_keeps_swerex_prompt():
    from swerex.runtime.abstract import CreateBashSessionRequest
    from swerex.runtime.local import BashSession

    assert BashSession(CreateBashSessionRequest())._ps1 == SWEREX_PS1


# -- stale sandbox folders ---------------------------------------------------------------------------------

_DYING_WORKER = textwrap.dedent(
    """
    import os, sys, warnings
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    warnings.simplefilter("ignore")
    from fixtures.fixture_repo import make_fixture_task
    from hrm_spawn.envs.repos import RepoEnv
    from hrm_spawn.envs.sandbox import Sandbox

    task = make_fixture_task(RepoEnv.load(sys.argv[2], Path(sys.argv[3])))
    sb = Sandbox()
    sb.prepare(task)
    sb.run("nohup sleep 1010." + sys.argv[4] + " >/dev/null 2>&1 &")
    print(sb.id, flush=True)
    os.kill(os.getpid(), 9)  # the OOM killer: no close(), no atexit
    """
)


@pytest.mark.slow
def test_the_folder_of_a_killed_worker_is_cleaned(hrm_home, fixture_repo):
    tag = _tag()
    tests_dir = str(Path(__file__).resolve().parents[1])
    worker = subprocess.run(
        [sys.executable, "-c", _DYING_WORKER, tests_dir, fixture_repo.name, str(data_dir() / "repos"), tag],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == -signal.SIGKILL, worker.stderr[-2000:]
    folder = data_dir() / "sandboxes" / worker.stdout.split()[-1]
    assert (folder / "owner.json").exists() and _alive(f"sleep 1010.{tag}")
    with Sandbox() as live:  # a live sandbox next to it is kept
        live.prepare_clean(fixture_repo.name)
        assert clean_stale_sandboxes() == 1
        assert not folder.exists() and (data_dir() / "sandboxes" / live.id).exists()
    _wait_for(lambda: not _alive(f"sleep 1010.{tag}"), "the dead worker's background process to be killed")


def test_clean_stale_sandboxes_judges_each_owner(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    owners = {
        "dead": {"host": host, "pid": dead.pid, "start": None},
        "alive": owner_record(),
        "other-host": {"host": f"not-{host}", "pid": dead.pid, "start": None},
        "pid-reused": {**owner_record(), "start": -1},
        "garbled": None,
    }
    for name, owner in owners.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "owner.json").write_text("{not json" if owner is None else json.dumps(owner))
    (tmp_path / "unowned-new").mkdir()
    (tmp_path / "unowned-old").mkdir()
    two_hours_ago = time.time() - 7200
    os.utime(tmp_path / "unowned-old", (two_hours_ago, two_hours_ago))
    (tmp_path / "a-file").write_text("not a folder")
    marked = subprocess.Popen(["sleep", "300"], env={**os.environ, ID_VAR: "dead"})
    try:
        assert clean_stale_sandboxes(tmp_path) == 3
        assert marked.wait(timeout=10) == -signal.SIGKILL
    finally:
        marked.kill()
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"alive", "other-host", "unowned-new", "garbled", "a-file"}
    assert clean_stale_sandboxes(tmp_path / "missing") == 0
