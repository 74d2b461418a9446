"""BatchedReplayEnv: the same episodes as SpawnEnv's replay mode, and fast."""

from __future__ import annotations

import time

import numpy as np
import pytest
from custom_env_example import TOY_AGENTS, fill_toy_store, toy_tasks

from hrm_spawn.envs.replay import BatchedReplayEnv, ReplaySpec, per_cost_unit
from hrm_spawn.envs.spawn_env import EnvConfig, SpawnEnv
from hrm_spawn.envs.store import OutcomeStore


@pytest.fixture
def toy(tmp_path):
    tasks = toy_tasks(5)
    store = OutcomeStore(tmp_path / "s.sqlite")
    fill_toy_store(store, tasks, TOY_AGENTS, seeds=2, delegate_seeds=2, drop=0.2)
    config = EnvConfig(
        agents=TOY_AGENTS,
        mode="replay",
        seq_len=256,
        max_steps=6,
        max_cost=12.0,
        delegate_seeds=2,
        lam=(0.0, 0.1),
    )
    return SpawnEnv(config, tasks=tasks, store=store)


def batched(env: SpawnEnv, n: int, seed: int = 0, tokens: bool = True) -> BatchedReplayEnv:
    return BatchedReplayEnv(
        env.tasks, env.tables(), ReplaySpec.from_config(env.config), num_envs=n, seed=seed, with_tokens=tokens
    )


@pytest.mark.parametrize("reward,cost_bin", [("pass_rate", 0.0), ("resolved", 0.0), ("pass_rate", 0.25)])
def test_same_rewards_masks_and_observations_as_spawn_env(toy, reward, cost_bin):
    config = toy.config.model_copy(update={"reward": reward, "cost_bin": cost_bin})
    env = SpawnEnv(config, tasks=toy.tasks, store=toy.store)
    n = 4
    bat = batched(env, n)
    rng = np.random.default_rng(1)
    episodes = 0
    for round_no in range(10):
        tasks = rng.integers(len(env.tasks), size=n)
        lams = rng.uniform(0, 0.1, size=n)
        bat.reset_envs(np.arange(n), tasks, lams)
        for i in range(n):  # play each batched env's episode against a SpawnEnv on the same task and λ
            obs, _ = env.reset(options={"task_index": int(tasks[i]), "lam": float(lams[i])})
            done = False
            while not done:
                bobs = bat.observe()
                for name in ("features", "action_mask", "tokens"):
                    np.testing.assert_array_equal(
                        bobs[name][i], obs[name], err_msg=f"{name} round {round_no}"
                    )
                allowed = np.flatnonzero(obs["action_mask"])
                action = int(rng.choice(allowed))
                actions = np.zeros(n, np.int64)  # the other envs halt and restart; env i is compared
                actions[i] = action
                obs, reward, term, trunc, info = env.step(action)
                _, breward, bterm, btrunc, final = bat.step(actions)
                assert breward[i] == pytest.approx(reward, abs=1e-12)
                assert (bterm[i], btrunc[i]) == (term, trunc)
                done = term or trunc
                if done:
                    episodes += 1
                    assert final["pass_rate"][i] == pytest.approx(info["pass_rate"])
                    assert final["resolved"][i] == info["resolved"]
                    assert final["cost"][i] == pytest.approx(info["cost"])
                    assert final["ret"][i] == pytest.approx(info["episode_return"])
                else:  # keep the other envs on their task: reset them back
                    others = np.setdiff1d(np.arange(n), [i])
                    bat.reset_envs(others, tasks[others], lams[others])
            bat.reset_envs(np.arange(n), tasks, lams)
    assert episodes == 40


def test_masked_action_is_an_error(toy):
    bat = batched(toy, 8)
    bat.reset(seed=0)
    mask = bat.action_masks()
    actions = np.zeros(8, np.int64)
    masked = np.flatnonzero(~mask[0])
    assert masked.size  # delegation is masked before any candidate exists
    actions[0] = masked[0]
    with pytest.raises(ValueError, match="masked or invalid actions at envs \\[0\\]"):
        bat.step(actions)


def test_random_rollouts_finish_and_throughput(toy):
    bat = batched(toy, 2048, tokens=False)
    bat.reset(seed=0)
    rng = np.random.default_rng(0)
    done_count, steps = 0, 0
    start = time.perf_counter()
    for _ in range(60):
        mask = bat.action_masks()
        scores = rng.random(mask.shape) * mask
        obs, reward, term, trunc, final = bat.step(scores.argmax(1))
        assert np.isfinite(reward).all() and obs["features"].dtype == np.float32
        done_count += int(final["done"].sum())
        steps += bat.num_envs
    rate = steps / (time.perf_counter() - start)
    assert done_count > 2048  # episodes end (max_steps 6) and auto-reset
    assert rate > 20_000, (
        f"{rate:.0f} steps/s"
    )  # the benchmark reports the real figure; this guards regressions


def test_without_task_text_every_task_starts_from_the_same_tokens(toy):
    env = SpawnEnv(toy.config.model_copy(update={"task_text": False}), tasks=toy.tasks, store=toy.store)
    starts = [env.reset(options={"task_index": t})[0]["tokens"] for t in range(len(env.tasks))]
    assert all((row == starts[0]).all() for row in starts)
    with_text = [toy.reset(options={"task_index": t})[0]["tokens"] for t in range(len(toy.tasks))]
    assert len({row.tobytes() for row in with_text}) == len(toy.tasks)  # the text tells tasks apart
    bat = batched(env, len(env.tasks))
    bat.reset_envs(np.arange(len(env.tasks)), np.arange(len(env.tasks)), np.zeros(len(env.tasks)))
    np.testing.assert_array_equal(bat.observe()["tokens"], np.stack(starts))


def test_coarse_costs_show_only_multiples_of_the_bin(toy):
    from hrm_spawn.envs import features as F

    env = SpawnEnv(toy.config.model_copy(update={"cost_bin": 0.25}), tasks=toy.tasks, store=toy.store)
    names = F.feature_names(env.config.agents)
    cost_cols = [names.index("cost_spent"), names.index("cost_left")]
    cost_cols += [i for i, n in enumerate(names) if n.endswith(".last_cost")]
    bat = batched(env, len(env.tasks))
    rows = np.arange(len(env.tasks))
    bat.reset_envs(rows, rows, np.zeros(len(rows)))
    exact = batched(toy, len(toy.tasks))
    exact.reset_envs(rows, rows, np.zeros(len(rows)))
    seen, seen_exact = set(), set()
    for action in (1, 2):  # spawn the first two agents everywhere (never masked at the start)
        bat.step(np.full(len(rows), action))
        exact.step(np.full(len(rows), action))
        seen |= set(np.round(bat.observe()["features"][:, cost_cols], 6).ravel().tolist())
        seen_exact |= set(np.round(exact.observe()["features"][:, cost_cols], 6).ravel().tolist())
    assert seen <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert len(seen_exact) > len(seen)  # the exact costs tell runs apart that the bins do not
    for row in bat.observe()["tokens"]:  # the history text shows the binned cost in units (12 * 0.25 = 3)
        last = row[-F.HIST_WIDTH :]
        entry = bytes((last[last > 0] - F.BYTE_OFFSET).astype(np.uint8)).decode()
        assert float(entry.split()[2]) in (0.0, 3.0, 6.0, 9.0, 12.0), entry


def _copy_store(src: OutcomeStore, path, slow_down: float) -> OutcomeStore:
    """``src``'s runs as a machine ``slow_down`` times slower would record them: the same test executions
    (the count budgets decide them), ``slow_down`` times the sandbox seconds."""
    dst = OutcomeStore(path)
    for task in src.tasks():
        for key, outcome in src.iter_task(task):
            cost = outcome.result.cost
            cost.test_runs = 1 + int(cost.sandbox_s * 3)  # what the run counted, fixed per run
            cost.sandbox_s *= slow_down
            dst.put(key, outcome)
    return dst


def test_test_executions_cost_the_same_on_a_busy_machine(toy, tmp_path):
    idle = _copy_store(toy.store, tmp_path / "idle.sqlite", 1.0)
    busy = _copy_store(toy.store, tmp_path / "busy.sqlite", 8.0)

    def tables(store, unit):
        env = SpawnEnv(toy.config.model_copy(update={"cost_unit": unit}), tasks=toy.tasks, store=store)
        assert env.cost_unit == (unit or "test_runs") and env.replay().cost_unit == env.cost_unit
        return [sorted((key, job.cost) for key, job in t.outcomes.items()) for t in env.tables()]

    assert tables(idle, "test_executions") == tables(busy, "test_executions")
    timed_idle, timed_busy = tables(idle, None), tables(busy, None)
    for a, b in zip(timed_idle, timed_busy, strict=True):  # measured seconds follow the load
        assert [c * 8 for _, c in a] == pytest.approx([c for _, c in b])
    counted = tables(idle, "test_executions")
    assert all(c == int(c) and c >= 1 for t in counted for _, c in t)
    assert per_cost_unit("test_executions") == "per test execution" and per_cost_unit("usd") == "per USD"


def test_a_cost_unit_the_store_does_not_record_is_refused(toy, tmp_path):
    toy.store.set_meta("cost_unit", "usd")  # as an imported table states it
    config = toy.config.model_copy(update={"cost_unit": "test_executions"})
    with pytest.raises(ValueError, match=r"env.cost_unit='test_executions'.*counts cost in 'usd'.*usd only"):
        SpawnEnv(config, tasks=toy.tasks, store=toy.store)
    with pytest.raises(ValueError, match="cost_unit"):
        EnvConfig(cost_unit="seconds")
