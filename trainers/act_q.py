"""ACT Q-learning: the HRM-native trainer (CleanRL style: read it top to bottom).

The Q-head learns as HRM's ACT head does: sigmoid outputs trained with binary cross-entropy toward
targets in [0, 1]. Actions: 0 halt, 1..K spawn, K+1..2K delegate. A Q value stands for a return G in
[-F, 1] (F = ``value_floor``, default 0.25) through u(G) = (G + F) / (1 + F), clipped to [0, 1]; mapping
rather than clipping at 0 keeps a costly step that finds nothing below halting when h = 0.

Targets, for an episode with states s_0..s_{T-1}, actions a_t, step costs c_t (test-run units),
λ of the episode and h_t = hidden pass-rate of the best candidate (by visible pass-rate) at s_t:

* halt at every visited state:   y_halt(s_t) = u(h_t)
  Halting now submits that candidate, so its return is known exactly. Costs already paid are sunk
  (they do not depend on the decision), so they are left out.
* the non-halt action taken:     y(s_t, a_t) = u(V(s_{t+1}) - λ·c_t)
  with V(s) = max(h(s), max over valid non-halt a' of u⁻¹(sigmoid(Q_target(s, a')))) - the known halt
  value stands in for the halt Q - and V(s_T) = h_T when the episode was cut (step/budget limit: the
  best candidate is submitted).

Data: each iteration runs one batch of complete episodes side by side (ε-greedy over valid actions,
λ sampled per episode by the env from its range, the recurrent carry persisting across an episode's
steps and reset per row at its start), stores them in a FIFO episode buffer and takes gradient steps
on sampled episodes, unrolled from a fresh carry (so stored episodes need no stored carries). An
optional target network (copied every ``target_update_every`` iterations) gives the bootstrap values.
Whole-episode iterations also make resume exact: at a checkpoint no episode is in flight.

Episodes come from trainers/rollout.py (the same actors and sources eval uses); this file is the rest of
the algorithm, top to bottom: batching, targets, loss, the trainer's state, and the training loop.
"""

from __future__ import annotations

import copy
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hrm_spawn.envs.progress import progress as show_progress
from hrm_spawn.policies.spawn_policy import HALT, SpawnPolicy
from hrm_spawn.trainers.checkpoint import (
    latest_checkpoint,
    load_state,
    load_weights,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from hrm_spawn.trainers.config import ActQConfig, TrainConfig
from hrm_spawn.trainers.rollout import Actor, Episode, PolicyActor, episode_scalars, make_source
from hrm_spawn.trainers.runtime import make_policy, resolve_device, seed_everything, set_threads

# ---------------------------------------------------------------------------------------------------
# Learning.


def bootstrap_weights(instance_ids: Sequence[str], members: int, seed: int) -> np.ndarray:
    """[B, E] weights: member e fits a task with weight 2 or 0, a fixed coin per (seed, e, task).

    Bootstrapped DQN's masks, drawn per task rather than per transition: each member sees about half of
    the training tasks (twice as heavily, so the mean weight stays 1), and members that never saw a
    task like the one at hand disagree about it. One member (or an episode without a task id) fits all.
    """
    out = np.ones((len(instance_ids), members), np.float32)
    if members == 1:
        return out
    for i, iid in enumerate(instance_ids):
        if iid:
            out[i] = [2.0 * (zlib.crc32(f"{seed}/{e}/{iid}".encode()) & 1) for e in range(members)]
    return out


def collate(
    episodes: Sequence[Episode], device: torch.device, members: int = 1, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Pad episodes to the longest: [B, T, ...] tensors plus ``valid`` [B, T] and ``boot`` [B, E]."""
    b, t = len(episodes), max(e.steps for e in episodes)
    seq_len, n_feat, n_act = (
        episodes[0].tokens.shape[1],
        episodes[0].features.shape[1],
        episodes[0].masks.shape[1],
    )
    tokens = np.zeros((b, t, seq_len), np.int64)
    features = np.zeros((b, t, n_feat), np.float32)
    masks = np.ones((b, t, n_act), bool)  # padding rows: any action "valid" keeps greedy/max defined
    actions = np.zeros((b, t), np.int64)
    costs = np.zeros((b, t), np.float32)
    halt_values = np.zeros((b, t + 1), np.float32)
    valid = np.zeros((b, t), bool)
    for i, e in enumerate(episodes):
        n = e.steps
        tokens[i, :n], features[i, :n], masks[i, :n] = e.tokens, e.features, e.masks
        actions[i, :n], costs[i, :n], valid[i, :n] = e.actions, e.costs, True
        halt_values[i, : n + 1] = e.halt_values
    lam = np.asarray([e.lam for e in episodes], np.float32)
    lengths = np.asarray([e.steps for e in episodes], np.int64)
    arrays = dict(
        tokens=tokens,
        features=features,
        masks=masks,
        actions=actions,
        costs=costs,
        halt_values=halt_values,
        valid=valid,
        lam=lam,
        lengths=lengths,
        boot=bootstrap_weights([e.instance_id for e in episodes], members, seed),
    )
    return {k: torch.as_tensor(v, device=device) for k, v in arrays.items()}


def unroll_q(policy: SpawnPolicy, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Members' Q logits [B, T, E, A] of every step, the carry flowing through the episode from a fresh start."""
    b, t = batch["actions"].shape
    device = batch["actions"].device
    carry = policy.initial_carry(b, device)
    reset = torch.ones(b, dtype=torch.bool, device=device)
    outs = []
    for step in range(t):
        carry, out = policy(
            carry,
            batch["tokens"][:, step],
            batch["features"][:, step],
            batch["masks"][:, step],
            reset if step == 0 else None,
        )
        outs.append(out.q_members)
    return torch.stack(outs, dim=1)


def to_unit(value: torch.Tensor, floor: float) -> torch.Tensor:
    """Return units [-floor, 1] -> the sigmoid scale [0, 1] (clipped)."""
    return ((value + floor) / (1.0 + floor)).clamp(0.0, 1.0)


def from_unit(prob: torch.Tensor, floor: float) -> torch.Tensor:
    return prob * (1.0 + floor) - floor


def act_q_targets(
    next_q_logits: torch.Tensor,
    batch: dict[str, torch.Tensor],
    floor: float = 0.25,
    select_logits: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(halt targets [B, T], taken-action targets [B, T]) on the sigmoid scale, as in the module docstring.

    Values live in return units [-floor, 1] mapped affinely onto [0, 1], so a step that costs and finds
    nothing scores below halting even where the best candidate so far is worth 0. With ``select_logits``
    (double Q-learning) the best next move is chosen on those and valued on ``next_q_logits``: a max
    over noisy estimates of one network is biased upwards, and the two networks' errors differ.
    """
    single = next_q_logits.dim() == 3  # [B, T, A]; else [B, T, E, A], one target per ensemble member
    if single:
        next_q_logits = next_q_logits.unsqueeze(2)
        select_logits = None if select_logits is None else select_logits.unsqueeze(2)
    h = batch["halt_values"].unsqueeze(-1)  # [B, T + 1, 1], return units
    b, t = batch["actions"].shape
    q_next = from_unit(torch.sigmoid(next_q_logits.float()), floor)  # [B, T, E, A] at s_t; shifted below
    masks = batch["masks"].clone()
    masks[:, :, HALT] = False  # the halt value is known exactly: h
    masks = masks.unsqueeze(2)  # [B, T, 1, A]
    if select_logits is None:
        best_move = q_next.masked_fill(~masks, -floor).amax(-1)  # [B, T, E]
    else:
        pick = select_logits.float().masked_fill(~masks, float("-inf")).argmax(-1, keepdim=True)
        best_move = torch.where(masks.any(-1), q_next.gather(-1, pick).squeeze(-1), -floor)
    v = torch.maximum(h[:, :t], best_move)  # V(s_t) for visited states
    # V(s_{t+1}): the next visited state's value, or h_T after the last step (cut episode).
    idx = torch.arange(t, device=h.device).view(1, t, 1)
    last = (batch["lengths"] - 1).view(b, 1, 1)
    v_next = torch.where(idx < last, torch.cat([v[:, 1:], v[:, -1:]], dim=1), h[:, 1:])
    taken = v_next - (batch["lam"].view(b, 1) * batch["costs"]).unsqueeze(-1)
    y_halt, y_taken = to_unit(h[:, :t].expand_as(taken), floor), to_unit(taken, floor)
    return (y_halt[..., 0], y_taken[..., 0]) if single else (y_halt, y_taken)


def act_q_loss(
    policy: SpawnPolicy,
    target: SpawnPolicy | None,
    batch: dict[str, torch.Tensor],
    floor: float = 0.25,
    double_q: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    q = unroll_q(policy, batch)  # [B, T, E, A] with gradients
    with torch.no_grad():
        q_boot = unroll_q(target, batch) if target is not None else q.detach()
        select = q.detach() if double_q and target is not None else None
        y_halt, y_taken = act_q_targets(q_boot, batch, floor, select)  # [B, T, E]
    # Each member fits the steps of its bootstrap resample of the tasks (weights [B, E]; 1 for one member).
    valid = batch["valid"].float().unsqueeze(-1) * batch["boot"].unsqueeze(1)
    moved = valid * (batch["actions"] != HALT).float().unsqueeze(-1)
    taken_idx = batch["actions"].view(*batch["actions"].shape, 1, 1).expand(-1, -1, q.shape[2], 1)
    q_taken = q.gather(-1, taken_idx).squeeze(-1)
    halt_loss = (F.binary_cross_entropy_with_logits(q[..., HALT], y_halt, reduction="none") * valid).sum()
    move_loss = (F.binary_cross_entropy_with_logits(q_taken, y_taken, reduction="none") * moved).sum()
    loss = (halt_loss + move_loss) / (valid.sum() + moved.sum()).clamp(min=1.0)
    with torch.no_grad():
        sq = torch.sigmoid(q)
        n_valid, n_moved = valid.sum().clamp(min=1.0), moved.sum().clamp(min=1.0)
        stats = {
            "loss/total": float(loss),
            "loss/halt_bce": float(halt_loss / n_valid),
            "loss/move_bce": float(move_loss / n_moved),
            "q/halt": float((sq[..., HALT] * valid).sum() / n_valid),
            "q/taken_move": float((torch.sigmoid(q_taken) * moved).sum() / n_moved),
            "q/halt_abs_err": float(((sq[..., HALT] - y_halt).abs() * valid).sum() / n_valid),
        }
        if q.shape[2] > 1:  # how much the members disagree on the moves they rate
            stats["q/member_std"] = float(sq[..., HALT + 1 :].std(2).mean())
    return loss, stats


# ---------------------------------------------------------------------------------------------------
# The trainer: state that a checkpoint captures, one iteration at a time.


def epsilon_at(cfg: ActQConfig, iteration: int) -> float:
    frac = min(1.0, iteration / max(1, cfg.epsilon_decay_iterations))
    return cfg.epsilon_start + frac * (cfg.epsilon_end - cfg.epsilon_start)


def _iteration_rng(seed: int, iteration: int, stream: int) -> np.random.Generator:
    # Derived per iteration, so a resumed run draws exactly what the uninterrupted one would have.
    return np.random.default_rng([seed, iteration, stream])


class ActQTrainer:
    """Iteration = one batch of complete episodes from ``source`` + ``updates`` gradient steps."""

    def __init__(
        self,
        config: TrainConfig,
        policy: SpawnPolicy,
        source: Callable[[Actor, np.random.Generator], list[Episode]],
        device: torch.device,
    ):
        self.config, self.cfg = config, config.act_q
        self.policy, self.source, self.device = policy.to(device), source, device
        self.target = copy.deepcopy(self.policy).eval() if self.cfg.target_update_every > 0 else None
        self.optimizer = torch.optim.AdamW(
            self.policy.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay
        )
        self.buffer: deque[Episode] = deque(maxlen=max(1, self.cfg.buffer_episodes))
        self.iteration = 0
        self.env_steps = 0
        self.episodes_done = 0

    # -- one iteration ------------------------------------------------------------------------
    def step(self) -> dict[str, Any]:
        start = time.perf_counter()
        cfg, it = self.cfg, self.iteration
        epsilon = epsilon_at(cfg, it)
        actor = PolicyActor(self.policy.eval(), self.device, epsilon, _iteration_rng(self.config.seed, it, 0))
        episodes = self.source(actor, _iteration_rng(self.config.seed, it, 2))
        if cfg.buffer_episodes == 0:
            self.buffer.clear()
        self.buffer.extend(episodes)
        self.policy.train()
        sample_rng = _iteration_rng(self.config.seed, it, 1)
        stats: dict[str, float] = {}
        for _ in range(cfg.updates):
            pool = list(self.buffer)
            pick = sample_rng.choice(len(pool), size=min(cfg.batch_episodes, len(pool)), replace=False)
            batch = collate(
                [pool[i] for i in sorted(pick)],
                self.device,
                self.policy.config.q_ensemble,
                self.config.seed,
            )
            loss, stats = act_q_loss(self.policy, self.target, batch, cfg.value_floor, cfg.double_q)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            stats["grad_norm"] = float(
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
            )
            self.optimizer.step()
        self.iteration += 1
        if self.target is not None and self.iteration % cfg.target_update_every == 0:
            self.target.load_state_dict(self.policy.state_dict())
        steps = sum(e.steps for e in episodes)
        self.env_steps += steps
        self.episodes_done += len(episodes)
        q_seen = np.concatenate(actor.q_values) if actor.q_values else np.zeros((0, 1))
        return {
            **stats,
            "epsilon": epsilon,
            "episodes": episodes,
            "q/mean_seen": float(q_seen.mean()) if q_seen.size else 0.0,
            "time/steps_per_s": steps / max(1e-9, time.perf_counter() - start),
        }

    # -- checkpoint state -----------------------------------------------------------------------
    def weights(self) -> dict[str, dict[str, torch.Tensor]]:
        out = {"policy": self.policy.state_dict()}
        if self.target is not None:
            out["target"] = self.target.state_dict()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "episodes_done": self.episodes_done,
            "optimizer": self.optimizer.state_dict(),
            "buffer": [asdict(e) for e in self.buffer],
        }

    def load(self, weights: dict[str, dict[str, torch.Tensor]], state: dict[str, Any]) -> None:
        self.policy.load_state_dict(weights["policy"])
        if self.target is not None:
            self.target.load_state_dict(weights.get("target", weights["policy"]))
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.clear()
        self.buffer.extend(Episode(**e) for e in state["buffer"])
        self.iteration = int(state["iteration"])
        self.env_steps = int(state["env_steps"])
        self.episodes_done = int(state["episodes_done"])


# ---------------------------------------------------------------------------------------------------
# The loop: iterations, TensorBoard, checkpoints, resume.


def train_act_q(
    config: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> Path:
    """Run ACT Q-learning; returns the last checkpoint. ``stop_after`` ends early (tests: a "kill")."""
    from torch.utils.tensorboard import SummaryWriter

    seed_everything(config.seed)
    set_threads(config)
    device = resolve_device(config.device)
    source, spaces_env = make_source(config, config.act_q.num_envs)
    policy = make_policy(config, spaces_env)
    trainer = ActQTrainer(config, policy, source, device)
    ckpt = latest_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        state = load_state(ckpt)
        trainer.load(
            {k: load_weights(ckpt, k) for k in ("policy", "target") if (ckpt / f"{k}.safetensors").is_file()},
            state["trainer"],
        )
        set_rng_state(state["rng"])
    writer = SummaryWriter(str(run_dir / "tb"))
    total = config.act_q.iterations
    last = ckpt
    try:
        with show_progress("act_q", total, trainer.iteration, enabled=progress, unit="it") as bar:
            while trainer.iteration < total:
                out = trainer.step()
                episodes = out.pop("episodes")
                it = trainer.iteration
                if it % config.log_every == 0 or it == total:
                    _log(writer, out, episodes, trainer.env_steps)
                bar.update(
                    1, ret=episode_scalars(episodes)["episode/return"], loss=out.get("loss/total", 0.0)
                )
                if it % config.checkpoint_every == 0 or it == total:
                    last = _checkpoint(run_dir, config, trainer)
                if stop_after is not None and it >= stop_after:
                    break
    finally:
        writer.close()
        source.close()
    assert last is not None
    return last


def _checkpoint(run_dir: Path, config: TrainConfig, trainer: ActQTrainer) -> Path:
    state = {"trainer": trainer.state_dict(), "rng": rng_state()}
    meta = {"iteration": trainer.iteration, "env_steps": trainer.env_steps, "episodes": trainer.episodes_done}
    path = save_checkpoint(run_dir, trainer.iteration, config, trainer.weights(), state, meta)
    prune_checkpoints(run_dir, keep=2)
    return path


def _log(writer: Any, stats: dict[str, Any], episodes: list[Episode], env_steps: int) -> None:
    for key, value in {**stats, **episode_scalars(episodes)}.items():
        writer.add_scalar(key, value, env_steps)
    halts = np.asarray([e.steps - 1 for e in episodes if e.actions[-1] == HALT])
    if halts.size:
        writer.add_histogram("episode/halting_step", halts, env_steps)
