"""A custom spawn environment: another task source and another agent set (used by docs/custom-envs.md).

``ToyTasksEnv`` generates its tasks in memory and fills a small outcome store with made-up runs of
three agents (``quick``, ``careful``, ``thorough``), then serves them through SpawnEnv's replay mode.
It needs no repository and no sandbox; ``hrm-spawn env check tests/envs/custom_env_example.py:ToyTasksEnv``
passes, and ``hrm-spawn train``/``eval`` take it as ``env_id`` (docs/custom-envs.md): it keeps SpawnEnv's
spaces and masks, takes any EnvConfig field as a keyword (the trainers pass theirs, and those win over
the toy's own settings), and SpawnEnv splits its in-memory tasks as the config says.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from hrm_spawn.envs.results import AgentResult, Cost, Evaluation
from hrm_spawn.envs.spawn_env import EnvConfig, SpawnEnv
from hrm_spawn.envs.store import Outcome, OutcomeKey, OutcomeStore, patch_sha
from hrm_spawn.envs.tasks import TaskInstance

TOY_AGENTS = ["quick@1", "careful@1", "thorough@1"]
# The toy's own settings; keyword arguments given to ToyTasksEnv win over them.
TOY_SETTINGS = {
    "agents": TOY_AGENTS,
    "mode": "replay",
    "seq_len": 256,
    "max_steps": 6,
    "max_cost": 20.0,
    "lam": (0.0, 0.05),
}


def toy_patch(n: int) -> str:
    return f"--- a/toy.py\n+++ b/toy.py\n@@ -1 +1 @@\n-x = {n}\n+x = {n + 1}\n"


def toy_tasks(count: int) -> list[TaskInstance]:
    return [
        TaskInstance(
            instance_id=f"toy-{i}",
            repo="toy__repo.1",
            patch=toy_patch(1000 + i),
            FAIL_TO_PASS=[f"tests/test_toy.py::test_{i}"],
            PASS_TO_PASS=["tests/test_toy.py::test_ok"],
            image_name="",
            problem_statement=f"toy bug number {i}",
            entity=f"toy.py::bug_{i}",  # one function per bug: the split keeps each on one side
            test_run_s=2.0,
        )
        for i in range(count)
    ]


def _outcome(rng: np.random.Generator, agent: int, patch_pool: list[str]) -> Outcome:
    empty = rng.random() < 0.15
    patch = "" if empty else patch_pool[int(rng.integers(len(patch_pool)))]
    # stronger agents cost more and find better patches more often
    visible = 0.0 if empty else float(rng.choice([0.25, 0.5, 0.75, 1.0], p=_PROBS[agent]))
    f2p = 0 if empty else int(round(visible * 4 - rng.integers(0, 2) * (visible < 1)))
    f2p = max(0, min(4, f2p))
    result = AgentResult(
        patch=patch,
        status="ok" if rng.random() > 0.1 else "budget_exhausted",
        cost=Cost(sandbox_s=float(rng.uniform(1, 4) * (agent + 1))),
        visible_pass_rate=visible,
    )
    return Outcome(result, Evaluation(f2p_passed=f2p, f2p_total=4, p2p_passed=2, p2p_total=2))


_PROBS = [[0.5, 0.3, 0.15, 0.05], [0.3, 0.3, 0.25, 0.15], [0.1, 0.2, 0.3, 0.4]]


def fill_toy_store(
    store: OutcomeStore,
    tasks: list[TaskInstance],
    agents: list[str],
    seeds: int = 2,
    delegate_seeds: int = 1,
    seed: int = 0,
    drop: float = 0.0,
) -> None:
    """Spawn outcomes for every (agent, seed) and delegation outcomes for every candidate.

    ``drop`` leaves out that fraction of delegation outcomes, to exercise masks and replay misses.
    """
    rng = np.random.default_rng(seed)
    for task in tasks:
        pool = [toy_patch(int(rng.integers(1_000_000))) for _ in range(3)]
        candidates: set[str] = set()
        for k, entry in enumerate(agents):
            name, _, version = entry.partition("@")
            for s in range(seeds):
                outcome = _outcome(rng, k % 3, pool)
                store.put(OutcomeKey(task.instance_id, name, version, s, "clean"), outcome)
                if outcome.result.patch:
                    candidates.add(outcome.result.patch)
        for _round in range(2):  # delegation outcomes for candidates and for what they produce
            new: set[str] = set()
            for patch in sorted(candidates):
                for k, entry in enumerate(agents):
                    name, _, version = entry.partition("@")
                    for s in range(delegate_seeds):
                        if rng.random() < drop:
                            continue
                        key = OutcomeKey(task.instance_id, name, version, s, patch_sha(patch))
                        if store.contains(key):
                            continue
                        outcome = _outcome(rng, k % 3, pool + [patch])
                        store.put(key, outcome)
                        if outcome.result.patch:
                            new.add(outcome.result.patch)
            candidates = new


class ToyTasksEnv(SpawnEnv):
    """Toy tasks and toy agents in replay mode; ``store`` defaults to a fresh temporary file."""

    def __init__(self, num_tasks: int = 4, store: str | Path | None = None, **settings):
        cfg = EnvConfig(**{**TOY_SETTINGS, **settings})
        tasks = toy_tasks(num_tasks)
        if store is None:
            store = Path(tempfile.mkdtemp(prefix="toy-store-")) / "outcomes.sqlite"
        outcomes = OutcomeStore(store)
        if not len(outcomes):
            fill_toy_store(outcomes, tasks, cfg.agents, cfg.seeds_per_agent, cfg.delegate_seeds)
        super().__init__(cfg, tasks=tasks, store=outcomes)
