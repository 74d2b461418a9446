"""A SYNTHETIC outcome table of four LLM-like agents that differ by repository, for decision-quality runs.

Not recorded data: every figure is drawn from the probabilities below, so that the spawn policy meets
agents that differ the way real ones do (a cheap agent good on some repositories, a specialist on
others, an expensive strong one) on a table shaped like a leaderboard's (one record per task x agent:
resolved, cost in USD, tokens, steps). Each task's problem text names its repository, which is what a
policy can see of the task before it spawns (the runs themselves report nothing).

    python benchmarks/synthetic_table.py --out DIR [--tasks-per-repo 20] [--seed 0]

writes DIR/table.jsonl (the records), DIR/tasks.jsonl (the tasks with their text, replay only) and
DIR/train.yaml (an ACT Q config for the imported store), and prints the commands that import the table
and run the cross-fitted comparison (docs/results.md, "Imported tables").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# The shared benchmark helpers, also when a test loads this file by its path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import results_dir  # noqa: E402
from _tables import small_hrm  # noqa: E402

# Resolve probability per (repository, agent). cheap: good on two repositories; specialist: on two
# others; strong: fair everywhere, best on the hard two; medium: middling everywhere.
AGENTS = {"cheap": 0.02, "medium": 0.10, "specialist": 0.06, "strong": 0.40}  # mean USD per run
RESOLVE = {
    "acme/webkit": {"cheap": 0.80, "medium": 0.55, "specialist": 0.10, "strong": 0.85},
    "acme/forms": {"cheap": 0.75, "medium": 0.50, "specialist": 0.15, "strong": 0.80},
    "numlab/solver": {"cheap": 0.05, "medium": 0.35, "specialist": 0.85, "strong": 0.60},
    "numlab/sparse": {"cheap": 0.10, "medium": 0.30, "specialist": 0.80, "strong": 0.55},
    "dataio/parser": {"cheap": 0.05, "medium": 0.20, "specialist": 0.05, "strong": 0.70},
    "dataio/codec": {"cheap": 0.00, "medium": 0.15, "specialist": 0.10, "strong": 0.65},
}
STATEMENT = "Repository {repo}. Issue {n}: a call returns the wrong result; see the failing test."


def generate(tasks_per_repo: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(records, tasks): one record per task x agent, one replay-only task per id with its text."""
    rng = np.random.default_rng(seed)
    records, tasks = [], []
    for repo, probs in RESOLVE.items():
        for n in range(tasks_per_repo):
            instance_id = f"{repo.replace('/', '__')}-{n + 1}"
            tasks.append(
                {
                    "instance_id": instance_id,
                    "repo": repo,
                    "problem_statement": STATEMENT.format(repo=repo, n=n + 1),
                    "replay_only": True,
                }
            )
            for agent, usd in AGENTS.items():
                cost = float(round(usd * rng.uniform(0.6, 1.4), 4))
                tokens_in = int(cost / usd * 20_000)
                records.append(
                    {
                        "instance_id": instance_id,
                        "agent": agent,
                        "resolved": bool(rng.random() < probs[agent]),
                        "cost_usd": cost,
                        "tokens_in": tokens_in,
                        "tokens_out": tokens_in // 10,
                        "steps": int(rng.integers(5, 40)),
                        "repo": repo,
                    }
                )
    return records, tasks


def train_config(out: Path) -> dict:
    """ACT Q on the imported store: λ per USD, max_cost in USD, the repository visible in the text."""
    return {
        "algo": "act_q",
        "seed": 0,
        "device": "cpu",
        "torch_threads": 2,
        "env": {
            "tasks": str(out / "store.sqlite.tasks.jsonl"),
            "store": str(out / "store.sqlite"),
            "agents": [f"{a}@imported" for a in AGENTS],
            "mode": "replay",
            "split": "train",
            "seeds_per_agent": 1,
            "delegate_seeds": 1,
            "max_steps": 4,
            "max_cost": 1.0,  # USD: more than every agent once
            "seq_len": 96,
            "reward": "resolved",
            "lam": [0.0, 1.0],  # per USD
            "observe": "none",
        },
        "policy": small_hrm(seq_len=96),
        "act_q": {  # a couple of CPU minutes per fold on 2 shared cores: a small run, not a converged one
            "iterations": 40,
            "num_envs": 16,
            "updates": 2,
            "batch_episodes": 32,
            "lr": 0.003,
            "epsilon_start": 0.5,
            "epsilon_end": 0.05,
            "epsilon_decay_iterations": 30,
            "target_update_every": 10,
        },
        "checkpoint_every": 40,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for table.jsonl, tasks.jsonl, train.yaml (default: synthetic_table/ in the results folder)",
    )
    parser.add_argument("--tasks-per-repo", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import yaml

    out = (args.out or results_dir() / "synthetic_table").expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    records, tasks = generate(args.tasks_per_repo, args.seed)
    (out / "table.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (out / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks), encoding="utf-8")
    (out / "train.yaml").write_text(
        "# SYNTHETIC table (benchmarks/synthetic_table.py): not recorded data.\n"
        + yaml.safe_dump(train_config(out), sort_keys=False),
        encoding="utf-8",
    )
    print(f"SYNTHETIC table: {len(records)} runs of {len(AGENTS)} agents on {len(tasks)} tasks -> {out}")
    print(
        f"hrm-spawn store import {out / 'table.jsonl'} --format jsonl --store {out / 'store.sqlite'} "
        f"--tasks {out / 'tasks.jsonl'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
