"""Live step overhead: SpawnEnv step wall time ÷ the sandbox time the step needs (goal 1.10).

Live mode on the ``calc`` fixture task (built in a temporary HRM_SPAWN_HOME): each spawn step runs a
built-in agent in the local sandbox, then judges its candidate on the hidden tests. The value divides
the step's wall time by the sandbox seconds the step cannot avoid: the agent's own measured sandbox
time plus the hidden evaluation's. Meta also gives the ratio against the agent's time alone.
Writes live_step_overhead_ratio.json into the bench output folder (_results.results_dir()).
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


def main() -> None:
    warnings.simplefilter("ignore", RuntimeWarning)  # the host-execution warning: our own fixture repo
    os.environ["HRM_SPAWN_HOME"] = tempfile.mkdtemp(prefix="hrm-bench-live-")
    from fixtures.fixture_repo import build_fixture_repo, make_fixture_task

    from hrm_spawn.envs.spawn_env import EnvConfig, SpawnEnv

    task = make_fixture_task(build_fixture_repo())
    config = EnvConfig(
        agents=AGENTS,
        mode="live",
        seeds_per_agent=1,
        max_steps=len(AGENTS) + 1,
        max_cost=1e6,
        store=str(Path(os.environ["HRM_SPAWN_HOME"]) / "live.sqlite"),
    )
    env = SpawnEnv(config, tasks=[task])
    env.reset(seed=0)
    env._sandbox_get().prepare(task)  # preparing the task is once per task, not per step
    rows = []
    for k in range(len(AGENTS)):
        start = time.perf_counter()
        env.step(env.layout.spawn(k))
        wall = time.perf_counter() - start
        outcome = env.store.get(
            next(
                iter(
                    sorted(
                        (key for key in env.store.keys(task.instance_id) if key.agent == AGENTS[k]), key=str
                    )
                )
            )
        )
        rows.append((wall, outcome.result.cost.sandbox_s, outcome.evaluation.duration_s))
    env.close()
    wall = sum(r[0] for r in rows)
    agent_s = sum(r[1] for r in rows)
    eval_s = sum(r[2] for r in rows)
    write_result(
        "live_step_overhead_ratio",
        wall / (agent_s + eval_s),
        "ratio",
        1.10,
        False,
        {
            "task": task.instance_id,
            "test_run_s": task.test_run_s,
            "deployment": "local",
            "agents": AGENTS,
            "steps": len(rows),
            "step_wall_s": round(wall, 3),
            "agent_sandbox_s": round(agent_s, 3),
            "hidden_evaluation_s": round(eval_s, 3),
            "ratio_vs_agent_sandbox_only": round(wall / agent_s, 3),
            "measure": "sum of live SpawnEnv.step wall times / (agent cost.sandbox_s + hidden evaluation duration_s)",
        },
    )


if __name__ == "__main__":
    main()
