"""collect --backend ray: a local Ray with an actor killed mid-job, and a two-node cluster on loopback.

The cluster is started by the test (``ray start --head`` and ``ray start --address``, see
tests/fixtures/ray_cluster.py) and stopped by killing exactly its process groups, so no other Ray on the
machine is touched. Nodes get one CPU and a 100 MB object store each, to fit a small shared machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed")

from fixtures.ray_cluster import loopback_cluster  # noqa: E402
from test_collect_faults import calls, marks  # noqa: E402, F401  (the marks fixture)

from hrm_spawn.envs.collect import collect  # noqa: E402
from hrm_spawn.envs.store import OutcomeStore  # noqa: E402

HERE = "test_collect_faults"


@pytest.fixture(autouse=True)
def _quiet_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")
    # token auth, as Ray's own default for a local cluster; set here so it is undone after the test
    monkeypatch.setenv("RAY_AUTH_MODE", "token")


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
    import ray

    store = OutcomeStore(tmp_path / "s.sqlite")
    # two actors of one CPU on two one-CPU nodes: one actor (one sandbox) per node
    counts = collect(
        [fixture_task],
        [f"{HERE}:Comment"],
        store,
        workers=2,
        seeds=4,
        depth=0,
        progress=False,
        backend="ray",
        address=two_nodes,
    )
    assert not ray.is_initialized()  # the collector left the cluster, which still runs
    assert counts.to_dict() == {"jobs": 4, "skipped": 0, "ran": 4, "failed": 0}
    assert sorted(k.seed for k in store.keys(fixture_task.instance_id)) == [0, 1, 2, 3]
    assert [calls(f"Comment-{seed}") for seed in range(4)] == [1, 1, 1, 1]
    for _, outcome in store.iter_task(fixture_task.instance_id):
        assert outcome.result.status == "ok" and outcome.evaluation.p2p_passed == outcome.evaluation.p2p_total
    assert store.failed_jobs() == [] and store.leases() == []
