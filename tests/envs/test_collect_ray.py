"""collect --backend ray: a local Ray with an actor killed mid-job, and a two-node cluster on loopback.

The cluster is started by the test (``ray start --head`` and ``ray start --address`` with ``--block``, each
in its own process group) and stopped by killing exactly those process groups, so no other Ray on the
machine is touched. Nodes get one CPU and a 100 MB object store each, to fit a small shared machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed")

from test_collect_faults import calls, marks  # noqa: E402, F401  (the marks fixture)

from hrm_spawn.envs.collect import collect  # noqa: E402
from hrm_spawn.envs.store import OutcomeStore  # noqa: E402

HERE = "test_collect_faults"
OBJECT_STORE = str(100 * 1024**2)


@pytest.fixture(autouse=True)
def _quiet_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")


@pytest.mark.slow
def test_ray_backend_retries_a_dead_actors_job_elsewhere(fixture_task, marks, tmp_path):  # noqa: F811
    store = OutcomeStore(tmp_path / "s.sqlite")
    agents = [f"{HERE}:WorkerKillOnce", f"{HERE}:WorkerKillAlways", f"{HERE}:Comment"]
    counts = collect(
        [fixture_task], agents, store, workers=2, seeds=1, depth=0, progress=False, backend="ray"
    )
    stored = {k.agent.split(":")[-1]: o for k, o in store.iter_task(fixture_task.instance_id)}
    assert set(stored) == {"WorkerKillOnce", "Comment"}  # the killed actor's job ran on a fresh one
    assert all(o.result.status == "ok" and o.evaluation.applied for o in stored.values())
    (failed,) = store.failed_jobs()
    assert failed.key.agent.endswith("WorkerKillAlways") and (failed.kind, failed.attempts) == (
        "worker_died",
        2,
    )
    assert calls("WorkerKillOnce-0") == 2 and calls("WorkerKillAlways-0") == 2
    assert counts.retried == 2 and counts.ran == 2 and counts.failed == 1 and store.leases() == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args: str, temp_dir: str | None = None) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--block",
        "--node-ip-address",
        "127.0.0.1",
    ]
    command += ["--num-cpus", "1", "--object-store-memory", OBJECT_STORE, "--disable-usage-stats", *args]
    if temp_dir:
        command += ["--temp-dir", temp_dir]
    log = open(Path(tempfile.gettempdir()) / f"hrm-ray-{os.getpid()}-{len(args)}.log", "w")  # noqa: SIM115
    return subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy()
    )


def _stop(proc: subprocess.Popen) -> None:
    """Kill the node: its `ray start --block` process and everything in its process group (its raylet,
    object store and workers; workers that left the group exit when their raylet is gone)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.fixture
def two_nodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # Token auth on both nodes and the collector, as on a real cluster; on one machine they share the
    # token file ~/.ray/auth_token (the head writes it when missing). One mode for all: a process that
    # ran a local Ray before is in token mode for good.
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    temp_dir = tempfile.mkdtemp(prefix="hrmray")  # short: Ray's socket paths live under it
    nodes = [_ray("--head", "--port", str(port), "--include-dashboard", "false", temp_dir=temp_dir)]
    try:
        _wait_for_port(port, nodes)
        nodes.append(_ray("--address", address))
        _wait_for_nodes(address, 2, nodes)
        yield address
    finally:
        for node in reversed(nodes):
            _stop(node)


def _wait_for_port(port: int, nodes: list[subprocess.Popen], timeout_s: float = 90) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert all(n.poll() is None for n in nodes), "the ray head exited while starting"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"the ray head did not listen on 127.0.0.1:{port} within {timeout_s} s")


def _wait_for_nodes(address: str, count: int, nodes: list[subprocess.Popen], timeout_s: float = 90) -> None:
    import ray

    ray.init(address=address, logging_level="ERROR")
    try:
        deadline = time.time() + timeout_s
        while sum(1 for n in ray.nodes() if n["Alive"]) < count:
            assert all(n.poll() is None for n in nodes), "a ray node exited while starting"
            assert time.time() < deadline, f"the ray cluster at {address} did not reach {count} nodes"
            time.sleep(0.5)
    finally:
        ray.shutdown()


@pytest.mark.slow
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
