"""collect --backend ray: a local Ray with an actor killed mid-job, and a two-node cluster on loopback.

The cluster is started by the test (``ray start --head`` and ``ray start --address``, see
tests/fixtures/ray_cluster.py) and stopped by killing exactly its process groups, so no other Ray on the
machine is touched. Nodes get one CPU and a 100 MB object store each, to fit a small shared machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed")

from fixtures.ray_cluster import cluster_env, loopback_cluster  # noqa: E402
from test_collect_faults import calls  # noqa: E402

from hrm_spawn.envs.collect import collect  # noqa: E402
from hrm_spawn.envs.store import OutcomeStore  # noqa: E402

HERE = "test_collect_faults"


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
