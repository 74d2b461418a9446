"""collect under injected faults: each test breaks something for real, then reads the store.

Faults: a shell killed inside the sandbox, a worker process killed with SIGKILL, an LLM endpoint that is
down, a hidden evaluation that times out, an agent that crashes on its own, a lease held by a collector
that died. The agents note every call in ``$HRM_TEST_MARKS`` so the tests count the runs that happened.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hrm_spawn.envs.agents.llm import LLMAgent
from hrm_spawn.envs.collect import LeasePolicy, collect, resolve_agents
from hrm_spawn.envs.results import AgentResult, Cost
from hrm_spawn.envs.sandbox import SandboxConfig
from hrm_spawn.envs.store import OutcomeStore

HERE = "test_collect_faults"


def mark(name: str) -> int:
    """Note one call of ``name``; returns how many calls there have been, this one included."""
    path = Path(os.environ["HRM_TEST_MARKS"]) / name
    with path.open("a") as f:
        f.write(f"{os.getpid()}\n")
    return len(path.read_text().splitlines())


def calls(name: str) -> int:
    path = Path(os.environ["HRM_TEST_MARKS"]) / name
    return len(path.read_text().splitlines()) if path.exists() else 0


class _Agent:
    version = "1"
    fault = ""

    def run(self, sandbox, task, start_patch, budget, seed):
        n = mark(f"{type(self).__name__}-{seed}")
        if self.fault and (n == 1 or self.fault.endswith("always")):
            self.inject(sandbox)
        sandbox.run(f"echo '# {type(self).__name__} seed {seed}' >> calc/compare.py")
        return AgentResult(patch=sandbox.diff(), status="ok", cost=Cost(sandbox_s=0.1), visible_pass_rate=0.0)

    def inject(self, sandbox) -> None:
        if self.fault.startswith("shell"):
            sandbox.run("kill -9 $$")  # the sandbox's own bash session dies under the agent
        elif self.fault.startswith("worker"):
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
        elif self.fault.startswith("crash"):
            raise ValueError("the agent's own bug")


class Comment(_Agent):
    name = "comment"


class ShellKillOnce(_Agent):
    name = "shell-once"
    fault = "shell-once"


class ShellKillAlways(_Agent):
    name = "shell-always"
    fault = "shell-always"


class WorkerKillOnce(_Agent):
    name = "worker-once"
    fault = "worker-once"


class WorkerKillAlways(_Agent):
    name = "worker-always"
    fault = "worker-always"


class Crash(_Agent):
    name = "crash"
    fault = "crash-always"


def outcomes(store: OutcomeStore, task_id: str) -> dict[str, Any]:
    return {key.agent.split(":")[-1]: outcome for key, outcome in store.iter_task(task_id)}


def failures(store: OutcomeStore) -> dict[str, Any]:
    return {f.key.agent.split(":")[-1]: f for f in store.failed_jobs()}


@pytest.mark.slow
@pytest.mark.timeout(900)  # a hang fails the test instead of stalling CI
def test_dead_shell_is_retried_once_on_a_fresh_sandbox(fixture_task, marks, tmp_path):
    store = OutcomeStore(tmp_path / "s.sqlite")
    agents = [f"{HERE}:ShellKillOnce", f"{HERE}:ShellKillAlways"]
    counts = collect([fixture_task], agents, store, workers=1, seeds=1, depth=0, progress=False)
    stored, failed = outcomes(store, fixture_task.instance_id), failures(store)
    # killed once: the worker recovered its sandbox and ran the job again; the second run is the outcome
    assert calls("ShellKillOnce-0") == 2 and set(stored) == {"ShellKillOnce"}
    assert stored["ShellKillOnce"].result.status == "ok" and stored["ShellKillOnce"].evaluation.applied
    # killed every time: tried twice, then a failed job, never an outcome
    assert calls("ShellKillAlways-0") == 2 and set(failed) == {"ShellKillAlways"}
    assert (failed["ShellKillAlways"].kind, failed["ShellKillAlways"].attempts) == ("sandbox_died", 2)
    assert counts.summary()["failed_by_kind"] == {"sandbox_died": 1} and counts.ran == 1
    assert store.leases() == []


@pytest.mark.slow
@pytest.mark.timeout(900)  # a hang fails the test instead of stalling CI
def test_a_worker_killed_mid_job_never_hangs_collect(fixture_task, marks, tmp_path):
    store = OutcomeStore(tmp_path / "s.sqlite")
    agents = [f"{HERE}:WorkerKillOnce", f"{HERE}:WorkerKillAlways", f"{HERE}:Comment"]
    counts = collect([fixture_task], agents, store, workers=2, seeds=1, depth=0, progress=False)
    stored, failed = outcomes(store, fixture_task.instance_id), failures(store)
    assert calls("WorkerKillOnce-0") == 2 and calls("WorkerKillAlways-0") == 2  # each ran again elsewhere
    assert set(stored) == {"WorkerKillOnce", "Comment"} and set(failed) == {"WorkerKillAlways"}
    assert (failed["WorkerKillAlways"].kind, failed["WorkerKillAlways"].attempts) == ("worker_died", 2)
    assert "SIGKILL" in failed["WorkerKillAlways"].reason
    assert counts.retried == 2 and counts.failed == 1 and counts.ran == 2
    # a resume runs the failed job again (and only it); its attempts add up
    again = collect([fixture_task], agents, store, workers=1, seeds=1, depth=0, progress=False)
    assert again.to_dict() == {"jobs": 3, "skipped": 2, "ran": 0, "failed": 1}
    assert failures(store)["WorkerKillAlways"].attempts == 4 and len(store) == 2


@pytest.mark.slow
def test_an_agent_crash_is_an_outcome_and_retry_errors_runs_it_again(fixture_task, marks, tmp_path):
    store = OutcomeStore(tmp_path / "s.sqlite")
    counts = collect([fixture_task], [f"{HERE}:Crash"], store, workers=1, seeds=1, depth=0, progress=False)
    (outcome,) = outcomes(store, fixture_task.instance_id).values()
    assert outcome.result.status == "error" and "the agent's own bug" in outcome.result.reason
    assert counts.failed == 0 and counts.summary()["agent_errors"] == 1 and store.failed_jobs() == []
    first = outcome.created_at
    skipped = collect([fixture_task], [f"{HERE}:Crash"], store, workers=1, seeds=1, depth=0, progress=False)
    assert skipped.skipped == 1 and calls("Crash-0") == 1  # a plain resume keeps an agent's own outcome
    retried = collect(
        [fixture_task],
        [f"{HERE}:Crash"],
        store,
        workers=1,
        seeds=1,
        depth=0,
        progress=False,
        retry_errors=True,
    )
    assert retried.ran == 1 and calls("Crash-0") == 2 and len(store) == 1
    (again,) = outcomes(store, fixture_task.instance_id).values()
    assert again.created_at > first


def test_an_evaluation_that_times_out_is_a_failed_job(fixture_task, marks, tmp_path):
    store = OutcomeStore(tmp_path / "s.sqlite")
    # pytest cannot even start in 0.05 s: the hidden run is killed by its timeout
    config = SandboxConfig(test_timeout_s=0.05)
    counts = collect(
        [fixture_task],
        [f"{HERE}:Comment"],
        store,
        workers=1,
        seeds=1,
        depth=0,
        progress=False,
        sandbox_config=config,
    )
    assert len(store) == 0 and counts.failed == 1
    (failed,) = store.failed_jobs()
    assert failed.kind == "evaluation" and "timed out" in failed.reason and failed.attempts == 1


# -- the LLM agent with its endpoint down, then up -------------------------------------------------------


class EndpointLLM(LLMAgent):
    """The real LLM agent, pointed at ``$HRM_TEST_LLM_URL``."""

    name = "llm-test"

    def __init__(self) -> None:
        super().__init__(
            base_url=os.environ["HRM_TEST_LLM_URL"], max_retries=0, request_timeout_s=20, visible_check=False
        )


# mini-swe-agent's way of handing in: one bash block that echoes the submit marker
SUBMIT_REPLY = "Done.\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"


class _Submit(BaseHTTPRequestHandler):
    """A chat-completions endpoint whose every reply is SUBMIT (the agent hands in an empty candidate)."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        reply = {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": SUBMIT_REPLY},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Submit)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.mark.slow
def test_endpoint_down_is_a_failed_job_and_a_resume_runs_it(
    fixture_task, marks, tmp_path, monkeypatch, endpoint
):
    from hrm_spawn.trainers.cli import main

    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(fixture_task.model_dump_json() + "\n")
    store_path = tmp_path / "s.sqlite"
    argv = ["collect", "--tasks", str(tasks), "--agents", f"{HERE}:EndpointLLM", "--store", str(store_path)]
    # the fixture's replies are known, so running the LLM agent on this host is opted into explicitly
    argv += ["--workers", "1", "seeds_per_agent=1", "collect_depth=0", "sandbox.allow_host_execution=true"]
    monkeypatch.setenv("HRM_TEST_LLM_URL", f"http://127.0.0.1:{_closed_port()}/v1")
    assert main(argv) == 1  # a failed job: non-zero
    store = OutcomeStore(store_path)
    assert len(store) == 0  # the outage taught the store nothing
    (failed,) = store.failed_jobs()
    assert failed.kind == "endpoint" and failed.attempts == 1
    monkeypatch.setenv("HRM_TEST_LLM_URL", f"http://127.0.0.1:{endpoint.server_address[1]}/v1")
    assert main(argv) == 0  # the endpoint is back: the resume runs the job
    (outcome,) = (o for _, o in store.iter_task(fixture_task.instance_id))
    assert outcome.result.status == "ok" and outcome.result.cost.tokens_in > 0
    assert store.failed_jobs() == [] and store.leases() == []


# -- leases ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(900)  # a hang fails the test instead of stalling CI
def test_the_lease_of_a_dead_collector_expires_and_the_job_runs(fixture_task, marks, tmp_path):
    store = OutcomeStore(tmp_path / "s.sqlite")
    (slot,) = resolve_agents([f"{HERE}:Comment"])
    from hrm_spawn.envs.collect import job_key

    key = job_key(fixture_task.instance_id, slot, 0, "")
    assert store.try_lease(key, "ghost:1:dead", ttl_s=3.0)  # a collector that died right after leasing
    expiry = store.lease(key).expires_at
    counts = collect(
        [fixture_task],
        [slot],
        store,
        workers=1,
        seeds=1,
        depth=0,
        progress=False,
        leases=LeasePolicy(ttl_s=10.0, heartbeat_s=1.0, poll_s=0.2),
    )
    assert counts.ran == 1 and calls("Comment-0") == 1
    assert store.get(key).created_at >= expiry  # run only once the ghost's lease had ended
    assert store.leases() == []


TWO_SCRIPT = """
import json, sys
sys.path[:0] = {paths!r}
from hrm_spawn.envs.collect import collect
from hrm_spawn.envs.store import OutcomeStore
from hrm_spawn.envs.tasks import TaskInstance

if __name__ == "__main__":
    task = TaskInstance.model_validate_json(open({task!r}).read())
    counts = collect([task], [{agent!r}], OutcomeStore({store!r}), workers=1, seeds={seeds}, depth=0,
                     progress=False)
    print(json.dumps(counts.to_dict()))
"""


@pytest.mark.slow
@pytest.mark.timeout(900)  # a hang fails the test instead of stalling CI
def test_two_collectors_on_one_store_run_every_job_exactly_once(fixture_task, marks, tmp_path):
    import subprocess
    import sys

    seeds = 6
    task_file = tmp_path / "task.json"
    task_file.write_text(fixture_task.model_dump_json())
    script = tmp_path / "collector.py"
    paths = [str(Path(__file__).parent), str(Path(__file__).parents[1])]
    store_path = tmp_path / "s.sqlite"
    script.write_text(
        TWO_SCRIPT.format(
            paths=paths, task=str(task_file), agent=f"{HERE}:Comment", store=str(store_path), seeds=seeds
        )
    )
    OutcomeStore(store_path).close()  # both collectors open an existing store
    procs = [
        subprocess.Popen(
            [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
        )
        for _ in range(2)
    ]
    reports = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert [calls(f"Comment-{seed}") for seed in range(seeds)] == [1] * seeds  # no job ran twice
    store = OutcomeStore(store_path)
    assert (
        sorted(k.seed for k in store.keys(fixture_task.instance_id)) == list(range(seeds))
        and store.failed_jobs() == []
    )
    assert sum(r["ran"] for r in reports) == seeds and all(r["ran"] + r["skipped"] == seeds for r in reports)
    assert store.leases() == []


def test_a_collector_starts_by_removing_stale_sandboxes(fixture_task, marks, tmp_path, hrm_home):
    from hrm_spawn.envs import sandbox

    if not hasattr(sandbox, "clean_stale_sandboxes"):
        pytest.skip("envs/sandbox.py has no clean_stale_sandboxes yet (the sandbox work of issue 16)")
    stale = hrm_home / "sandboxes" / "fixture__calc.0.1-deadbeef"  # left by a worker killed long ago
    (stale / "repo").mkdir(parents=True)
    (stale / "repo" / "x.py").write_text("left behind\n")
    old = time.time() - 3 * 3600
    for path in (stale / "repo" / "x.py", stale / "repo", stale):
        os.utime(path, (old, old))
    store = OutcomeStore(tmp_path / "s.sqlite")
    counts = collect([fixture_task], [f"{HERE}:Comment"], store, workers=1, seeds=1, depth=0, progress=False)
    assert not stale.exists()
    assert counts.ran == 1 and len(store) == 1 and store.failed_jobs() == []
