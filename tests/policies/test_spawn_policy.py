import pytest
import torch

from hrm_spawn.policies.config import HRMConfig
from hrm_spawn.policies.spawn_policy import (
    MASKED_LOGIT,
    SpawnPolicy,
    act_halts,
    continue_q,
    ensemble_q,
    greedy_action,
)

A, F = 7, 5  # K = 3 agents


def cfg(**overrides) -> HRMConfig:
    base = dict(
        hidden_size=32,
        num_heads=2,
        H_layers=1,
        L_layers=1,
        H_cycles=2,
        L_cycles=2,
        seq_len=10,
        forward_dtype="float32",
    )
    return HRMConfig(**{**base, **overrides})


def obs(batch: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, A, generator=g) > 0.5
    mask[:, 0] = True
    return torch.randint(0, 260, (batch, 10), generator=g), torch.randn(batch, F, generator=g), mask


def test_heads_shapes_and_reference_q_init():
    torch.manual_seed(0)
    policy = SpawnPolicy(cfg(), A, F)
    tokens, feats, mask = obs()
    carry, out = policy(policy.initial_carry(4), tokens, feats, mask)
    assert out.q_logits.shape == (4, A) and out.action_logits.shape == (4, A) and out.value.shape == (4,)
    torch.testing.assert_close(out.q_logits, torch.full((4, A), -5.0))  # zero weights, bias -5
    assert (out.action_logits[~mask] == MASKED_LOGIT).all() and (out.action_logits[mask] == 0).all()
    assert carry.z_H.shape == (4, 11, 32) and (out.segments == 1).all()


def test_masked_actions_never_win():
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        q = torch.randn(8, A, generator=g) * 10
        mask = torch.rand(8, A, generator=g) > 0.6
        mask[torch.arange(8), torch.randint(0, A, (8,), generator=g)] = True
        chosen = greedy_action(q, mask)
        assert mask[torch.arange(8), chosen].all()
        best = q.masked_fill(~mask, float("-inf")).max(-1).values
        torch.testing.assert_close(q[torch.arange(8), chosen], best)


def test_greedy_with_no_valid_action_is_an_error():
    with pytest.raises(ValueError, match=r"rows \[1\] have no valid action"):
        greedy_action(torch.zeros(2, A), torch.tensor([[True] + [False] * 6, [False] * 7]))


def test_continue_is_best_valid_non_halt_action():
    q = torch.tensor([[9.0, 1.0, 5.0, 3.0, 0.0, 0.0, 0.0], [9.0, 1.0, 5.0, 3.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    value, action = continue_q(q, mask)
    assert action.tolist() == [3, -1] and value[0] == 3.0 and torch.isinf(value[1])


def test_carry_persists_and_resets_per_row():
    torch.manual_seed(0)
    policy = SpawnPolicy(cfg(), A, F)
    tokens, feats, mask = obs()
    fresh = policy.initial_carry(4)
    c1, out1 = policy(fresh, tokens, feats, mask)
    c2, out2 = policy(c1, tokens, feats, mask, reset=torch.tensor([True, False, False, True]))
    _, cont = policy(c1, tokens, feats, mask)
    torch.testing.assert_close(c2.z_H[[0, 3]], c1.z_H[[0, 3]])  # reset rows: a first step again
    torch.testing.assert_close(c2.z_H[[1, 2]], policy(c1, tokens, feats, mask)[0].z_H[[1, 2]])
    assert not torch.allclose(c2.z_H[1], c1.z_H[1])  # the carry did move on for kept rows
    torch.testing.assert_close(out2.state[[1, 2]], cont.state[[1, 2]])


def test_bad_action_count_and_mask_shape():
    with pytest.raises(ValueError, match="1 \\+ 2K"):
        SpawnPolicy(cfg(), 4, F)
    policy = SpawnPolicy(cfg(), A, F)
    tokens, feats, _ = obs()
    with pytest.raises(ValueError, match="action_mask shape"):
        policy(policy.initial_carry(4), tokens, feats, torch.ones(4, 3, dtype=torch.bool))


def test_inner_act_runs_all_segments_in_eval_and_halts_in_training():
    torch.manual_seed(0)
    policy = SpawnPolicy(cfg(halt_max_steps=3, halt_exploration_prob=0.0), A, F).eval()
    tokens, feats, mask = obs()
    carry, out = policy(policy.initial_carry(4), tokens, feats, mask)
    manual = policy.initial_carry(4)
    for _ in range(3):
        manual, _ = policy.core(manual, tokens, feats)
    assert (out.segments == 3).all() and out.think_q.shape == (4, 2)
    torch.testing.assert_close(carry.z_H, manual.z_H)

    with torch.no_grad():
        policy.think_head.bias.copy_(torch.tensor([5.0, -5.0]))  # "stop thinking" wins at once
    policy.train()
    carry, out = policy(policy.initial_carry(4), tokens, feats, mask)
    assert (out.segments == 1).all()
    torch.testing.assert_close(carry.z_H, policy.core(policy.initial_carry(4), tokens, feats)[0].z_H)


def test_q_ensemble_members_and_their_aggregate():
    torch.manual_seed(0)
    policy = SpawnPolicy(cfg(q_ensemble=3), A, F)
    tokens, feats, mask = obs()
    _, out = policy(policy.initial_carry(4), tokens, feats, mask)
    assert out.q_members.shape == (4, 3, A)
    torch.testing.assert_close(out.q_logits, torch.full((4, A), -5.0))  # members agree at init
    single = SpawnPolicy(cfg(), A, F)
    _, one = single(single.initial_carry(4), tokens, feats, mask)
    assert torch.equal(one.q_logits, one.q_members[:, 0])  # one member: the reference head, unchanged


def test_ensemble_q_is_the_mean_probability_lowered_by_spread():
    agree = torch.logit(torch.tensor([[[0.6, 0.2], [0.6, 0.2]]]))  # [B=1, E=2, A=2]
    split = torch.logit(torch.tensor([[[0.9, 0.2], [0.3, 0.2]]]))  # action 0: same mean, spread 0.3
    for members in (agree, split):
        torch.testing.assert_close(torch.sigmoid(ensemble_q(members)), torch.tensor([[0.6, 0.2]]))
    pessimistic = torch.sigmoid(ensemble_q(split, pessimism=1.0))
    torch.testing.assert_close(pessimistic, torch.tensor([[0.3, 0.2]]))
    torch.testing.assert_close(torch.sigmoid(ensemble_q(agree, pessimism=1.0)), torch.tensor([[0.6, 0.2]]))


def segment_counts(rows: int, max_steps: int, prob: float) -> torch.Tensor:
    """Segments per row under act_halts when the think-head always says stop (only exploration holds)."""
    steps = torch.zeros(rows, dtype=torch.long)
    halted = torch.zeros(rows, dtype=torch.bool)
    stop = torch.tensor([[1.0, 0.0]]).expand(rows, 2)
    while not bool(halted.all()):
        steps = steps + (~halted).long()
        halted = halted | act_halts(steps, stop, max_steps, prob, training=True)
    return torch.bincount(steps, minlength=max_steps + 1)[1:].double() / rows


def test_exploration_is_drawn_per_segment_as_the_reference_does():
    """Every segment draws afresh: with prob p a minimum in [2, M]. A row goes on past segment s only if
    that segment explored and drew a minimum above s: P(2 segments) = p (1 - p (M-2)/(M-1)). One draw per
    call would give p/(M-1) (3.3 % here instead of 9.3 %)."""
    torch.manual_seed(0)
    p, M = 0.1, 4
    freq = segment_counts(200_000, M, p)
    on_after = [p * (M - s) / (M - 1) for s in range(1, M)]  # P(go on after segment s | reached s)
    expected = [1 - on_after[0], on_after[0] * (1 - on_after[1])]
    expected.append(on_after[0] * on_after[1] * (1 - on_after[2]))
    expected.append(1 - sum(expected))
    torch.testing.assert_close(freq, torch.tensor(expected, dtype=torch.float64), atol=2e-3, rtol=0)
    assert abs(float(freq[1]) - 0.0933) < 2e-3


def test_act_halts_outside_training_only_at_the_last_segment():
    stop = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert act_halts(torch.tensor([1, 1]), stop, 3, 0.0, training=False).tolist() == [False, False]
    assert act_halts(torch.tensor([3, 3]), stop, 3, 0.0, training=False).tolist() == [True, True]
    assert act_halts(torch.tensor([1, 1]), stop, 3, 0.0, training=True).tolist() == [True, False]
