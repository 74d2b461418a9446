"""ACT Q-learning targets on hand-built episodes: halt -> known pass-rate, moves -> bootstrapped value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrm_spawn.trainers.act_q import (
    Episode,
    act_q_targets,
    bootstrap_weights,
    collate,
    epsilon_at,
    from_unit,
    to_unit,
)
from hrm_spawn.trainers.config import ActQConfig


def _episode(actions: list[int], costs: list[float], h: list[float], lam: float, a: int = 5) -> Episode:
    t = len(actions)
    return Episode(
        tokens=np.zeros((t, 4), np.int64),
        features=np.zeros((t, 3), np.float32),
        masks=np.ones((t, a), bool),
        actions=np.asarray(actions),
        costs=np.asarray(costs, np.float32),
        halt_values=np.asarray(h, np.float32),
        lam=lam,
    )


def test_targets_halt_known_and_moves_bootstrapped() -> None:
    # spawn (cost 2) -> state with h=0.5 -> spawn (cost 1) -> h=1.0 -> halt.
    ep = _episode([1, 2, 0], [2.0, 1.0, 0.0], [0.0, 0.5, 1.0, 1.0], lam=0.1)
    cut = _episode([1], [3.0], [0.0, 0.8], lam=0.1)  # cut after one spawn: V(s_T) = h_T
    batch = collate([ep, cut], torch.device("cpu"))
    q = torch.full((2, 3, 5), -20.0)  # sigmoid ~ 0: every move looks worthless
    q[0, 1, 3] = 20.0  # ... except action 3 at s_1 of the first episode (sigmoid ~ 1)
    y_halt, y_taken = act_q_targets(q, batch, floor=1.0)
    g_halt, g_taken = from_unit(y_halt, 1.0), from_unit(y_taken, 1.0)  # back to return units
    assert g_halt[0].tolist() == pytest.approx([0.0, 0.5, 1.0])
    # s_0 -> s_1: V(s_1) = max(h=0.5, Q~1) ~ 1, minus 0.1 * 2.
    assert float(g_taken[0, 0]) == pytest.approx(0.8, abs=1e-4)
    # s_1 -> s_2: V(s_2) = max(h=1.0, Q~-1) = 1, minus 0.1 * 1.
    assert float(g_taken[0, 1]) == pytest.approx(0.9, abs=1e-4)
    # cut episode: h_T = 0.8 minus 0.3.
    assert float(g_taken[1, 0]) == pytest.approx(0.5, abs=1e-4)


def test_useless_costly_step_ranks_below_halting() -> None:
    # Nothing found before or after a spawn of cost 2 at λ 0.1: halting (0) beats it (-0.2).
    ep = _episode([1, 0], [2.0, 0.0], [0.0, 0.0, 0.0], lam=0.1)
    y_halt, y_taken = act_q_targets(
        torch.full((1, 2, 5), -20.0), collate([ep], torch.device("cpu")), floor=1.0
    )
    assert float(y_taken[0, 0]) < float(y_halt[0, 0])
    assert float(from_unit(y_taken, 1.0)[0, 0]) == pytest.approx(-0.2, abs=1e-4)


def test_targets_are_clipped_to_unit_interval() -> None:
    ep = _episode([1, 0], [50.0, 0.0], [0.0, 0.2, 0.2], lam=1.0)
    y_halt, y_taken = act_q_targets(torch.zeros(1, 2, 5), collate([ep], torch.device("cpu")))
    assert float(y_taken[0, 0]) == 0.0  # -50 + ... is below the floor: clipped
    assert float(y_halt.max()) <= 1.0
    assert float(to_unit(torch.tensor(2.0), 1.0)) == 1.0


def test_epsilon_schedule() -> None:
    cfg = ActQConfig(epsilon_start=0.5, epsilon_end=0.1, epsilon_decay_iterations=10)
    assert epsilon_at(cfg, 0) == pytest.approx(0.5)
    assert epsilon_at(cfg, 5) == pytest.approx(0.3)
    assert epsilon_at(cfg, 100) == pytest.approx(0.1)


def test_double_q_values_the_move_the_selector_picks() -> None:
    # One move step, then a state where moves 1 and 2 are valid: the value network rates 1 high and 2
    # low, the selector prefers 2, so the bootstrap uses the value network's rating of move 2.
    ep = _episode([1, 0], [1.0, 0.0], [0.0, 0.0, 0.0], lam=0.0, a=3)
    batch = collate([ep], torch.device("cpu"))
    value = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 20.0, -20.0]]])
    select = torch.tensor([[[0.0, 0.0, 0.0], [0.0, -1.0, 1.0]]])
    _, plain = act_q_targets(value, batch, floor=1.0)
    _, double = act_q_targets(value, batch, floor=1.0, select_logits=select)
    assert float(from_unit(plain, 1.0)[0, 0]) == pytest.approx(1.0, abs=1e-4)  # max over the value net
    assert float(from_unit(double, 1.0)[0, 0]) == pytest.approx(0.0, abs=1e-4)  # h = 0 beats move 2's -1


def test_members_bootstrap_from_their_own_values() -> None:
    # Two members rate the next state's best move 1.0 and 0.0: each member's target follows its own.
    ep = _episode([1, 0], [1.0, 0.0], [0.0, 0.0, 0.0], lam=0.0, a=3)
    batch = collate([ep], torch.device("cpu"), members=2)
    q = torch.zeros(1, 2, 2, 3)
    q[0, 1, 0, 1], q[0, 1, 1, 1] = 20.0, -20.0
    y_halt, y_taken = act_q_targets(q, batch, floor=1.0)
    assert y_halt.shape == y_taken.shape == (1, 2, 2)
    assert from_unit(y_taken, 1.0)[0, 0].tolist() == pytest.approx([1.0, 0.0], abs=1e-4)
    for e in range(2):  # the same as one member on its own
        _, alone = act_q_targets(q[:, :, e], batch, floor=1.0)
        torch.testing.assert_close(alone, y_taken[:, :, e])


def test_bootstrap_weights_are_fixed_coins_per_task() -> None:
    ids = [f"task-{i}" for i in range(200)]
    w = bootstrap_weights(ids, members=4, seed=0)
    assert w.shape == (200, 4) and set(np.unique(w)) == {0.0, 2.0}
    assert 0.4 < (w > 0).mean() < 0.6  # each member fits about half of the tasks
    assert not (w[:, 0] == w[:, 1]).all()  # ... and not the same half
    assert np.array_equal(w, bootstrap_weights(ids, members=4, seed=0))  # reproducible (resume)
    assert not np.array_equal(w, bootstrap_weights(ids, members=4, seed=1))
    assert (bootstrap_weights(ids, members=1, seed=0) == 1).all()
    assert (bootstrap_weights(["", "x"], members=3, seed=0)[0] == 1).all()  # no task id: fit it all
