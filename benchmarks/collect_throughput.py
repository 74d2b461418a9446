"""Collect throughput: agent runs (each with its hidden evaluation) stored per minute, 2 worker processes.

``hrm-spawn collect``'s engine on the ``calc`` fixture task (built in a temporary HRM_SPAWN_HOME) with
four built-in agents x 2 seeds, no delegation, into a fresh store. Higher is better; the goal is what
2 workers should reach when each run takes about 12 s of sandbox time here (~8 runs/min).
Writes collect_runs_per_min_2_workers.json into the bench output folder (_results.results_dir()).
"""

from __future__ import annotations

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
SEEDS = 2


def main() -> None:
    warnings.simplefilter("ignore", RuntimeWarning)
    os.environ["HRM_SPAWN_HOME"] = tempfile.mkdtemp(prefix="hrm-bench-collect-")
    from fixtures.fixture_repo import build_fixture_repo, make_fixture_task

    from hrm_spawn.envs.collect import collect
    from hrm_spawn.envs.store import OutcomeStore

    task = make_fixture_task(build_fixture_repo())
    store = OutcomeStore(Path(os.environ["HRM_SPAWN_HOME"]) / "collect.sqlite")
    start = time.perf_counter()
    counts = collect([task], AGENTS, store, workers=2, seeds=SEEDS, depth=0, progress=False)
    wall = time.perf_counter() - start
    agent_s = sum(
        o.result.cost.sandbox_s + o.evaluation.duration_s for _, o in store.iter_task(task.instance_id)
    )
    write_result(
        "collect_runs_per_min_2_workers",
        counts.ran / wall * 60,
        "runs/min",
        8.0,
        True,
        {
            "task": task.instance_id,
            "test_run_s": task.test_run_s,
            "agents": AGENTS,
            "seeds": SEEDS,
            "runs": counts.ran,
            "failed": counts.failed,
            "wall_s": round(wall, 2),
            "sandbox_s_per_run": round(agent_s / max(counts.ran, 1), 2),
            "parallel_efficiency": round(agent_s / (2 * wall), 3),
            "measure": "collect(workers=2) from a fresh store, including worker start-up; a run = agent + hidden evaluation",
        },
    )


if __name__ == "__main__":
    main()
