"""collect: real worker processes, the local sandbox, resumability, a collector killed with SIGKILL.

``CommentAgent`` is a real (tiny) agent: it appends a comment to the buggy file in the sandbox, so each
seed gives a distinct candidate that does not fix the bug and gets delegated; runs take about a second.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures.comment_run import comment_run

from hrm_spawn.envs.collect import collect
from hrm_spawn.envs.results import AgentResult, Cost
from hrm_spawn.envs.store import OutcomeStore, StoreError, patch_sha

ROOT = Path(__file__).resolve().parents[2]
AGENT = "test_collect:CommentAgent"


class CommentAgent:
    name = "comment"
    version = "1"

    def run(self, sandbox, task, start_patch, budget, seed):
        return comment_run(sandbox, start_patch, f"comment seed {seed} depth {start_patch.count(chr(35))}")


def test_collect_spawns_delegates_and_resumes(fixture_task, tmp_path):
    store = OutcomeStore(tmp_path / "s.sqlite")
    counts = collect([fixture_task], [AGENT], store, workers=1, seeds=1, depth=1, progress=False)
    # spawn seed 0, then its candidate is delegated (round 1)
    assert counts.errors == [] and counts.to_dict() == {"jobs": 2, "skipped": 0, "ran": 2, "failed": 0}
    keys = store.keys(fixture_task.instance_id)
    assert sorted(k.seed for k in keys if k.start_patch_sha == "clean") == [0]
    outcomes = dict(store.iter_task(fixture_task.instance_id))
    starts = {k.start_patch_sha for k in keys} - {"clean"}
    produced = {patch_sha(o.result.patch) for o in outcomes.values()}
    assert len(starts) == 1 and starts < produced  # the delegation continued the spawn's candidate
    for outcome in outcomes.values():  # every candidate was judged on the hidden tests
        ev = outcome.evaluation
        assert ev.applied and ev.f2p_total == len(fixture_task.FAIL_TO_PASS) and ev.f2p_passed == 0
        assert ev.p2p_passed == ev.p2p_total > 0
    again = collect([fixture_task], [AGENT], store, workers=1, seeds=1, depth=1, progress=False)
    assert again.to_dict() == {"jobs": 2, "skipped": 2, "ran": 0, "failed": 0}


class NothingAgent:
    """Finds nothing: every seed submits the empty patch."""

    name = "nothing"
    version = "1"

    def run(self, sandbox, task, start_patch, budget, seed):
        return AgentResult(patch="", status="ok", cost=Cost(sandbox_s=0.1), visible_pass_rate=0.0)


def test_an_identical_candidate_is_judged_once(fixture_task, tmp_path):
    store = OutcomeStore(tmp_path / "s.sqlite")
    counts = collect(
        [fixture_task], ["test_collect:NothingAgent"], store, workers=1, seeds=3, depth=0, progress=False
    )
    assert counts.ran == 3 and counts.errors == []
    evaluations = [o.evaluation for _, o in store.iter_task(fixture_task.instance_id)]
    ran = [e for e in evaluations if e.duration_s > 0]
    assert len(ran) == 1  # seeds 1 and 2 reuse seed 0's judgement of the same (empty) patch
    for e in evaluations:
        assert (e.f2p_passed, e.p2p_passed, e.tests) == (ran[0].f2p_passed, ran[0].p2p_passed, ran[0].tests)


def test_cached_mode_runs_a_miss_in_the_sandbox_and_records_it(fixture_task, tmp_path):
    from hrm_spawn.envs.spawn_env import EnvConfig, SpawnEnv

    store = OutcomeStore(tmp_path / "s.sqlite")
    config = EnvConfig(agents=[AGENT], seeds_per_agent=1, mode="cached", lam=0.5, seq_len=128)
    env = SpawnEnv(config, tasks=[fixture_task], store=store)
    env.reset(seed=0)
    obs, reward, term, trunc, info = env.step(1)  # a miss: runs CommentAgent in the local sandbox
    assert not (term or trunc) and len(store) == 1 and info["candidate"] is not None
    key, outcome = next(store.iter_task(fixture_task.instance_id))
    assert reward == pytest.approx(-0.5 * outcome.result.cost.sandbox_s / fixture_task.test_run_s)
    obs, reward, term, trunc, info = env.step(0)
    assert term and info["pass_rate"] == 0.0 and info["resolved"] is False  # a comment fixes nothing
    env.close()


KILL_SCRIPT = """
import sys
sys.path[:0] = [{root!r}, {here!r}, {tests!r}]
from hrm_spawn.envs.collect import collect
from hrm_spawn.envs.store import OutcomeStore
from hrm_spawn.envs.tasks import TaskInstance

if __name__ == "__main__":
    task = TaskInstance.model_validate_json(open({task!r}).read())
    collect([task], [{agent!r}], OutcomeStore({store!r}), workers=1, seeds=8, depth=0, progress=False)
"""


@pytest.mark.slow
def test_collector_killed_with_sigkill_resumes(fixture_task, tmp_path):
    task_file = tmp_path / "task.json"
    task_file.write_text(fixture_task.model_dump_json())
    store_path = tmp_path / "s.sqlite"
    script = tmp_path / "run.py"
    script.write_text(
        KILL_SCRIPT.format(
            root=str(ROOT),
            here=str(Path(__file__).parent),
            tests=str(ROOT / "tests"),
            task=str(task_file),
            agent=AGENT,
            store=str(store_path),
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True, env=os.environ.copy())
    deadline = time.time() + 120
    stored = 0
    while time.time() < deadline and stored < 2:
        time.sleep(0.3)
        if store_path.exists():
            with contextlib.suppress(StoreError):  # the file exists before the collector writes its schema
                stored = len(OutcomeStore(store_path, readonly=True))
        assert proc.poll() is None, "the collector ended before it was killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the collector and its worker, mid-collection
    proc.wait()
    store = OutcomeStore(store_path)
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    before = len(store)
    assert 2 <= before < 8
    counts = collect([fixture_task], [AGENT], store, workers=1, seeds=8, depth=0, progress=False)
    assert counts.skipped == before and counts.ran == 8 - before and len(store) == 8


@pytest.mark.slow
def test_end_to_end_real_agents_collect_then_replay(fixture_task, tmp_path):
    """Fixture task, built-in agents in the local sandbox; then replay, batched replay and the oracle agree."""
    from hrm_spawn.envs.oracle import oracle_for_env
    from hrm_spawn.envs.replay import BatchedReplayEnv, ReplaySpec
    from hrm_spawn.envs.spawn_env import EnvConfig, SpawnEnv

    store = OutcomeStore(tmp_path / "s.sqlite")
    agents = ["op-flip", "cond"]
    counts = collect([fixture_task], agents, store, workers=2, seeds=1, depth=1, progress=False)
    assert counts.failed == 0 and counts.ran >= 2
    config = EnvConfig(agents=agents, seeds_per_agent=1, mode="replay", lam=0.01, seq_len=256)
    env = SpawnEnv(config, tasks=[fixture_task], store=store)
    best = oracle_for_env(env, fixture_task.instance_id)
    env.reset(options={"lam": 0.01})
    for action in best.actions:
        obs, reward, term, trunc, info = env.step(action)
    assert info["pass_rate"] == pytest.approx(best.pass_rate)
    assert best.pass_rate == max(o.evaluation.pass_rate for _, o in store.iter_task(fixture_task.instance_id))
    bat = BatchedReplayEnv(env.tasks, env.tables(), ReplaySpec.from_config(config), num_envs=1, seed=0)
    bat.reset_envs(np.arange(1), np.zeros(1, np.int64), np.full(1, 0.01))
    total = 0.0
    for action in best.actions:
        _, r, *_ = bat.step(np.array([action]))
        total += r[0]
    assert total == pytest.approx(info["episode_return"])
    # cached mode over the same store: every step is a hit, so no sandbox is started
    cached = SpawnEnv(config.model_copy(update={"mode": "cached"}), tasks=[fixture_task], store=store)
    cached.reset(options={"lam": 0.01})
    cached.step(1)
    assert cached._sandbox is None


def test_sandbox_failure_truncates_with_the_reason(hrm_home, tmp_path):
    from custom_env_example import toy_tasks

    from hrm_spawn.envs.spawn_env import EnvConfig, SpawnEnv

    config = EnvConfig(agents=[AGENT], mode="cached", seq_len=128)
    env = SpawnEnv(config, tasks=toy_tasks(1), store=tmp_path / "s.sqlite")  # its repository was never built
    env.reset(seed=0)
    obs, reward, term, trunc, info = env.step(1)
    assert trunc and not term and info["truncated_reason"].startswith("sandbox_failure:")
    assert "toy__repo.1" in info["truncated_reason"] and reward == 0.0
    env.close()


def test_collect_refuses_id_only_tasks_and_a_store_in_another_cost_unit(fixture_task, tmp_path):
    """Both would fail every job (or mix units in one store): refused before anything runs or is stored."""
    store = OutcomeStore(tmp_path / "s.sqlite")
    id_only = fixture_task.model_copy(update={"replay_only": True})
    with pytest.raises(ValueError, match="known only by id"):
        collect([id_only], ["op-flip"], store, progress=False)
    imported = OutcomeStore(tmp_path / "usd.sqlite")
    imported.set_meta("cost_unit", "usd")
    with pytest.raises(ValueError, match="counts cost in 'usd'"):
        collect([fixture_task], ["op-flip"], imported, progress=False)
    assert len(store) == 0 and len(imported) == 0 and store.failed_jobs() == []


def test_collect_jobs_runs_an_explicit_frontier_once_and_reruns_it_when_asked(fixture_task, tmp_path):
    from hrm_spawn.envs.collect import collect_jobs, job_key, make_executor, resolve_agents, runner_spec
    from hrm_spawn.envs.sandbox import SandboxConfig

    store = OutcomeStore(tmp_path / "s.sqlite")
    slots = resolve_agents([AGENT])
    task = fixture_task.instance_id
    frontier = [(task, AGENT, 3, ""), (task, AGENT, 0, ""), (task, AGENT, 3, "")]  # any seeds; a repeat
    keys = {job_key(task, slots[0], seed, "") for seed in (0, 3)}
    with make_executor("local", 2, runner_spec(store, slots, SandboxConfig())) as executor:
        first = collect_jobs([fixture_task], slots, store, frontier, executor, progress=False)
        assert first.to_dict() == {"jobs": 2, "skipped": 0, "ran": 2, "failed": 0}
        assert first.stored == keys == store.keys(task) and first.failed_keys == set()
        assert set(first.candidates[task]) == {o.result.patch for _, o in store.iter_task(task)}
        again = collect_jobs([fixture_task], slots, store, frontier, executor, progress=False)
        assert again.to_dict() == {"jobs": 2, "skipped": 2, "ran": 0, "failed": 0} and again.stored == keys
        before = {k: store.created_at(k) for k in keys}
        rerun = collect_jobs(
            [fixture_task], slots, store, frontier[1:2], executor, progress=False, rerun=True
        )
    assert rerun.to_dict() == {"jobs": 1, "skipped": 0, "ran": 1, "failed": 0}
    (key,) = rerun.stored
    assert key.seed == 0 and store.created_at(key) > before[key] and store.keys(task) == keys
    assert store.leases() == [] and store.failed_jobs() == []
