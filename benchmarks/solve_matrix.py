"""Solve matrix of the built-in repair agents: resolve-rate and mean cost per agent x modifier kind, and
how often delegating a partial fix to a second agent resolves a combined bug that no agent resolves alone.

Tasks: ``--tasks FILE``, else data_dir()/tasks/tinydb.jsonl when it and its repository are built, else the
hand-made calc fixture bugs. Every run is judged by ``Sandbox.evaluate`` (FAIL_TO_PASS + PASS_TO_PASS).
Writes solve_matrix.json into the bench output folder (_results.results_dir()) and solve_matrix.md (the table in docs/agents.md).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import warnings
from collections import defaultdict
from pathlib import Path

from _agent_tasks import RESULTS, fixture_tasks, tinydb_tasks

from hrm_spawn.envs.agents.registry import AGENT_SPECS, get_agent
from hrm_spawn.envs.sandbox import Sandbox
from hrm_spawn.envs.tasks import INVERTIBLE_KINDS as INVERTIBLE  # the kinds the agents' families invert


def kind_of(task) -> str:
    kinds = list(task.modifier_kinds or ["unknown"])
    return "combined" if len(kinds) > 1 else kinds[0]


def choose(tasks: list, per_kind: int | None, seed: int) -> list:
    """Up to ``per_kind`` tasks of each kind (a seeded choice), so rare kinds are not drowned out."""
    by_kind: dict[str, list] = defaultdict(list)
    for task in sorted(tasks, key=lambda t: t.instance_id):
        by_kind[kind_of(task)].append(task)
    rng = random.Random(seed)
    out: list = []
    for kind in sorted(by_kind):
        group = by_kind[kind]
        rng.shuffle(group)
        out += group[:per_kind] if per_kind else group
    return out


def delegable(task) -> bool:
    """A combined bug all of whose parts some family inverts (a removal cannot be restored by anyone)."""
    return len(task.modifier_kinds) > 1 and all(k in INVERTIBLE for k in task.modifier_kinds)


def attempt(sb: Sandbox, task, name: str, start_patch: str, seed: int) -> dict:
    sb.prepare(task) if sb.task is None or sb.task.instance_id != task.instance_id else sb.reset()
    result = get_agent(name).run(sb, task, start_patch, AGENT_SPECS[name].budget, seed)
    evaluation = sb.evaluate(result.patch)
    return {
        "agent": name,
        "status": result.status,
        "resolved": evaluation.resolved,
        "f2p": f"{evaluation.f2p_passed}/{evaluation.f2p_total}",
        "partial": evaluation.f2p_passed > 0,
        "p2p_ok": evaluation.p2p_passed == evaluation.p2p_total,
        "sandbox_s": round(result.cost.sandbox_s, 3),
        "validations": result.cost.validations,
        "patch": result.patch,
        "reason": result.reason[:200],
    }


def run(tasks: list, agents: list[str], seed: int, delegate: bool) -> list[dict]:
    rows = []
    with Sandbox() as sb:
        for i, task in enumerate(tasks):
            start = time.perf_counter()
            runs = {a: attempt(sb, task, a, "", seed) for a in agents}
            row = {
                "instance_id": task.instance_id,
                "kind": kind_of(task),
                "kinds": list(task.modifier_kinds),
                "runs": runs,
                "delegations": [],
            }
            row["delegable"] = delegable(task)
            if delegate and row["delegable"] and not any(r["resolved"] for r in runs.values()):
                for first in agents:
                    if not (runs[first]["partial"] and runs[first]["p2p_ok"]):
                        continue
                    for second in agents:
                        if second != first:
                            d = attempt(sb, task, second, runs[first]["patch"], seed)
                            row["delegations"].append(
                                {
                                    "first": first,
                                    "second": second,
                                    "resolved": d["resolved"],
                                    "sandbox_s": d["sandbox_s"],
                                }
                            )
            for r in runs.values():
                r.pop("patch")
            rows.append(row)
            solved = [a for a, r in runs.items() if r["resolved"]]
            print(
                f"[{i + 1}/{len(tasks)}] {task.instance_id} ({row['kind']}): {solved or 'none'} "
                f"{time.perf_counter() - start:.0f}s",
                flush=True,
            )
    return rows


def rows_from_store(tasks: list, agents: list[str], store_path: Path) -> list[dict]:
    """The same rows from an outcome store that `hrm-spawn collect` filled (no agent is run).

    Clean runs are the seed-0 runs from the buggy repository; a delegation is any run that started from
    another run's candidate. Every run there was judged by ``Sandbox.evaluate`` when it was collected.
    """
    from hrm_spawn.envs.store import OutcomeStore

    rows = []
    with OutcomeStore(store_path, readonly=True) as store:
        for task in tasks:
            stored = list(store.iter_task(task.instance_id))
            clean = {k.agent: o for k, o in stored if k.start_patch_sha == "clean" and k.seed == 0}
            if not all(a in clean for a in agents):
                continue  # not collected (yet) for every agent
            runs = {
                a: {
                    "agent": a,
                    "status": clean[a].result.status,
                    "resolved": clean[a].evaluation.resolved,
                    "partial": clean[a].evaluation.f2p_passed > 0,
                    "p2p_ok": clean[a].evaluation.p2p_passed == clean[a].evaluation.p2p_total,
                    "sandbox_s": round(clean[a].result.cost.sandbox_s, 3),
                    "validations": clean[a].result.cost.validations,
                }
                for a in agents
            }
            delegations = [
                {
                    "first": "?",
                    "second": k.agent,
                    "resolved": o.evaluation.resolved,
                    "sandbox_s": round(o.result.cost.sandbox_s, 3),
                }
                for k, o in stored
                if k.start_patch_sha != "clean" and k.agent in agents
            ]
            rows.append(
                {
                    "instance_id": task.instance_id,
                    "kind": kind_of(task),
                    "kinds": list(task.modifier_kinds),
                    "runs": runs,
                    "delegations": delegations,
                    "delegable": delegable(task),
                }
            )
    return rows


def summarize(rows: list[dict], agents: list[str]) -> dict:
    kinds = sorted({r["kind"] for r in rows})
    matrix = {}
    for agent in agents:
        for kind in kinds:
            runs = [r["runs"][agent] for r in rows if r["kind"] == kind]
            matrix[f"{agent}|{kind}"] = {
                "n": len(runs),
                "resolve_rate": sum(x["resolved"] for x in runs) / len(runs),
                "mean_sandbox_s": statistics.fmean(x["sandbox_s"] for x in runs),
                "mean_validations": statistics.fmean(x["validations"] for x in runs),
            }
    union = [r for r in rows if any(x["resolved"] for x in r["runs"].values())]
    single_inv = [r for r in rows if r["kind"] in INVERTIBLE]
    per_agent = {a: sum(r["runs"][a]["resolved"] for r in rows) for a in agents}
    combined_unsolved = [
        r for r in rows if r["kind"] == "combined" and not any(x["resolved"] for x in r["runs"].values())
    ]
    delegable_unsolved = [r for r in combined_unsolved if r["delegable"]]
    return {
        "kinds": kinds,
        "agents": agents,
        "matrix": matrix,
        "tasks": len(rows),
        "resolved_by_any": len(union),
        "resolved_by_agent": per_agent,
        "single_invertible_tasks": len(single_inv),
        "single_invertible_resolved_by_any": sum(r in union for r in single_inv),
        "union_rate_on_single_invertible": (sum(r in union for r in single_inv) / len(single_inv))
        if single_inv
        else None,
        "max_single_agent_share_of_union": (max(per_agent.values()) / len(union)) if union else None,
        "combined_unsolved_alone": len(combined_unsolved),
        "combined_unsolved_alone_without_removal": len(delegable_unsolved),
        "combined_resolved_by_delegation": sum(
            any(d["resolved"] for d in r["delegations"]) for r in delegable_unsolved
        ),
        "delegation_note": "delegation is tried (every ordered pair, from a partial fix that keeps PASS_TO_PASS) only "
        "on combined bugs with no removal kind in them; a removed statement is restored by no agent",
        "targets": {"union_rate_on_single_invertible": ">= 0.9", "max_single_agent_share_of_union": "<= 0.8"},
    }


def markdown(summary: dict) -> str:
    agents, kinds = summary["agents"], summary["kinds"]
    counts = {k: summary["matrix"][f"{agents[0]}|{k}"]["n"] for k in kinds}
    lines = [
        "| agent | " + " | ".join(f"{k} (n={counts[k]})" for k in kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for agent in agents:
        cells = []
        for kind in kinds:
            cell = summary["matrix"][f"{agent}|{kind}"]
            cells.append(
                f"{cell['resolve_rate']:.0%} / {cell['mean_sandbox_s']:.1f}s / {cell['mean_validations']:.0f}v"
            )
        lines.append(f"| {agent} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Cells: resolve-rate / mean sandbox seconds / mean validations per attempt.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=Path, default=None)
    parser.add_argument("--agents", default=",".join(AGENT_SPECS))
    parser.add_argument(
        "--per-kind", type=int, default=3, help="at most this many tasks of each kind (0: all)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-delegate", action="store_true")
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="read the runs from this outcome store (filled by `hrm-spawn collect`) instead of running",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    found = tinydb_tasks(args.tasks) if args.tasks or tinydb_tasks() else None
    tasks, source = found if found else fixture_tasks()
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    start = time.perf_counter()
    if args.store:
        rows, source = rows_from_store(tasks, agents, args.store), f"{source}, runs from {args.store}"
    else:
        rows = run(choose(tasks, args.per_kind, args.seed), agents, args.seed, not args.no_delegate)
    summary = summarize(rows, agents)
    summary.update(source=source, seed=args.seed, wall_s=round(time.perf_counter() - start, 1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "solve_matrix.json").write_text(
        json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n"
    )
    (RESULTS / "solve_matrix.md").write_text(markdown(summary))
    print(markdown(summary))
    print(json.dumps({k: v for k, v in summary.items() if k != "matrix"}, indent=2))


if __name__ == "__main__":
    main()
