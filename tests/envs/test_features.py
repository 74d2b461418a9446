"""Task features: the failure profile read back from a statement the builder wrote, and its bins."""

from __future__ import annotations

import numpy as np
from custom_env_example import toy_tasks

from hrm_spawn.envs.features import TASK_FEATURES, feature_names, num_features, task_features
from hrm_spawn.envs.problem import FAILURE_KINDS, failure_kind, failure_kind_shares, problem_statement


def test_failure_kinds_are_classed() -> None:
    assert failure_kind("AssertionError: assert 1 == 2") == "AssertionError"
    assert failure_kind("assert [] == [1]") == "AssertionError"
    assert failure_kind("KeyError: 'x'") == "LookupError"
    assert failure_kind("RecursionError: maximum recursion depth exceeded") == "RuntimeError"
    assert failure_kind("tinydb.CustomError: no") == "OtherError"
    assert failure_kind("UnboundLocalError: cannot access local variable 'x'") == "UnboundLocalError"
    assert failure_kind("something went wrong") is None


def test_shares_come_from_the_statements_failure_lines() -> None:
    tests = [f"tests/test_a.py::test_{i}" for i in range(4)]
    messages = {
        tests[0]: "NameError: name 'x' is not defined",
        tests[1]: "NameError: name 'y' is not defined",
        tests[2]: "TypeError: bad operand",
    }  # tests[3] has no message
    shares = failure_kind_shares(problem_statement(tests, messages, total_tests=200))
    assert list(shares) == list(FAILURE_KINDS)
    assert shares["NameError"] == 0.5 and shares["TypeError"] == 0.25 and sum(shares.values()) == 0.75
    # A statement written by a person lists no failure lines: nothing to read.
    assert set(failure_kind_shares("Calling Table.insert twice loses the first row.").values()) == {0.0}
    assert set(failure_kind_shares(None).values()) == {0.0}


def test_task_features_bin_the_failing_share() -> None:
    task = toy_tasks(1)[0]
    many = task.model_copy(
        update={
            "FAIL_TO_PASS": [f"t::f{i}" for i in range(30)],
            "PASS_TO_PASS": [f"t::p{i}" for i in range(70)],
            "problem_statement": problem_statement(["t::f0"], {"t::f0": "NameError: x"}),
        }
    )
    few = task.model_copy(
        update={"FAIL_TO_PASS": ["t::f0", "t::f1"], "PASS_TO_PASS": [f"t::p{i}" for i in range(98)]}
    )
    np.testing.assert_array_equal(task_features(many)[:3], [0, 0, 1])
    np.testing.assert_array_equal(task_features(few)[:3], [0, 1, 0])
    assert task_features(many)[3 + FAILURE_KINDS.index("NameError")] == 1.0
    assert not task_features(many, enabled=False).any()
    assert len(task_features(task)) == len(TASK_FEATURES)


def test_feature_names_match_the_layout() -> None:
    names = feature_names(["a", "b"])
    assert len(names) == num_features(2) and names[7] == "one_failing" and names[-1] == "b.last_cost"


def test_an_imported_tasks_repository_reaches_the_policys_tokens(tmp_path) -> None:
    """``store import --task-text repo``: an id-only task's tokens name its repository (what a policy can
    choose its first agent by), alike in the sequential and the batched replay env; without it every
    id-only task has the same tokens."""
    from hrm_spawn.envs.env_config import load_env_config
    from hrm_spawn.envs.replay import BatchedReplayEnv
    from hrm_spawn.envs.spawn_env import SpawnEnv
    from hrm_spawn.envs.store_import import import_table

    sha = "0123456789abcdef0123456789abcdef0123456"
    ids = [
        f"instance_acme__webkit-{sha}1",
        f"instance_acme__webkit-{sha}2",
        f"instance_numlab__solver-{sha}3",
    ]
    table = tmp_path / "runs.csv"
    rows = [
        f"{t},{a},{'true' if a == 'big' else 'false'},{s}" for t in ids for a, s in (("big", 9), ("small", 3))
    ]
    table.write_text("task,agent,resolved,turns\n" + "\n".join(rows) + "\n", encoding="utf-8")
    tokens = {}
    for text in ("repo", "none"):
        store = tmp_path / f"{text}.sqlite"
        report = import_table(table, "csv", store, price_per_step="big=0.05,small=0.01", task_text=text)
        cfg = load_env_config(
            {
                "tasks": report.tasks_out,
                "store": str(store),
                "agents": ["big@imported", "small@imported"],
                "mode": "replay",
                "split": "all",
                "seq_len": 96,
                "max_steps": 2,
                "max_cost": 2.0,
            }
        )
        env = SpawnEnv(cfg)
        bat = BatchedReplayEnv.from_replay(env.replay(), num_envs=len(env.tasks), seed=0)
        n = len(env.tasks)
        bat.reset_envs(np.arange(n), np.arange(n), np.zeros(n))
        batched = bat.tokens.copy()
        seq = []
        for i in range(n):
            obs, _ = env.reset(options={"task_index": i, "lam": 0.0})
            seq.append(obs["tokens"])
        np.testing.assert_array_equal(np.stack(seq), batched)
        tokens[text] = {t.instance_id: row for t, row in zip(env.tasks, seq, strict=True)}
    webkit, webkit2, solver = (tokens["repo"][i] for i in ids)
    np.testing.assert_array_equal(webkit, webkit2)  # the repository, not the task: nothing to memorise
    assert not np.array_equal(webkit, solver)
    blind = list(tokens["none"].values())
    assert all(np.array_equal(blind[0], row) for row in blind[1:])
