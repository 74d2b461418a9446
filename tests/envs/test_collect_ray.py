"""collect --backend ray: a local Ray with an actor killed mid-job or hung past its job's limit, and a
two-node cluster on loopback.

The cluster is started by the test (``ray start --head`` and ``ray start --address``, see
tests/fixtures/ray_cluster.py) and stopped by killing exactly its process groups, so no other Ray on the
machine is touched. Nodes get one CPU and a 100 MB object store each, to fit a small shared machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed")

from fixtures.ray_cluster import cluster_env, loopback_cluster  # noqa: E402
from test_collect_faults import calls  # noqa: E402
from test_executors import HANG_S, marked  # noqa: E402

from hrm_spawn.envs.collect import collect, resolve_agents, runner_spec  # noqa: E402
from hrm_spawn.envs.executors import WORKER_HUNG  # noqa: E402
from hrm_spawn.envs.ray_backend import RayExecutor  # noqa: E402
from hrm_spawn.envs.sandbox import SandboxConfig  # noqa: E402
from hrm_spawn.envs.store import OutcomeStore  # noqa: E402

HERE = "test_collect_faults"
# Far above one job of the fixture task on a loaded machine (seconds), far below the hang (HANG_S).
HUNG_LIMIT_S = 15.0


@pytest.fixture(autouse=True)
def _quiet_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")
    # a local ray.init turns token auth on in os.environ (Ray's default); undone when the test ends
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)


@pytest.mark.slow
@pytest.mark.timeout(900)  # a hang fails the test instead of stalling CI
def test_ray_backend_retries_a_dead_actors_job_elsewhere(fixture_task, marks, tmp_path):  # noqa: F811
    store = OutcomeStore(tmp_path / "s.sqlite")
    agents = [f"{HERE}:WorkerKillOnce", f"{HERE}:Comment"]
    counts = collect(
        [fixture_task], agents, store, workers=2, seeds=1, depth=0, progress=False, backend="ray"
    )
    stored = {k.agent.split(":")[-1]: o for k, o in store.iter_task(fixture_task.instance_id)}
    assert set(stored) == {"WorkerKillOnce", "Comment"}  # the killed actor's job ran on a fresh one
    assert all(o.result.status == "ok" and o.evaluation.applied for o in stored.values())
    assert calls("WorkerKillOnce-0") == 2 and calls("Comment-0") == 1
    assert counts.retried == 1 and counts.ran == 2 and counts.failed == 0
    assert store.failed_jobs() == [] and store.leases() == []


@pytest.mark.slow
@pytest.mark.timeout(300)  # without the limit the collect would wait HANG_S: a hang fails the test
def test_ray_backend_kills_a_hung_actor_and_its_job_is_a_failed_job(fixture_task, marks, tmp_path):  # noqa: F811
    """The local pool's hung-worker test (test_executors.py) on Ray, with a limit of seconds."""
    store = OutcomeStore(tmp_path / "s.sqlite")
    slots = resolve_agents(["test_executors:Hang", f"{HERE}:Comment"], None)
    spec = dataclasses.replace(runner_spec(store, slots, SandboxConfig()), job_limit_s=HUNG_LIMIT_S)
    with RayExecutor(2, spec) as pool:
        start = time.monotonic()
        counts = collect([fixture_task], slots, store, seeds=1, depth=0, progress=False, executor=pool)
        took = time.monotonic() - start
        (hung_pid,) = marked("Hang")  # run once: a hung job is not retried
        assert _gone(hung_pid, within_s=30.0)  # the killed actor's process, while Ray still runs
        # a fresh actor took the killed one's place: two jobs at once (seeds 1 and 2) still fit
        again = collect([fixture_task], slots[1:], store, seeds=3, depth=0, progress=False, executor=pool)
    assert took < HANG_S / 4  # collect returned long before the agent would have
    outcomes = {(k.agent.split(":")[-1], k.seed): o for k, o in store.iter_task(fixture_task.instance_id)}
    assert set(outcomes) == {("Comment", 0), ("Comment", 1), ("Comment", 2)}
    assert all(o.result.status == "ok" for o in outcomes.values())
    (failed,) = store.failed_jobs()
    assert failed.key.agent.endswith("Hang") and (failed.kind, failed.attempts) == (WORKER_HUNG, 1)
    assert f":{hung_pid} was still running the job after its limit of 15 s" in failed.reason
    assert counts.failed_by_kind == {WORKER_HUNG: 1} and counts.ran == 1 and counts.retried == 0
    assert (again.ran, again.skipped, again.failed) == (2, 1, 0)
    assert [calls(f"Comment-{seed}") for seed in range(3)] == [1, 1, 1]
    assert store.leases() == []


def _gone(pid: int, within_s: float) -> bool:
    """Whether process ``pid`` ends (or is a zombie) within ``within_s``: ``ray.kill`` is asynchronous."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def two_nodes() -> Iterator[str]:
    with loopback_cluster(nodes=2, cpus_per_node=1) as address:
        yield address


@pytest.mark.slow
@pytest.mark.timeout(900)  # a hang fails the test instead of stalling CI
def test_two_node_ray_cluster_collects_into_one_store(fixture_task, marks, tmp_path, two_nodes):  # noqa: F811
    """``hrm-spawn collect --backend ray --address`` on a head and a worker node, then the store."""
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(fixture_task.model_dump_json() + "\n")
    store_path = tmp_path / "s.sqlite"
    argv = ["collect", "--tasks", str(tasks), "--agents", f"{HERE}:Comment", "--store", str(store_path)]
    # two actors of one CPU on two one-CPU nodes: one actor (one sandbox) per node
    argv += [
        "--workers",
        "2",
        "--backend",
        "ray",
        "--address",
        two_nodes,
        "seeds_per_agent=4",
        "collect_depth=0",
    ]
    env = cluster_env()
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    cli = "import sys; from hrm_spawn.trainers.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run(
        [sys.executable, "-c", cli, *argv], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["ran"], summary["failed"], summary["clean"]) == (4, 0, 4)
    store = OutcomeStore(store_path)
    assert sorted(k.seed for k in store.keys(fixture_task.instance_id)) == [0, 1, 2, 3]
    assert [calls(f"Comment-{seed}") for seed in range(4)] == [1, 1, 1, 1]
    for _, outcome in store.iter_task(fixture_task.instance_id):
        assert outcome.result.status == "ok" and outcome.evaluation.p2p_passed == outcome.evaluation.p2p_total
    assert store.failed_jobs() == [] and store.leases() == []
