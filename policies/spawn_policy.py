"""SpawnPolicy: the HRM core with its ACT Q-head widened to (halt, spawn 1..K, delegate 1..K).

Action ids follow the env: 0 halt, 1..K spawn agent k-1, K+1..2K delegate to agent k-1. The Q-head,
the action-logit head (policy-gradient trainers) and the value head (PPO) all read position 0 of z_H,
as the reference's Q-head does. The carry persists across env steps; ``reset`` starts rows afresh.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hrm_spawn.policies.config import HRMConfig
from hrm_spawn.policies.hrm import HRMCarry, HRMCore, resolve_dtype
from hrm_spawn.policies.layers import Linear

HALT = 0
# Finite rather than -inf: softmax/entropy of a row stay NaN-free even if a trainer masks everything.
MASKED_LOGIT = -1e9


@dataclass
class PolicyOutput:
    q_logits: torch.Tensor  # [B, A] float32, unmasked Q estimates
    action_logits: torch.Tensor  # [B, A] float32, invalid actions at MASKED_LOGIT
    value: torch.Tensor  # [B] float32
    state: torch.Tensor  # [B, hidden] float32, z_H at position 0 (what the heads read)
    segments: torch.Tensor  # [B] int64, ACT segments run this step
    think_q: torch.Tensor | None = None  # [B, 2] (stop, go on) thinking, only with inner ACT
    q_members: torch.Tensor | None = None  # [B, E, A] the ensemble members' Q logits (E = q_ensemble)


def _reference_q_init(head: Linear) -> None:
    """Zero weights and bias -5, as the reference: Q starts near zero (sigmoid) for stable bootstrapping."""
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-5.0)


class SpawnPolicy(nn.Module):
    def __init__(self, config: HRMConfig, num_actions: int, num_features: int) -> None:
        super().__init__()
        if num_actions < 2 or num_actions % 2 != 1:
            raise ValueError(f"SpawnPolicy: num_actions must be 1 + 2K with K >= 1, got {num_actions}")
        self.config = config
        self.num_actions = num_actions
        self.num_features = num_features
        self.core = HRMCore(config, num_features)
        hidden = config.hidden_size
        self.q_head = Linear(hidden, num_actions * config.q_ensemble, bias=True)
        _reference_q_init(self.q_head)
        self.policy_head = Linear(hidden, num_actions, bias=True)
        self.value_head = Linear(hidden, 1, bias=True)
        with torch.no_grad():  # uniform initial policy over valid actions, zero initial value
            self.policy_head.weight.zero_()
            self.value_head.weight.zero_()
        if config.halt_max_steps > 1:
            self.think_head = Linear(hidden, 2, bias=True)
            _reference_q_init(self.think_head)

    def initial_carry(self, batch: int, device: torch.device | str = "cpu") -> HRMCarry:
        return self.core.initial_carry(batch, device, resolve_dtype(self.config.forward_dtype, device))

    def forward(
        self,
        carry: HRMCarry,
        tokens: torch.Tensor,
        features: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
        reset: torch.Tensor | None = None,
        repo_ids: torch.Tensor | None = None,
    ) -> tuple[HRMCarry, PolicyOutput]:
        if reset is not None:
            carry = self.core.reset_carry(carry, reset)
        if self.config.halt_max_steps == 1:
            carry, z_H = self.core(carry, tokens, features, repo_ids)
            return carry, self._heads(
                z_H, action_mask, torch.ones(tokens.shape[0], dtype=torch.long, device=tokens.device)
            )
        return self._inner_act(carry, tokens, features, action_mask, repo_ids)

    def _heads(
        self, z_H: torch.Tensor, action_mask: torch.Tensor | None, segments: torch.Tensor
    ) -> PolicyOutput:
        state = z_H[:, 0].float()
        logits = self.policy_head(state)
        if action_mask is not None:
            logits = mask_logits(logits, action_mask)
        think = self.think_head(state) if hasattr(self, "think_head") else None
        members = self.q_head(state).view(state.shape[0], self.config.q_ensemble, self.num_actions)
        return PolicyOutput(
            ensemble_q(members, self.config.q_pessimism),
            logits,
            self.value_head(state).squeeze(-1),
            state,
            segments,
            think,
            members,
        )

    def _inner_act(
        self,
        carry: HRMCarry,
        tokens: torch.Tensor,
        features: torch.Tensor | None,
        action_mask: torch.Tensor | None,
        repo_ids: torch.Tensor | None,
    ) -> tuple[HRMCarry, PolicyOutput]:
        """Up to halt_max_steps segments per env step; a row stops when its think-Q says stop.

        Like the reference: evaluation always runs every segment (uniform batches); training halts on
        the think-head and, with halt_exploration_prob, forces a random minimum number of segments.
        """
        max_steps = self.config.halt_max_steps
        batch = tokens.shape[0]
        steps = torch.zeros(batch, dtype=torch.long, device=tokens.device)
        halted = torch.zeros(batch, dtype=torch.bool, device=tokens.device)
        out: PolicyOutput | None = None
        for _ in range(max_steps):
            new_carry, z_H = self.core(carry, tokens, features, repo_ids)
            seg_out = self._heads(z_H, action_mask, steps)
            active = ~halted
            carry = _where_carry(active, new_carry, carry)
            out = seg_out if out is None else _where_output(active, seg_out, out)
            steps = steps + active.long()
            halted = halted | act_halts(
                steps, seg_out.think_q, max_steps, self.config.halt_exploration_prob, self.training
            )
            if bool(halted.all()):
                break
        assert out is not None
        out.segments = steps
        return carry, out


def act_halts(
    steps: torch.Tensor, think_q: torch.Tensor, max_steps: int, exploration_prob: float, training: bool
) -> torch.Tensor:
    """Which rows stop thinking after their ``steps``-th segment: the reference's ACT halting rule.

    The last segment always stops. In training a row also stops when its think-Q says so (stop >
    go on), unless exploration holds it: every segment, with probability ``exploration_prob``, draws a
    fresh minimum segment count in [2, max_steps] (a new draw per segment, as the reference does, so
    the segment-count distribution is the reference's).
    """
    halted = steps >= max_steps
    if not training:
        return halted  # evaluation runs every segment: uniform batches, as in the reference
    halted = halted | (think_q[:, 0] > think_q[:, 1])
    explore = torch.rand(steps.shape, device=steps.device) < exploration_prob
    min_steps = explore.long() * torch.randint(2, max_steps + 1, steps.shape, device=steps.device)
    return halted & (steps >= min_steps)


def _where_carry(rows: torch.Tensor, new: HRMCarry, old: HRMCarry) -> HRMCarry:
    m = rows.view(-1, 1, 1)
    return HRMCarry(torch.where(m, new.z_H, old.z_H), torch.where(m, new.z_L, old.z_L))


def _where_output(rows: torch.Tensor, new: PolicyOutput, old: PolicyOutput) -> PolicyOutput:
    def pick(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
        if a is None or b is None:  # an optional output only one side has: keep the new one
            return a
        return torch.where(rows.view(-1, *([1] * (a.dim() - 1))), a, b)

    return PolicyOutput(
        pick(new.q_logits, old.q_logits),
        pick(new.action_logits, old.action_logits),
        pick(new.value, old.value),
        pick(new.state, old.state),
        new.segments,
        pick(new.think_q, old.think_q),
        pick(new.q_members, old.q_members),
    )


def ensemble_q(members: torch.Tensor, pessimism: float = 0.0) -> torch.Tensor:
    """[B, E, A] member logits -> [B, A]: the logit of (mean − pessimism × std) of their sigmoids.

    One member is returned as it is, so a single Q-head behaves exactly as the reference's.
    """
    if members.shape[1] == 1:
        return members[:, 0]
    prob = torch.sigmoid(members.float())
    value = prob.mean(1) - pessimism * prob.std(1, correction=0)
    return torch.logit(value.clamp(1e-6, 1 - 1e-6))


def mask_logits(logits: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
    mask = action_mask.to(device=logits.device).bool()
    if mask.shape != logits.shape:
        raise ValueError(f"action_mask shape {list(mask.shape)} does not match logits {list(logits.shape)}")
    return logits.masked_fill(~mask, MASKED_LOGIT)


def greedy_action(q_logits: torch.Tensor, action_mask: torch.Tensor | None = None) -> torch.Tensor:
    """argmax over valid actions only; a row with no valid action is an error."""
    if action_mask is None:
        return q_logits.argmax(-1)
    mask = action_mask.to(device=q_logits.device).bool()
    if not bool(mask.any(-1).all()):
        rows = (~mask.any(-1)).nonzero().flatten().tolist()
        raise ValueError(f"greedy_action: rows {rows} have no valid action")
    return q_logits.masked_fill(~mask, float("-inf")).argmax(-1)


def continue_q(
    q_logits: torch.Tensor, action_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ACT "continue" value: best valid non-halt Q and its action (-inf / -1 where none is valid)."""
    rest = q_logits[:, HALT + 1 :]
    if action_mask is not None:
        rest = rest.masked_fill(~action_mask[:, HALT + 1 :].to(device=q_logits.device).bool(), float("-inf"))
    value, idx = rest.max(-1)
    action = torch.where(torch.isinf(value), torch.full_like(idx, -1), idx + HALT + 1)
    return value, action
