"""Decision quality on a REAL outcome table: SWE-Bench Pro runs of several LLM agents, cross-fitted.

The table is ``data/agent_runs_data.csv`` of the public repository
``nilenso/swe-bench-pro-cost-token-time-analysis`` (one row per run: ``metadata.instance_id``,
``metadata.model_name``, ``metadata.resolved``, ``metadata.turns``, ``created_at``). It has no stated
licence, so it is not in this repository and neither is anything made from it: the script takes its
path and writes everything under ``--out``. Get it with::

    git clone https://github.com/nilenso/swe-bench-pro-cost-token-time-analysis
    git -C swe-bench-pro-cost-token-time-analysis show 47afeb2^:data/agent_runs_data.csv > agent_runs.csv

(the file was removed from the tree in commit 47afeb2; ``47afeb2^`` is its last version).

    python benchmarks/real_table.py --table agent_runs.csv --out DIR [--folds 3] [--iterations 100]

1. **table**: the chosen models' rows; one run per (task, model), the first by ``created_at`` then
   ``agent_run_id`` (the count of dropped duplicates is printed); only tasks every chosen model ran
   (the replay env needs an outcome of each agent it may spawn on a task) -> ``DIR/table.csv``;
2. **import**: ``hrm-spawn store import`` with ``--columns`` for the ``metadata.*`` names, cost = turns x
   an assumed USD price per turn per model (``PRICE_PER_STEP``; the store's ``cost_basis`` says so)
   and ``--task-text repo``: each task's problem text is its repository (in its SWE-Bench Pro id), the
   only thing a policy sees of a task before it spawns;
3. **cross-fit**: per observation variant (``verifier``: a run's resolved flag is visible; ``none``: no
   signal), ``hrm-spawn crossfit`` with ``--folds`` folds: every task judged once by a policy that never
   saw it, against every single agent, spawn_all, best_cascade (every order of up to 5 agents), random
   and the oracle, with bootstrap intervals -> ``DIR/<variant>/report.{json,md}``, ``pareto.png``;
4. **summary** -> ``DIR/summary.json`` and stdout: the targets of issue 17 item 6 per variant (resolve vs
   the oracle's, cost vs spawn_all's, score vs the best non-oracle baseline at every λ of the sweep,
   with paired intervals), which agent the HRM spawns first on each held-out task (overall and per
   repository), and what limits the targets in the table itself (``table_limits``);
5. **held-out rules** (``heldout_rules``, benchmarks/_rules.py; also alone with ``--limits-only``, which
   writes ``DIR/rules.json``): fixed cascades, global or per repository, with or without a halt after a
   long failed run, chosen on the HRM's training folds and judged on its held-out ones: what a policy
   that sees what the HRM sees reaches on new tasks (score per λ, resolve/cost frontier).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

# The shared benchmark helpers, also when a test loads this file by its path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import skip  # noqa: E402
from _tables import small_hrm  # noqa: E402

COLUMNS = (
    "task=metadata.instance_id,agent=metadata.model_name,resolved=metadata.resolved,steps=metadata.turns"
)
# The five models of the table's October 2025 runs that ran nearly every task, strongest to weakest by
# resolve-rate; the short names are the store's agents.
AGENTS = {
    "Claude 4.5 Sonnet - 10132025": "sonnet45",
    "Claude 4.5 Haiku -- 10222025": "haiku45",
    "GPT-5 - 10132025": "gpt5",
    "GLM-4.5 -- 10222025": "glm45",
    "Kimi - paper": "kimi",
}
# ASSUMED USD per turn: the model's list price per million input tokens x 0.02 (20k input tokens a
# turn, output not counted). Not measured: the table has turns, not tokens. Ratios are what λ weighs.
PRICE_PER_STEP = {
    "Claude 4.5 Sonnet - 10132025": 0.06,  # 3 USD / Mtok
    "Claude 4.5 Haiku -- 10222025": 0.02,  # 1 USD / Mtok
    "GPT-5 - 10132025": 0.025,  # 1.25 USD / Mtok
    "GLM-4.5 -- 10222025": 0.012,  # 0.6 USD / Mtok
    "Kimi - paper": 0.012,  # 0.6 USD / Mtok
}
LAM = (0.0, 0.2)  # per USD: at 0.2 a Sonnet run (~4.6 USD) costs ~0.9 resolve
VARIANTS = ("verifier", "none")


# ---- 1. the table ------------------------------------------------------------------------------------


def _when(text: str) -> datetime:
    """``Oct 13, 2025, 10:41 PM UTC`` (the table's spelling)."""
    return datetime.strptime(text.replace(" UTC", ""), "%b %d, %Y, %I:%M %p")


def prepare_table(src: Path, dst: Path, models: list[str]) -> dict[str, Any]:
    """The chosen models' rows, one per (task, model), on the tasks every model ran -> ``dst``."""
    with src.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = [r for r in reader if r["metadata.model_name"] in models]
    rows.sort(key=lambda r: (_when(r["created_at"]), r["agent_run_id"]))
    first: dict[tuple[str, str], dict[str, str]] = {}
    for r in rows:
        first.setdefault((r["metadata.instance_id"], r["metadata.model_name"]), r)
    ran: dict[str, set[str]] = defaultdict(set)
    for task, model in first:
        ran[task].add(model)
    tasks = sorted(t for t, m in ran.items() if len(m) == len(models))
    keep = [first[(t, m)] for t in tasks for m in models]
    with dst.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(keep)
    return {
        "rows_of_models": len(rows),
        "duplicates_dropped": len(rows) - len(first),
        "tasks_any_model": len(ran),
        "tasks_all_models": len(tasks),
    }


# ---- 2. the import and the config --------------------------------------------------------------------


def import_store(out: Path) -> Any:
    from hrm_spawn.envs.store_import import import_table

    agent_map = ",".join(f"{raw}={short}" for raw, short in AGENTS.items())
    return import_table(
        out / "table.csv",
        "csv",
        out / "store.sqlite",
        agent_map,
        columns=COLUMNS,
        price_per_step=dict(PRICE_PER_STEP),
        task_text="repo",
    )


def train_config(out: Path, iterations: int) -> dict[str, Any]:
    """ACT Q on the imported store: λ per USD, a budget above every agent once, the repository as text."""
    return {
        "algo": "act_q",
        "seed": 0,
        "device": "cpu",
        "torch_threads": 1,  # on 2 cores shared with other work, 2 threads made an iteration ~20x slower
        "env": {
            "tasks": str(out / "store.sqlite.tasks.jsonl"),
            "store": str(out / "store.sqlite"),
            "agents": [f"{a}@imported" for a in AGENTS.values()],
            "mode": "replay",
            "split": "train",
            "seeds_per_agent": 1,
            "delegate_seeds": 1,
            "max_steps": 5,
            "max_cost": 30.0,  # USD: above the dearest task's five runs
            "seq_len": 96,
            "reward": "resolved",
            "lam": list(LAM),
            "observe": "verifier",
            "cost_bin": 0.02,  # coarse costs: an exact cost would name the training task
        },
        "policy": small_hrm(seq_len=96),
        "act_q": {
            "iterations": iterations,
            "num_envs": 32,  # ~0.8 s an iteration on one busy core: 100 iterations, ~1.5 min a fold
            "updates": 2,
            "batch_episodes": 16,
            "lr": 0.003,
            "epsilon_start": 0.5,
            "epsilon_end": 0.05,
            "epsilon_decay_iterations": max(1, int(iterations * 0.7)),
            "target_update_every": 10,
        },
        "checkpoint_every": iterations,
    }


# ---- 3. cross-fit, first agents ----------------------------------------------------------------------


def first_agents(fold_dirs: list[Path], lams: list[float]) -> dict[str, Any]:
    """Per λ: which agent the HRM spawns first on each held-out task (pooled over the folds), overall
    and per repository; how many distinct first agents, how many tasks it halts on at once."""
    import torch

    from hrm_spawn.envs.episode import ActionLayout
    from hrm_spawn.trainers.checkpoint import latest_checkpoint, load_train_config
    from hrm_spawn.trainers.evaluate import env_replay_sets, load_actor

    out: dict[str, Any] = {}
    for lam in lams:
        overall: Counter[str] = Counter()
        per_repo: dict[str, Counter[str]] = defaultdict(Counter)
        per_fold: list[dict[str, int]] = []
        for fold_dir in fold_dirs:
            fold: Counter[str] = Counter()
            ckpt = latest_checkpoint(fold_dir)
            config = load_train_config(ckpt)
            _, test = env_replay_sets(config, "heldout")
            agents = list(config.env.agents)
            layout = ActionLayout(len(agents))
            actor = load_actor(ckpt, test.observation_space, layout.n, torch.device("cpu"), config)
            repo = {t.instance_id: t.repo for t in test.tasks}
            for ep in test.run(actor, lam):
                kind, k = layout.decode(int(ep.actions[0])) if len(ep.actions) else ("halt", -1)
                name = "halt" if kind == "halt" else agents[k].split("@")[0]
                overall[name] += 1
                fold[name] += 1
                per_repo[repo[ep.instance_id]][name] += 1
            per_fold.append(dict(fold.most_common()))
        out[f"{lam:g}"] = {
            "overall": dict(overall.most_common()),
            "distinct": len(overall),
            "per_fold": per_fold,  # a fold's policy that spawns one agent first everywhere ignores the task
            "per_repo": {r: dict(c.most_common()) for r, c in sorted(per_repo.items())},
        }
    return out


def sweep_verdicts(crossfit_json: Path, seed: int = 0) -> list[dict[str, Any]]:
    """Per λ of the sweep: the HRM's score, the best non-oracle baseline's, and the paired interval of
    the difference (HRM - that baseline) over the tasks."""
    from hrm_spawn.trainers import stats

    data = json.loads(crossfit_json.read_text())["outcomes"]
    rows = []
    for j, lam in enumerate(data["lams"]):
        score = {
            name: np.asarray(p["pass_rate"][j]) - lam * np.asarray(p["cost"][j])
            for name, p in data["policies"].items()
        }
        others = {n: s.mean() for n, s in score.items() if n not in ("hrm", "oracle")}
        best = max(others, key=lambda n: others[n])
        diff = stats.paired_difference(score["hrm"], score[best], 2000, seed)
        resolved = {n: float(np.mean(p["resolved"][j])) for n, p in data["policies"].items()}
        cost = {n: float(np.mean(p["cost"][j])) for n, p in data["policies"].items()}
        rows.append(
            {
                "lam": lam,
                "hrm": float(score["hrm"].mean()),
                "best_other": best,
                "best_other_score": float(others[best]),
                "hrm_minus_best": diff.to_dict(),
                "hrm_resolve_vs_oracle": resolved["hrm"] / max(resolved["oracle"], 1e-9),
                "hrm_cost_vs_spawn_all": cost["hrm"] / max(cost["spawn_all"], 1e-9),
            }
        )
    return rows


# ---- 4. what the table allows ------------------------------------------------------------------------


def table_limits(out: Path) -> dict[str, Any]:
    """Figures of the table itself (all tasks, in-sample): the oracle's resolve-rate against the best
    single agent's, and the cheapest a verifier cascade can reach 95 % of the oracle: a cascade pays
    for every agent on every task none resolves, which no policy that sees only the repository avoids."""
    from _rules import NEVER, rule_outcomes

    runs = load_runs(out / "table.csv")
    n = len(runs.tasks)
    per_task_all = runs.usd.sum(1)
    spawn_all = float(per_task_all.mean())
    solvable = runs.resolved.any(1)
    oracle = float(solvable.mean())
    singles = {AGENTS[m]: float(runs.resolved[:, k].mean()) for k, m in enumerate(AGENTS)}
    # every cascade (order of 1-5 agents, stopping at the first resolve the verifier shows) on every task
    solved, cost = rule_outcomes(runs, [(o, NEVER) for o in _index_orders()])
    by_repo = _repo_sums(solved, cost, runs.repos)
    lam = sum(LAM) / 2
    return {
        "tasks": n,
        "oracle_resolve": oracle,
        "best_single": max(singles.items(), key=lambda kv: kv[1]),
        "singles_resolve": singles,
        "spawn_all_usd": spawn_all,
        "unsolved_share": float(1 - oracle),
        # every cascade that reaches the oracle spawns all five on the unsolved tasks
        "unsolved_cost_vs_spawn_all": float(per_task_all[~solvable].sum()) / n / spawn_all,
        # the cheapest way to 95 % of the oracle with one verifier cascade per repository, chosen on
        # all tasks (in-sample): a bound for a policy that sees the repository and nothing else
        "repo_cascades_95pct_oracle_cost_vs_spawn_all": repo_cascade_bound(by_repo, 0.95 * oracle * n)
        / n
        / spawn_all,
        # at the report's λ, in-sample: the best single cascade's score and the best one-per-repository's
        # (what knowing the repository is worth at most, before any generalisation to new tasks)
        "lam": lam,
        "best_cascade_score_in_sample": float((solved.sum(1) - lam * cost.sum(1)).max()) / n,
        "best_repo_cascades_score_in_sample": sum(float((s - lam * c).max()) for s, c in by_repo) / n,
    }


def _orders() -> list[tuple[str, ...]]:
    from itertools import permutations

    models = list(AGENTS)
    return [o for m in range(1, len(models) + 1) for o in permutations(models, m)]


def _index_orders() -> list[tuple[int, ...]]:
    """``_orders`` as agent indices (the columns of ``load_runs``'s arrays)."""
    index = {m: k for k, m in enumerate(AGENTS)}
    return [tuple(index[m] for m in o) for o in _orders()]


def _repo_of(instance_id: str) -> str:
    from hrm_spawn.envs.store_import import repo_from_id

    return repo_from_id(instance_id)


def _repo_sums(solved: np.ndarray, cost: np.ndarray, repos: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per repository, every rule's (tasks resolved, total cost) on its tasks: rows of ``solved``/``cost``."""
    return [
        (solved[:, mask].sum(1), cost[:, mask].sum(1))
        for mask in (np.asarray([r == repo for r in repos]) for repo in sorted(set(repos)))
    ]


def repo_cascade_bound(by_repo: list[tuple[np.ndarray, np.ndarray]], need: float) -> float:
    """The least total cost of one cascade per repository (``by_repo``: each cascade's tasks resolved and
    cost there) that resolves at least ``need`` tasks: a knapsack over repositories on the number resolved."""
    best: dict[int, float] = {0: 0.0}  # tasks resolved -> least cost so far
    for solved, cost in by_repo:
        options: dict[int, float] = {}
        for k, c in zip(solved.astype(int), cost, strict=True):
            options[int(k)] = min(options.get(int(k), np.inf), float(c))
        merged: dict[int, float] = {}
        for a, ca in best.items():
            for b, cb in options.items():
                merged[a + b] = min(merged.get(a + b, np.inf), ca + cb)
        best = merged
    return min(c for k, c in best.items() if k >= need)


# ---- 5. held-out rules --------------------------------------------------------------------------------


def load_runs(table: Path) -> Any:
    """The prepared table (``DIR/table.csv``) as arrays, agents in ``AGENTS`` order, tasks sorted."""
    from _rules import Runs

    models = list(AGENTS)
    seen: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
    for r in csv.DictReader(table.open(encoding="utf-8")):
        seen[r["metadata.instance_id"]][r["metadata.model_name"]] = r
    tasks = sorted(seen)
    cell = [[seen[t][m] for m in models] for t in tasks]
    turns = np.asarray([[int(r["metadata.turns"]) for r in row] for row in cell])
    return Runs(
        tasks=tasks,
        repos=[_repo_of(t) for t in tasks],
        resolved=np.asarray([[r["metadata.resolved"].lower() == "true" for r in row] for row in cell]),
        usd=turns * np.asarray([PRICE_PER_STEP[m] for m in models]),
        turns=turns,
    )


def table_folds(tasks: list[str], folds: int, seed: int = 0) -> list[int]:
    """Each task's fold as ``hrm-spawn crossfit`` assigns it on the imported store: envs/split.py
    ``assign_folds`` on the tasks the import writes (replay-only, the repository from the id), so the
    rules are judged on the HRM's own held-out folds (``seed``: env.split_seed, 0 in ``train_config``)."""
    from hrm_spawn.envs.split import assign_folds
    from hrm_spawn.envs.tasks import TaskInstance

    made = [TaskInstance(instance_id=t, repo=_repo_of(t), replay_only=True) for t in tasks]
    return assign_folds(made, folds, seed)


def heldout_rules(out: Path, folds: int = 3, seed: int = 0) -> dict[str, Any]:
    """Cross-fitted fixed rules on ``DIR/table.csv`` (benchmarks/_rules.py): per class (global or
    per-repository cascade, with or without a turn halt; one agent, global or per repository), the
    held-out score at each λ of the sweep and the held-out (resolve ÷ oracle, cost ÷ spawn_all) frontier.
    What a policy that sees what the HRM sees reaches on new tasks, where ``table_limits`` is in-sample."""
    from _rules import compare_classes

    from hrm_spawn.trainers.evaluate import sweep_lambdas

    runs = load_runs(out / "table.csv")
    orders = _index_orders()
    lams = sweep_lambdas(*LAM)
    return {
        "folds": folds,
        "split_seed": seed,
        "lams": lams,
        "classes": compare_classes(runs, orders, table_folds(runs.tasks, folds, seed), lams),
    }


def print_rules(rules: dict[str, Any]) -> None:
    from _rules import rules_table

    print(f"\n## held-out rules ({rules['folds']} folds, split seed {rules['split_seed']})\n")
    print(rules_table(rules["classes"], rules["lams"]))


# ---- main --------------------------------------------------------------------------------------------


def run_variant(out: Path, variant: str, folds: int, base: dict[str, Any]) -> dict[str, Any]:
    from hrm_spawn.envs.config import build_config
    from hrm_spawn.trainers.config import TrainConfig
    from hrm_spawn.trainers.crossfit import crossfit, interval_table, summary_line
    from hrm_spawn.trainers.evaluate import sweep_lambdas
    from hrm_spawn.trainers.report import comparison_table

    cfg = build_config(TrainConfig, {**base, "env": {**base["env"], "observe": variant}})
    start = time.perf_counter()
    report = crossfit(cfg, folds, out / variant)
    seconds = time.perf_counter() - start
    print(f"\n## observe={variant} ({folds} folds, {seconds:.0f} s)\n")
    print(comparison_table(report))
    print(interval_table(report["intervals"]))
    print(summary_line(report["intervals"]))
    lams = sweep_lambdas(*LAM)
    firsts = first_agents([out / variant / f"fold{k}" for k in range(folds)], [LAM[0], sum(LAM) / 2, LAM[1]])
    sweep = sweep_verdicts(out / variant / "crossfit.json")
    for row in sweep:
        d = row["hrm_minus_best"]
        print(
            f"λ {row['lam']:.3f}: hrm {row['hrm']:.3f}, best other {row['best_other']} "
            f"{row['best_other_score']:.3f}, diff {d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]; "
            f"resolve/oracle {row['hrm_resolve_vs_oracle']:.2f}, cost/spawn_all {row['hrm_cost_vs_spawn_all']:.2f}"
        )
    for lam, f in firsts.items():
        print(f"first agent at λ {lam}: {f['overall']} ({f['distinct']} distinct)")
    return {
        "seconds": round(seconds, 1),
        "report": str(out / variant / "report.json"),
        "pareto": str(out / variant / "pareto.png"),
        "sweep_lams": lams,
        "sweep": sweep,
        "first_agents": firsts,
        "intervals": report["intervals"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=None, help="agent_runs_data.csv (see the docstring)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the store, runs and summary")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=100, help="ACT Q iterations per fold")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="env.observe values, comma-separated")
    parser.add_argument(
        "--limits-only", action="store_true", help="prepare the table, print what it allows, train nothing"
    )
    args = parser.parse_args()
    import yaml

    if args.table is None or not args.table.is_file() or args.out is None:
        skip(
            "needs --table agent_runs_data.csv (not in this repository: see the script's docstring) and --out DIR"
        )
    out = args.out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    counts = prepare_table(args.table, out / "table.csv", list(AGENTS))
    print(f"table: {counts}")
    if args.limits_only:
        print(f"table limits: {json.dumps(table_limits(out))}")
        rules = heldout_rules(out, args.folds)
        print_rules(rules)
        (out / "rules.json").write_text(json.dumps(rules, indent=2) + "\n", encoding="utf-8")
        return 0
    store = out / "store.sqlite"
    for stale in (store, Path(f"{store}.tasks.jsonl")):
        stale.unlink(missing_ok=True)  # a re-run imports afresh (the store refuses a second record)
    print("\n".join(import_store(out).lines()))
    base = train_config(out, args.iterations)
    (out / "train.yaml").write_text(yaml.safe_dump(base, sort_keys=False), encoding="utf-8")
    summary: dict[str, Any] = {
        "table": counts,
        "agents": AGENTS,
        "price_per_step_usd": PRICE_PER_STEP,
        "cost_unit": "usd (turns x assumed price per turn)",
        "lam": LAM,
        "folds": args.folds,
        "iterations": args.iterations,
        "limits": table_limits(out),
        "rules": heldout_rules(out, args.folds),
        "variants": {},
    }
    print(f"table limits: {json.dumps(summary['limits'])}")
    print_rules(summary["rules"])
    for variant in args.variants.split(","):
        summary["variants"][variant] = run_variant(out, variant, args.folds, base)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
