"""Baseline policies, as actors over batched observations: ``act(obs, reset_rows) -> actions``.

* ``halt``          submit nothing (halt at once).
* ``single:<a>``    spawn agent a once, then halt.
* ``spawn_all``     spawn every agent once (in order), then halt.
* ``best_cascade``  the best fixed order of spawns/delegations with a stop rule (halt as soon as the best
                    candidate passes every visible test), chosen by score on the training split among
                    every sequence of up to 3 steps and every spawn order of up to 5 distinct agents
                    (``cascade_candidates``).
* ``random``        a uniformly random valid action each step (halt included).
* ``oracle``        the cheapest action sequence to the best reachable score, per task (envs/oracle.py).

The stop rule and the skipping of masked actions read only what the policy sees (features and mask),
so every baseline is a fair competitor; only the oracle knows hidden scores.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from hrm_spawn.envs.episode import HALT, ActionLayout
from hrm_spawn.envs.features import GLOBAL_FEATURES

BEST_VISIBLE = GLOBAL_FEATURES.index("best_visible")
HAS_CANDIDATE = GLOBAL_FEATURES.index("has_candidate")


def halt_actor(obs: dict[str, np.ndarray], reset_rows: np.ndarray) -> np.ndarray:
    return np.full(len(obs["action_mask"]), HALT, np.int64)


class SequenceActor:
    """Row i follows ``sequences[i]`` (non-halt actions), skipping masked ones, then halts.

    With ``stop_visible`` it halts early once the best candidate's visible pass-rate reaches it.
    """

    def __init__(self, sequences: Sequence[Sequence[int]], stop_visible: float | None = None):
        self.sequences = [list(s) for s in sequences]
        self.stop_visible = stop_visible
        self.pos = np.zeros(len(self.sequences), np.int64)

    def __call__(self, obs: dict[str, np.ndarray], reset_rows: np.ndarray) -> np.ndarray:
        masks = np.asarray(obs["action_mask"]).astype(bool)
        if len(masks) != len(self.sequences):
            raise ValueError(f"SequenceActor: {len(self.sequences)} sequences for {len(masks)} envs")
        self.pos[np.asarray(reset_rows, bool)] = 0
        actions = np.zeros(len(masks), np.int64)
        feats = obs["features"]
        for row, seq in enumerate(self.sequences):
            if (
                self.stop_visible is not None
                and feats[row, HAS_CANDIDATE] > 0
                and feats[row, BEST_VISIBLE] >= self.stop_visible
            ):
                continue
            while self.pos[row] < len(seq) and not masks[row, seq[self.pos[row]]]:
                self.pos[row] += 1  # not possible here (used up, no candidate, not in the store): skip it
            if self.pos[row] < len(seq):
                actions[row] = seq[self.pos[row]]
                self.pos[row] += 1
        return actions


class RandomActor:
    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: dict[str, np.ndarray], reset_rows: np.ndarray) -> np.ndarray:
        masks = np.asarray(obs["action_mask"]).astype(bool)
        return np.asarray([self.rng.choice(np.flatnonzero(m)) for m in masks], np.int64)


def single_sequence(agent_index: int) -> list[int]:
    return [ActionLayout(agent_index + 1).spawn(agent_index)]


def spawn_all_sequence(num_agents: int) -> list[int]:
    layout = ActionLayout(num_agents)
    return [layout.spawn(k) for k in range(num_agents)]


CASCADE_MAX_LEN = 3  # mixed spawn/delegate sequences: every one of up to this many steps
# Spawn orders: every order of up to this many distinct agents (K!/(K-m)! of length m: 325 in all for
# five agents). Past it the count grows as K!, so with more agents orders stop at five.
CASCADE_MAX_AGENTS = 5


def cascade_candidates(
    num_agents: int, max_len: int, max_agents: int = CASCADE_MAX_AGENTS
) -> list[tuple[int, ...]]:
    """The cascades best_cascade chooses from, without repeats: every ordered sequence of spawn/delegate
    actions of 1..``max_len`` steps, then every order of spawns of up to ``max_agents`` distinct agents
    (so with four agents "try all four, in the best order" is a candidate)."""
    layout = ActionLayout(num_agents)
    moves = [a for a in range(layout.n) if a != HALT]
    out: dict[tuple[int, ...], None] = {}  # ordered: on a tie the earlier, shorter cascade wins
    for length in range(1, max_len + 1):
        for seq in itertools.product(moves, repeat=length):
            if layout.decode(seq[0])[0] == "delegate":  # a delegation first is always masked
                continue
            out[seq] = None
    spawns = [layout.spawn(k) for k in range(num_agents)]
    for length in range(max_len + 1, min(max_agents, num_agents) + 1):
        for seq in itertools.permutations(spawns, length):
            out[seq] = None
    return list(out)


def cascade_name(seq: Sequence[int], agents: Sequence[str]) -> str:
    layout = ActionLayout(len(agents))
    return " > ".join(layout.name(a, agents) for a in seq)
