"""Ray backend against the local pool: agent runs per minute on the same jobs, and on a two-node cluster.

The jobs are ``collect_throughput``'s: the ``calc`` fixture task (built in a temporary HRM_SPAWN_HOME),
four built-in agents x 2 seeds, no delegation, each configuration into its own fresh store, 2 workers:

- ``pool``: the local process pool (``--backend local``);
- ``ray``: a local Ray started for the collect (``--backend ray``);
- ``two_nodes``: a Ray head and a worker node on loopback, one CPU each (``--backend ray --address``).

Runs per minute count the collect loop with its workers already started (the figure a long collection
sees); each executor's start-up is in the meta beside it. Writes ``collect_ray_vs_pool_ratio`` (Ray's
wall over the pool's on the same jobs; lower is better, goal <= 1.15) and
``collect_runs_per_min_two_nodes`` (with the one-node figures beside it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from _results import write_result  # noqa: E402

AGENTS = ["op-flip", "cond", "const", "swap"]
WORKERS = 2


def measure(name: str, task, seeds: int, backend: str, address: str | None = None) -> dict:
    """One configuration: start the executor, collect every job into a fresh store, stop it."""
    from hrm_spawn.envs.collect import collect, make_executor, resolve_agents, runner_spec
    from hrm_spawn.envs.sandbox import SandboxConfig
    from hrm_spawn.envs.store import OutcomeStore

    store = OutcomeStore(Path(os.environ["HRM_SPAWN_HOME"]) / f"{name}.sqlite")
    slots = resolve_agents(AGENTS)
    start = time.perf_counter()
    executor = make_executor(backend, WORKERS, runner_spec(store, slots, SandboxConfig()), address)
    started = time.perf_counter()
    with executor:
        counts = collect([task], slots, store, seeds=seeds, depth=0, progress=False, executor=executor)
        wall = time.perf_counter() - started
    if counts.failed or counts.ran != len(AGENTS) * seeds:
        raise RuntimeError(f"{name}: {counts.summary()} {counts.errors[:2]}")
    return {
        "runs": counts.ran,
        "wall_s": round(wall, 2),
        "startup_s": round(started - start, 2),
        "runs_per_min": round(counts.ran / wall * 60, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="seeds per agent (runs = 4 agents x seeds)")
    parser.add_argument("--no-two-nodes", action="store_true", help="skip the two-node cluster")
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    os.environ["HRM_SPAWN_HOME"] = tempfile.mkdtemp(prefix="hrm-bench-ray-")
    from fixtures.fixture_repo import build_fixture_repo, make_fixture_task
    from fixtures.ray_cluster import cluster_env, loopback_cluster

    # one auth mode for the local Ray and the cluster, set before ray is imported (it reads it then)
    os.environ.update({k: v for k, v in cluster_env().items() if k.startswith("RAY_")})

    task = make_fixture_task(build_fixture_repo())
    measure("warmup", task, 1, "local")  # the first sandbox of a data dir pays one-time costs
    figures = {
        "pool": measure("pool", task, args.seeds, "local"),
        "ray": measure("ray", task, args.seeds, "ray"),
    }
    common = {"task": task.instance_id, "agents": AGENTS, "seeds": args.seeds, "workers": WORKERS}
    write_result(
        "collect_ray_vs_pool_ratio",
        figures["ray"]["wall_s"] / figures["pool"]["wall_s"],
        "x (Ray wall / pool wall)",
        1.15,
        False,
        {
            **common,
            **figures,
            "end_to_end_ratio": round(
                (figures["ray"]["wall_s"] + figures["ray"]["startup_s"])
                / (figures["pool"]["wall_s"] + figures["pool"]["startup_s"]),
                3,
            ),
            "measure": "collect loop wall, workers started; same 4 agents x seeds jobs on the fixture task",
        },
    )
    if args.no_two_nodes:
        return
    with loopback_cluster(nodes=2, cpus_per_node=1) as address:
        figures["two_nodes"] = measure("two_nodes", task, args.seeds, "ray", address)
    write_result(
        "collect_runs_per_min_two_nodes",
        figures["two_nodes"]["runs_per_min"],
        "runs/min",
        None,
        True,
        {
            **common,
            **figures,
            "one_node_ray_runs_per_min": figures["ray"]["runs_per_min"],
            "one_node_pool_runs_per_min": figures["pool"]["runs_per_min"],
            "measure": "two Ray nodes of 1 CPU on loopback (one machine), one actor each; beside it one node",
        },
    )


if __name__ == "__main__":
    main()
