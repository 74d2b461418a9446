"""Observation layout and tokens shared by SpawnEnv and the batched replay env (the same numbers in both).

The feature *values* are computed by envs/episode.py (``observation_features``); this module names them
and builds the token rows.

tokens: ``[cls] problem statement [sep] failing tests`` in the head, then a history region at the tail
of ``R`` fixed-width entries (the most recent R agent returns, oldest first), one per spawn/delegate:
``"+op-flip 0.50 3.2"`` (``+`` spawn, ``>`` delegate, visible pass-rate, cost in units, ``!sta`` when the
run did not end "ok"). Fixed width lets the batched env write entries with one vectorised copy.

features (float32, ``7 + 12 + 4K``): λ, step/max_steps, cost spent/max_cost, cost left/max_cost, best
visible pass-rate, has-candidate, λ·max_cost; then the task's failure profile (how many tests fail, in
three coarse bins, and the share of each failure kind in the problem statement); then per agent k:
spawns/seeds, delegations/max_steps, last visible pass-rate, last cost/max_cost. λ·max_cost is λ on the
scale of the score (the score the whole budget is worth): raw λ is ~0.01, which a network barely sees
next to features of order 1. The failure profile is coarse on purpose: it tells kinds of task apart
(a removed function fails a hundred tests with NameErrors, reordered statements fail with
UnboundLocalErrors) without telling the individual training tasks apart, which a policy would memorise.

Costs can be coarse for the same reason (``cost_bin`` > 0: every cost the policy sees, in the features
and in the history text, is rounded to a multiple of ``cost_bin · max_cost``). A run's exact cost is the
task's test-suite time in disguise, unique per task: with it a policy learns each training task's
cascade and keeps spawning on new tasks it takes for old ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hrm_spawn.envs.problem import FAILURE_KINDS, failure_kind_shares
from hrm_spawn.envs.tokenizer import BYTE_OFFSET, ByteTokenizer

HIST_WIDTH = 24  # tokens per history entry
GLOBAL_FEATURES = (
    "lambda",
    "step",
    "cost_spent",
    "cost_left",
    "best_visible",
    "has_candidate",
    "lambda_budget",
)
TASK_FEATURES = ("one_failing", "few_failing", "many_failing") + tuple(f"fails.{k}" for k in FAILURE_KINDS)
AGENT_FEATURES = ("spawns", "delegations", "last_visible", "last_cost")
FEW_FAILING, MANY_FAILING = 0.05, 0.25  # shares of the task's tests


def num_features(num_agents: int) -> int:
    return len(GLOBAL_FEATURES) + len(TASK_FEATURES) + len(AGENT_FEATURES) * num_agents


def feature_names(agents: Sequence[str]) -> list[str]:
    return list(GLOBAL_FEATURES) + list(TASK_FEATURES) + [f"{a}.{f}" for a in agents for f in AGENT_FEATURES]


def layout() -> str:
    """The feature layout as text: part of what names a quickstart run (a new layout, a new run)."""
    return ",".join((*GLOBAL_FEATURES, *TASK_FEATURES, *(f"k.{f}" for f in AGENT_FEATURES)))


def task_features(task, enabled: bool = True) -> np.ndarray:
    """The failure profile of a TaskInstance (``TASK_FEATURES``); zeros when disabled."""
    out = np.zeros(len(TASK_FEATURES), np.float32)
    if not enabled:
        return out
    failing = len(task.FAIL_TO_PASS)
    share = failing / max(1, failing + len(task.PASS_TO_PASS))
    out[:3] = [failing == 1, failing > 1 and share <= FEW_FAILING, share > MANY_FAILING]
    out[3:] = list(failure_kind_shares(task.problem_statement).values())
    return out


def history_slots(seq_len: int, max_steps: int) -> int:
    """How many entries the history region holds: at most half the sequence, at most one per step."""
    return max(1, min(max_steps, (seq_len // 2) // HIST_WIDTH))


def cost_share(cost, max_cost: float, cost_bin: float = 0.0):
    """Cost as a share of ``max_cost``, rounded to a multiple of ``cost_bin`` when that is > 0 (arrays too)."""
    share = np.asarray(cost, dtype=np.float64) / max_cost
    return np.round(share / cost_bin) * cost_bin if cost_bin > 0 else share


def history_entry(
    delegate: bool,
    agent: str,
    visible: float,
    cost: float,
    status: str,
    max_cost: float = 1.0,
    cost_bin: float = 0.0,
) -> np.ndarray:
    """One history entry; the cost shown is binned as the cost features are (``cost_share``)."""
    shown = float(cost_share(cost, max_cost, cost_bin)) * max_cost
    text = f"{'>' if delegate else '+'}{agent[:10]} {visible:.2f} {shown:.1f}"
    if status != "ok":
        text += f" !{status[:4]}"
    data = np.frombuffer(text.encode("utf-8", "replace")[:HIST_WIDTH], dtype=np.uint8).astype(np.int64)
    out = np.zeros(HIST_WIDTH, dtype=np.int64)
    out[: len(data)] = data + BYTE_OFFSET
    return out


def static_tokens(
    problem_statement: str | None, failing_tests: Sequence[str], seq_len: int, max_steps: int
) -> np.ndarray:
    """The full-length token row with the history region empty (zeros)."""
    head = seq_len - history_slots(seq_len, max_steps) * HIST_WIDTH
    if head < 2:
        raise ValueError(
            f"seq_len {seq_len} is too short for {max_steps} history entries of {HIST_WIDTH} tokens"
        )
    tests = "failing tests:\n" + "\n".join(failing_tests)
    out = np.zeros(seq_len, dtype=np.int64)
    out[:head] = ByteTokenizer(head).encode_segments([problem_statement or "(no problem statement)", tests])
    return out


def task_tokens(task, seq_len: int, max_steps: int, with_text: bool = True) -> np.ndarray:
    """``static_tokens`` of a TaskInstance; without its text, the same row for every task."""
    if not with_text:
        return static_tokens(None, [], seq_len, max_steps)
    return static_tokens(task.problem_statement, task.FAIL_TO_PASS, seq_len, max_steps)


def push_history(tokens: np.ndarray, entry: np.ndarray, slots: int) -> None:
    """Shift the history region left by one entry (in place) and write ``entry`` last."""
    start = tokens.shape[-1] - slots * HIST_WIDTH
    tokens[..., start : tokens.shape[-1] - HIST_WIDTH] = tokens[..., start + HIST_WIDTH :].copy()
    tokens[..., tokens.shape[-1] - HIST_WIDTH :] = entry
